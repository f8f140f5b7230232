"""Factories as a user would write them, for ``axhw train --model user_models:... --data user_models:...``
(tests/training/test_user_model.py puts this folder on ``sys.path``)."""

import torch
import torch.nn.functional as F
from torch import nn


class TinyResNet(nn.Module):
    """conv-BN-ReLU stem, one residual conv-BN block, global average pooling, a linear head, sigmoid."""

    def __init__(self, channels: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.stem(x)))
        h = F.relu(self.bn1(self.conv(h)) + h)
        return torch.sigmoid(self.head(torch.flatten(self.pool(h), 1)))


def tiny_resnet(channels: int = 4, classes: int = 3) -> nn.Module:
    return TinyResNet(channels, classes)


class GeluMLP(nn.Module):
    """Two float-only operations between two linear layers: a GELU module (path ``act``) and a functional
    tanh (graph node ``tanh``); the integer network has neither."""

    def __init__(self, hidden: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.tanh(self.act(self.fc1(torch.flatten(x, 1))))))


def gelu_mlp(hidden: int = 8, classes: int = 3) -> nn.Module:
    return GeluMLP(hidden, classes)


def separable(n_train: int = 240, n_test: int = 60, classes: int = 3):
    """1x8x8 images whose class is a bright quadrant plus noise: separable, seeded, deterministic."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
        for c in range(classes):
            r, q = divmod(c, 2)
            x[y == c, :, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 1.5
        return x, y

    return (*split(n_train), *split(n_test))


def not_a_model() -> str:
    return "a string"


def flat_data():
    """Right types, wrong shape for tiny_resnet (flat vectors)."""
    return torch.randn(10, 64), torch.zeros(10, dtype=torch.long), torch.randn(4, 64), torch.zeros(4, dtype=torch.long)


def float_labels():
    return torch.randn(10, 1, 8, 8), torch.zeros(10), torch.randn(4, 1, 8, 8), torch.zeros(4)


def negative_labels():
    return torch.randn(10, 1, 8, 8), -torch.ones(10, dtype=torch.long), torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)


def many_labels():
    """Labels up to 9 for a 3-output model."""
    y = torch.arange(10)
    return torch.randn(10, 1, 8, 8), y, torch.randn(4, 1, 8, 8), y[:4]
