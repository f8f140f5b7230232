"""The paper's Table 1 networks (topologies in :data:`axhw.data.registry.APPLICATIONS`), built from
hardware-aware layers.

MLPs: ReLU hidden layers, sigmoid outputs (the paper's choice; configurable). LeNet-5 for MNIST-CNN uses
max-pooling instead of the original average pooling: max commutes with re-quantization, so the integer
network stays exact without a divider (documented deviation).
"""

from __future__ import annotations

import itertools
from typing import Literal

from torch import nn

from axhw.data.registry import APPLICATIONS
from axhw.nn import ApproxConv2d, ApproxLinear, HardwareConfig

__all__ = ["build_mlp", "build_model", "lenet5"]

Output = Literal["sigmoid", "softmax", "none"]


def _output(output: Output) -> nn.Module:
    if output == "sigmoid":
        return nn.Sigmoid()
    if output == "softmax":
        return nn.Softmax(dim=1)
    if output == "none":
        return nn.Identity()
    raise ValueError(f"unknown output {output!r}: valid outputs are 'sigmoid', 'softmax', 'none'")


def build_mlp(sizes: tuple[int, ...], hw: HardwareConfig | None = None, output: Output = "sigmoid") -> nn.Sequential:
    """``sizes[0] -> ... -> sizes[-1]`` with ReLU between layers and ``output`` at the end."""
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"invalid MLP sizes {sizes}: need at least two positive sizes")
    mods: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        mods.append(ApproxLinear(n_in, n_out, hw=hw))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    mods.append(_output(output))
    return nn.Sequential(*mods)


def lenet5(hw: HardwareConfig | None = None, output: Output = "sigmoid", classes: int = 10) -> nn.Sequential:
    """LeNet-5 on 1x28x28 inputs (first convolution padded to 32x32 as in LeCun et al. 1998)."""
    return nn.Sequential(
        ApproxConv2d(1, 6, 5, padding=2, hw=hw), nn.ReLU(), nn.MaxPool2d(2),
        ApproxConv2d(6, 16, 5, hw=hw), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        ApproxLinear(400, 120, hw=hw), nn.ReLU(),
        ApproxLinear(120, 84, hw=hw), nn.ReLU(),
        ApproxLinear(84, classes, hw=hw),
        _output(output),
    )


def build_model(app: str, hw: HardwareConfig | None = None, output: Output = "sigmoid") -> nn.Sequential:
    """The network of one of the six applications of Table 1."""
    info = APPLICATIONS.get(app)
    if info is None:
        raise ValueError(f"unknown application {app!r}: valid applications are {', '.join(APPLICATIONS)}")
    if info.topology is None:
        return lenet5(hw, output)
    return build_mlp(info.topology, hw, output)
