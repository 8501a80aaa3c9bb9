"""Folding batch normalization into the layer before it, for inference.

In evaluation a BatchNorm is a fixed affine map per channel (Ioffe & Szegedy
2015, sec. 3.1, Algorithm 2): ``y = γ (z - μ) / sqrt(σ² + ε) + β`` with the
running statistics ``μ, σ²``.  When ``z = W x + b`` comes from a convolution
or a linear layer, the two collapse into one layer with

    W' = W s,   b' = (b - μ) s + β,   s = γ / sqrt(σ² + ε)   (per output channel)

so inference skips a pass over the activations and gives the same outputs up
to float rounding.  The arithmetic is torch's (``torch.nn.utils.fusion``);
this module finds the pairs.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

__all__ = ["fold_batchnorm"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An evaluation-mode copy of ``model`` with every BatchNorm that directly follows a convolution or
    a linear layer in an ``nn.Sequential`` folded into that layer (and replaced by ``nn.Identity``);
    returns ``(copy, number of pairs folded)``.  ``model`` itself is left as it is.

    A BatchNorm elsewhere (first in its Sequential, after another kind of layer, without running
    statistics, or used from a custom ``forward``) stays; so does a pair whose channel counts differ.
    """
    folded = copy.deepcopy(model).eval()
    return folded, _fold(folded)


def _fold(module: nn.Module) -> int:
    count = 0
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for prev, name in zip(names, names[1:]):
            layer, norm = module._modules[prev], module._modules[name]
            if not isinstance(norm, _NORM) or norm.running_mean is None or norm.running_var is None:
                continue
            if isinstance(layer, _CONV) and layer.out_channels == norm.num_features:
                module._modules[prev] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, nn.Linear) and layer.out_features == norm.num_features:
                module._modules[prev] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            module._modules[name] = nn.Identity()
            count += 1
    for child in module.children():
        count += _fold(child)
    return count
