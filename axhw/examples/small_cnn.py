"""A small convolutional network for MNIST (two 3x3 convolutions, one max pooling, one fully-connected layer).

Why it is here: LeNet-5 and the MNIST MLP are the networks the paper uses; the accelerator-energy model
(:mod:`axhw.power.accel.model`) is validated on networks it was not calibrated on, and this one (a different
kernel size, stride and channel count from LeNet-5's) is the third. It is also a user-model example: train it with
``axhw train --dataset mnist_cnn --model axhw.examples.small_cnn:mnist_small_cnn``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["mnist_small_cnn"]


def mnist_small_cnn(channels: int = 6, classes: int = 10) -> nn.Sequential:
    """Conv 3x3 stride 2 (1 -> ``channels``) + ReLU, conv 3x3 (``channels`` -> ``2*channels``) + ReLU, max pool
    2x2, fully-connected to ``classes``: 28x28 -> 13x13 -> 11x11 -> 5x5."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * channels * 5 * 5, classes),
    )
