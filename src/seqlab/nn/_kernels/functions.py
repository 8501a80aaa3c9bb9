"""Autograd glue between the cells and the compiled recurrences.

A fused run of one layer and direction is two pieces:

1. ``cell.project(x)`` on the whole ``(T, B, I)`` sequence, through ordinary
   autograd: one GEMM forward, and backward the two GEMMs ``dW = dxpᵀ x``
   and ``dx = dxp W`` over all steps at once;
2. :class:`_Recurrence`, a custom autograd Function around the compiled
   time loop (``recurrence.cpp``), which returns ``dxp``, the gradient of
   the initial state and of the recurrent parameters from its hand-written
   backward through time.

Each supported cell class maps to a kernel name, the recurrent parameters
the kernel takes and its scalar options (``_SPECS``).  The mapping is by
exact class: a subclass may change the math, so it runs the reference loop.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells import (
    CIFGCell,
    JANETCell,
    LayerNormLSTMCell,
    LSTMCell,
    NestedLSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    SRUCell,
)

__all__ = ["supports", "run_cell"]

Spec = tuple[str, list[Tensor], list[float]]


def _peephole(cell: PeepholeLSTMCell) -> Spec:
    weights = cell.weight_peephole  # (P, H), rows for the chosen gates in "ifo" order
    if cell.peepholes != "ifo":
        rows = torch.tensor(["ifo".index(g) for g in cell.peepholes], device=weights.device)
        weights = weights.new_zeros(3, cell.hidden_size).index_copy(0, rows, weights)  # (3, H)
    return "peephole", [cell.weight_hh, weights], []


def _lstm(cell: LSTMCell) -> Spec:
    # The plain LSTM is the peephole kernel with p = 0 (its biases are in project()).
    zeros = cell.weight_hh.new_zeros(3, cell.hidden_size)
    return "peephole", [cell.weight_hh, zeros], []


def _ln_lstm(cell: LayerNormLSTMCell) -> Spec:
    params = [cell.weight_hh, cell.norm_hh.weight, cell.norm_c.weight, cell.norm_c.bias]
    return "ln_lstm", params, [cell.norm_hh.eps, cell.norm_c.eps]


def _nested(cell: NestedLSTMCell) -> Spec:
    return "nested_lstm", [cell.weight_hh, cell.inner_weight_ih, cell.inner_weight_hh, cell.inner_bias], []


def _sru(cell: SRUCell) -> Spec:
    return "sru", [cell.weight_c, cell.bias], [1.0 if cell.activation == "tanh" else 0.0]


_SPECS: dict[type[RecurrentCell], Callable[..., Spec]] = {
    LSTMCell: _lstm,
    PeepholeLSTMCell: _peephole,
    CIFGCell: lambda cell: ("cifg", [cell.weight_hh], []),
    JANETCell: lambda cell: ("janet", [cell.weight_hh], [cell.beta]),
    LayerNormLSTMCell: _ln_lstm,
    NestedLSTMCell: _nested,
    SRUCell: _sru,
}


def supports(cell: RecurrentCell | type[RecurrentCell]) -> bool:
    """Whether a cell (or cell class) has a compiled recurrence."""
    return (cell if isinstance(cell, type) else type(cell)) in _SPECS


class _Recurrence(torch.autograd.Function):
    """``(xp, state_0, params) -> (output (T, B, H), *state_T)`` through the compiled loop."""

    @staticmethod
    def forward(ctx, kernels, kind, options, reverse, num_states, lengths, xp, *rest):
        state, params = list(rest[:num_states]), list(rest[num_states:])
        result = kernels.forward(kind, xp, state, params, lengths, reverse, options, True)
        ctx.meta = (kernels, kind, options, reverse, num_states, len(params))
        ctx.save_for_backward(lengths, *params, *result[1 + num_states :])
        return tuple(result[: 1 + num_states])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, *grad_state):
        kernels, kind, options, reverse, num_states, num_params = ctx.meta
        lengths, *rest = ctx.saved_tensors
        params, saved = rest[:num_params], rest[num_params:]
        grads = kernels.backward(kind, grad_output, list(grad_state), saved, params, lengths, reverse, options)
        return (None,) * 6 + tuple(grads)


def run_cell(
    kernels: ModuleType,
    cell: RecurrentCell,
    x: Tensor,
    state: tuple[Tensor, ...],
    lengths: Tensor,
    reverse: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer and direction: ``x (T, B, I)``, ``state`` of ``(B, H)``, ``lengths (B,)`` int64 on the CPU.

    Same contract as ``Recurrent._run_direction``: returns ``(T, B, H)``
    outputs (0 past each sequence's length) and the final state.
    """
    kind, params, options = _SPECS[type(cell)](cell)
    xp = cell.project(x)  # (T, B, G): every input GEMM of the sequence at once
    n = len(state)
    tensors = (xp, *state, *params)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        result = _Recurrence.apply(kernels, kind, options, reverse, n, lengths, *tensors)
    else:
        result = kernels.forward(kind, xp, list(state), params, lengths, reverse, options, False)
    return result[0], tuple(result[1 : 1 + n])
