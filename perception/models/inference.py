"""A trained network made ready to run: batch norm folded into its convolutions, channels last.

At inference a batch norm is a fixed per-channel scale and shift, ``y = (x - mean) / sqrt(var
+ eps) * gamma + beta``; after a convolution it is the same convolution with its kernels scaled
and a bias added. Folding it removes a pass over every feature map. Channels-last memory is the
layout oneDNN's CPU kernels (and cuDNN's) work in; a camera's HWC image is already in it.
Together they take the CNN detector from 16.7 to 14.3 ms on one core of an AVX2 VM (medians of
six runs, docs/perception.md's latency figures).

The outputs equal the network's in eval mode to float rounding (``tests/perception/
test_models.py``); the trained module itself is left as it was, for training or saving.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution computing ``bn(conv(x))`` with ``bn``'s running statistics."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics cannot be folded")
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    fused = copy.deepcopy(conv)
    fused.weight.mul_(scale.reshape(-1, 1, 1, 1))
    fused.bias = nn.Parameter(shift if conv.bias is None else conv.bias * scale + shift)
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold, in place, every batch norm that directly follows a convolution in an
    ``nn.Sequential`` (``ConvBNReLU``, a residual branch) into it; returns ``model``."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fold_conv_bn(conv, bn)
                module[i + 1] = nn.Identity()
    return model


def for_inference(model: nn.Module, device: str | torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` in eval mode, batch norm folded, channels last."""
    ready = fold_batchnorm(copy.deepcopy(model).to(device).eval())
    for param in ready.parameters():
        if param.dim() == 4:  # kernels, as Module.to(memory_format=...) converts them
            param.data = param.data.contiguous(memory_format=torch.channels_last)
    return ready
