"""Int8 storage of weight matrices with one scale per output row.

Each floating-point tensor with two or more dimensions is stored as int8
``q = round(w / s)`` with a float32 scale per row (its first dimension),
``s = max_j |w_ij| / 127``, the symmetric per-channel scheme of Jacob et al.
2018 ("Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference") and of ``torch.ao`` dynamic
quantisation.  Vectors (biases, norm gains) stay in float16.  Loading
multiplies back to float32, so the network computes in float32 as before;
only the storage is compressed (about 3.9x smaller than float32).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["quantize_state", "dequantize_state", "quantize_rows", "SCALE_SUFFIX"]

SCALE_SUFFIX = ".int8_scale"


def quantize_rows(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``(q, s)`` of a ``(rows, cols)`` matrix: ``matrix ≈ s[:, None] q``, ``q`` int8 in [-127, 127] and
    ``s`` float32 ``(rows,)``."""
    rows = matrix.detach().float()
    scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    return torch.round(rows / scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8), scale


def quantize_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state dict for storage: matrices as int8 plus ``NAME.int8_scale``, vectors as float16."""
    out: dict[str, Tensor] = {}
    for name, value in tensors.items():
        if not value.is_floating_point():
            out[name] = value
        elif value.dim() < 2:
            out[name] = value.to(torch.float16)
        else:
            q, scale = quantize_rows(value.reshape(value.shape[0], -1))
            out[name], out[name + SCALE_SUFFIX] = q.reshape(value.shape), scale
    return out


def dequantize_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Undo :func:`quantize_state`: float32 matrices; other tensors are returned as they are."""
    out: dict[str, Tensor] = {}
    for name, value in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is not None:
            shape = (value.shape[0],) + (1,) * (value.dim() - 1)
            value = value.float() * scale.float().reshape(shape)
        out[name] = value
    return out
