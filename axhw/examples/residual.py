"""A small residual CNN for MNIST, the worked example of bringing your own network (docs/own-network.md).

Plain ``torch.nn``, nothing axhw-specific: conv-BatchNorm-ReLU blocks, one identity skip connection, a
strided downsampling conv, global average pooling and a linear head, the shape of ResNet (He et al., CVPR
2016) at MNIST size.
:func:`axhw.convert` folds the batch norms, makes the addition and the pooling hardware-aware, and
:func:`axhw.nn.to_quantized` exports it to an integer network the hardware-mode forward equals bit for bit.

``axhw train --model axhw.examples.residual:mnist_resnet --dataset mnist_cnn`` trains it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResidualBlock", "SmallResNet", "mnist_resnet"]


class ResidualBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``: two 3x3 conv-BN layers and an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + x)


class SmallResNet(nn.Module):
    """Stem (conv-BN-ReLU, 2x2 max pooling), one residual block, a strided conv-BN-ReLU that doubles the
    channels, global average pooling, a linear head, and a sigmoid output (the paper's networks end in
    sigmoid units trained on the MSE, eq. 1)."""

    def __init__(self, in_channels: int = 1, channels: int = 16, classes: int = 10, sigmoid: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2))
        self.block = ResidualBlock(channels)
        self.down = nn.Sequential(nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * channels), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * channels, classes)
        self.out = nn.Sigmoid() if sigmoid else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(self.block(self.stem(x)))
        return self.out(self.head(torch.flatten(self.pool(h), 1)))


def mnist_resnet(channels: int = 16, sigmoid: bool = True) -> SmallResNet:
    """The worked example's network for 1x28x28 MNIST digits (a factory for ``axhw train --model``)."""
    return SmallResNet(1, channels, 10, sigmoid)
