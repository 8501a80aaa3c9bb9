"""Initialization of recurrent weights, as the notes recommend (RNN的训练困难).

A recurrent weight matrix is a stack of ``gates`` square blocks, one per gate
(torch's layout: ``(gates * H, H)``).  Each block is initialised on its own:

* recurrent weights: orthogonal (Saxe et al. 2014), so that repeated
  multiplication by ``W_hh`` neither shrinks nor blows up the state at init;
* input weights: Xavier/Glorot uniform for saturating units (tanh, sigmoid),
  Kaiming/He uniform for ReLU units (He et al. 2015);
* the forget-gate bias of LSTM-like cells at 1 (Gers et al. 2000;
  Jozefowicz et al. 2015), or the chrono init of Tallec & Ollivier 2018 that
  JANET uses.

Gradient clipping by norm and by value lives in :func:`clip_gradients`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = [
    "orthogonal_",
    "xavier_",
    "kaiming_",
    "gate_bias_",
    "chrono_bias_",
    "clip_gradients",
]


def _blocks(weight: torch.Tensor, gates: int) -> list[torch.Tensor]:
    rows = weight.shape[0]
    if rows % gates:
        raise ValueError(f"weight has {rows} rows, not a multiple of {gates} gates")
    return list(weight.split(rows // gates, dim=0))


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, gates: int = 1) -> torch.Tensor:
    """Each ``(H, H)`` gate block of ``weight`` becomes an orthogonal matrix."""
    for block in _blocks(weight, gates):
        nn.init.orthogonal_(block)
    return weight


@torch.no_grad()
def xavier_(weight: torch.Tensor, gates: int = 1) -> torch.Tensor:
    """Glorot-uniform per gate block: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    for block in _blocks(weight, gates):
        nn.init.xavier_uniform_(block)
    return weight


@torch.no_grad()
def kaiming_(weight: torch.Tensor, gates: int = 1) -> torch.Tensor:
    """He-uniform per gate block for ReLU units: U(-a, a), a = sqrt(6 / fan_in)."""
    for block in _blocks(weight, gates):
        nn.init.kaiming_uniform_(block, nonlinearity="relu")
    return weight


@torch.no_grad()
def gate_bias_(bias: torch.Tensor, gate: int, gates: int, value: float) -> torch.Tensor:
    """Set the bias of one gate (``gate``-th of ``gates`` blocks) to ``value``."""
    _blocks(bias, gates)[gate].fill_(value)
    return bias


@torch.no_grad()
def chrono_bias_(bias: torch.Tensor, t_max: float) -> torch.Tensor:
    """Chrono initialisation (Tallec & Ollivier 2018, eq. 16): b_f ~ log(U[1, T_max - 1]).

    The forget gate then keeps information for a time spread over
    ``[1, T_max]`` steps, which JANET (van der Westhuizen & Lasenby 2018,
    sec. 3) relies on.
    """
    if t_max <= 2:
        raise ValueError(f"chrono init needs t_max > 2, got {t_max}")
    bias.uniform_(1.0, t_max - 1.0).log_()
    return bias


def clip_gradients(
    parameters: Iterable[torch.Tensor],
    *,
    max_norm: float | None = None,
    max_value: float | None = None,
) -> torch.Tensor:
    """Clip gradients by value and/or global L2 norm; return the norm before clipping.

    Clipping by norm (Pascanu et al. 2013, algorithm 1) rescales the whole
    gradient when ``||g|| > max_norm``; clipping by value clamps each entry to
    ``[-max_value, max_value]`` first.
    """
    params = [p for p in parameters if p.grad is not None]
    if max_value is not None:
        nn.utils.clip_grad_value_(params, max_value)
    if max_norm is not None:
        return nn.utils.clip_grad_norm_(params, max_norm)
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))

