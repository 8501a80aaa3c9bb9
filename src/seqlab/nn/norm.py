"""Normalization layers the notes describe that torch does not have.

torch already has BatchNorm, InstanceNorm, LayerNorm and weight norm; seqlab uses
those.  What it lacks is L2 normalization over chosen axes with an optional
learnt scale per channel:

    C = A / ||A||_2      (over the normalized axes)       "L2 Normalization"
    D = C * s_z          (s: one scale per channel z)     "L2 Scale Normalization"

(Liu, Rabinovich & Berg 2015, "ParseNet: Looking Wider to See Better",
sec. 3.3, which learns ``s`` so that features of very different magnitudes can
be combined; SSD normalizes its conv4_3 features this way with ``s`` starting
at 20.)  The notes' formula for the norm writes ``sum sqrt(A^2)``; the norm is
``sqrt(sum A^2)``, as in the 1-D formula just above it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["L2Norm"]


class L2Norm(nn.Module):
    """``x / max(||x||_2, eps)`` over ``dim``, then times a learnt per-channel scale if ``channels``.

    Args:
        dim: the axis (or axes) normalized together; ``None``: every axis but the first (each
            sample of a batch flattened).  Negative axes count from the end.
        channels: with a single ``dim``, its size: learn one scale per position along it
            (L2 Scale Normalization).  ``None``: no scale.
        init: the scales' starting value (ParseNet and SSD start at 10 or 20 for conv features,
            whose norms are large; 1 keeps the input's scale).
        eps: the smallest norm divided by, so that an all-zero vector maps to zeros with a zero
            gradient instead of NaN.
    """

    def __init__(self, dim: int | tuple[int, ...] | None = -1, *, channels: int | None = None, init: float = 1.0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        if channels is not None and not isinstance(dim, int):
            raise ValueError(f"a per-channel scale needs a single dim, got dim={dim!r}")
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.dim = dim
        self.eps = eps
        self.scale = nn.Parameter(torch.full((channels,), float(init))) if channels is not None else None

    def extra_repr(self) -> str:
        s = f"dim={self.dim!r}"
        if self.scale is not None:
            s += f", channels={self.scale.numel()}"
        return s

    def forward(self, x: Tensor) -> Tensor:
        dims = tuple(range(1, x.dim())) if self.dim is None else self.dim
        # vector_norm's gradient at a zero vector is 0 (a subgradient), where sqrt(sum x^2) gives NaN.
        norm = torch.linalg.vector_norm(x, 2, dim=dims, keepdim=True).clamp_min(self.eps)
        y = x / norm
        if self.scale is None:
            return y
        axis = self.dim % x.dim()
        if x.shape[axis] != self.scale.numel():
            raise ValueError(f"expected {self.scale.numel()} channels along dim {self.dim}, got input shape "
                             f"{tuple(x.shape)}")
        shape = [1] * x.dim()
        shape[axis] = -1
        return y * self.scale.view(shape)
