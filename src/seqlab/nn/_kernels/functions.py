"""Autograd glue between the cells and the compiled recurrences.

A fused run of one layer and direction is one autograd node around the
compiled code (``recurrence.cpp``; the node is C++ too, ``Recurrence`` there,
so that a training step pays no Python around the kernels):

1. the input projection ``xp = x Wᵀ`` of the whole ``(T, B, I)`` sequence
   in one GEMM (what ``cell.project`` computes; its bias ``b``, when it has
   one, is added in the pointwise pass of each step);
2. the time loop: one recurrent GEMM and one fused pointwise pass per step;
3. backward through time by hand, then ``dx = dxp W``, ``dW = dxpᵀ x``,
   ``db = 1ᵀ dxp`` and the recurrent weight gradients as one GEMM each over
   all steps.

SRU has no recurrent GEMM; its kernel computes ``xp`` a few steps of a row
block at a time inside the time loop (and in backward ``dx`` step by step),
so that the pointwise pass finds them in cache.  Where the weights are small
(at most half of a core's L2), the backward passes of SRU and ``ln_lstm``
also add the weight gradients up inside the loop, from rings of about 128
rows of the gradients and inputs (SRU: ``dW``; ln_lstm: ``dU`` and ``dW``,
and ``dx`` step by step), instead of keeping whole-sequence gradient buffers
for GEMMs after the loop; so does SRU's with larger weights where its
weight-gradient products run on the BLAS (Intel CPUs, and CPUs without
AVX-512).

Each supported cell class maps to a kernel name, its input projection, the
recurrent parameters the kernel takes and its scalar options (``_SPECS``).
The mapping is by exact class: a subclass may change the math, so it runs
the reference loop.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from ..cells import (
    CIFGCell,
    GRUCell,
    JANETCell,
    LayerNormLSTMCell,
    LSTMCell,
    NestedLSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    RNNReLUCell,
    RNNTanhCell,
    SRUCell,
)

__all__ = ["supports", "run_cell", "input_weight", "int8_available"]

# (kernel name, input projection [W] or [W, b], recurrent parameters, scalar options)
Spec = tuple[str, list[Tensor], list[Tensor], list[float]]


def _peephole(cell: PeepholeLSTMCell) -> Spec:
    weights = cell.weight_peephole  # (P, H), rows for the chosen gates in "ifo" order
    if cell.peepholes != "ifo":
        rows = torch.tensor(["ifo".index(g) for g in cell.peepholes], device=weights.device)
        weights = weights.new_zeros(3, cell.hidden_size).index_copy(0, rows, weights)  # (3, H)
    return "peephole", [cell.weight_ih, cell.bias], [cell.weight_hh, weights], []


def _lstm(cell: LSTMCell) -> Spec:
    # The plain LSTM is the peephole kernel with p = 0.
    zeros = cell.weight_hh.new_zeros(3, cell.hidden_size)
    return "peephole", [cell.weight_ih, cell.bias_ih + cell.bias_hh], [cell.weight_hh, zeros], []


def _ln_lstm(cell: LayerNormLSTMCell) -> Spec:
    # project() is LN(W x) + b; the kernel applies that LayerNorm and bias itself, row by row.
    norms = (cell.norm_ih, cell.norm_hh, cell.norm_c)
    params = [cell.weight_hh, cell.norm_ih.weight, cell.bias, cell.norm_hh.weight, cell.norm_c.weight, cell.norm_c.bias]
    return "ln_lstm", [cell.weight_ih], params, [norm.eps for norm in norms]


def _nested(cell: NestedLSTMCell) -> Spec:
    params = [cell.weight_hh, cell.inner_weight_ih, cell.inner_weight_hh, cell.inner_bias]
    return "nested_lstm", [cell.weight_ih, cell.bias], params, []


def _sru(cell: SRUCell) -> Spec:
    # With input_size == hidden_size project() appends x itself as the highway
    # term; the kernel reads it from x instead of a concatenated copy.
    options = [1.0 if cell.activation == "tanh" else 0.0, 0.0 if cell.projected_highway else 1.0]
    return "sru", [cell.weight_ih], [cell.weight_c, cell.bias], options


_SPECS: dict[type[RecurrentCell], Callable[[RecurrentCell], Spec]] = {
    LSTMCell: _lstm,
    PeepholeLSTMCell: _peephole,
    CIFGCell: lambda cell: ("cifg", [cell.weight_ih, cell.bias], [cell.weight_hh], []),
    GRUCell: lambda cell: ("gru", [cell.weight_ih, cell.bias_ih], [cell.weight_hh, cell.bias_hh], []),
    # project() adds both of torch's biases to W x; so does the kernel.
    RNNTanhCell: lambda cell: ("elman", [cell.weight_ih, cell.bias_ih + cell.bias_hh], [cell.weight_hh], [0.0]),
    RNNReLUCell: lambda cell: ("elman", [cell.weight_ih, cell.bias_ih + cell.bias_hh], [cell.weight_hh], [1.0]),
    JANETCell: lambda cell: ("janet", [cell.weight_ih, cell.bias], [cell.weight_hh], [cell.beta]),
    LayerNormLSTMCell: _ln_lstm,
    NestedLSTMCell: _nested,
    SRUCell: _sru,
}


def supports(cell: RecurrentCell | type[RecurrentCell]) -> bool:
    """Whether a cell (or cell class) has a compiled recurrence."""
    return (cell if isinstance(cell, type) else type(cell)) in _SPECS


def input_weight(cell: RecurrentCell) -> Tensor | None:
    """``W`` of the cell's input product ``x Wᵀ`` that :func:`run_cell` can start from, or None
    where the kernel takes no precomputed product (SRU, and cells without a kernel).  Every spec's
    projection starts with the cell's ``weight_ih``; reading it builds no spec (``_lstm`` allocates)."""
    return cell.weight_ih if supports(cell) and not isinstance(cell, SRUCell) else None


def int8_available(kernels: ModuleType | None) -> bool:
    """Whether ``kernels`` were built against torch's fbgemm: they then run an LSTM's recurrent products
    in int8 (``run_cell``'s ``int8_recurrence``) and have ``Int8Linear``."""
    return kernels is not None and hasattr(kernels, "forward_projected_int8") and hasattr(kernels, "Int8Linear")


def run_cell(
    kernels: ModuleType,
    cell: RecurrentCell,
    x: Tensor,
    state: tuple[Tensor, ...],
    lengths: Tensor,
    reverse: bool,
    projected: bool = False,
    int8_recurrence: object | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer and direction: ``x (T, B, I)``, ``state`` of ``(B, H)``, ``lengths (B,)`` int64 on the CPU.

    Same contract as ``Recurrent._run_direction``: returns ``(T, B, H)``
    outputs (0 past each sequence's length) and the final state.  The cell's
    input projection is computed by the kernel (its math is ``cell.project``),
    unless ``projected``: then, for inference only, ``x`` is already
    ``x Wᵀ (T, B, G)`` (``W``: :func:`input_weight`, no bias), computed by the
    caller, e.g. looked up from a table of embedding rows or by an int8 GEMM.
    ``int8_recurrence``, with ``projected``, for a plain LSTM cell: its
    recurrent weight ``U (4H, H)`` as the kernels' ``Int8Linear`` without bias
    (int8 with a float32 scale per row, packed once when it was made; see
    ``seqlab.compress.dynamic.Int8Linear``); each step's product ``h U^T`` then runs
    in int8 too (``kernels`` built with fbgemm: :func:`int8_available`).
    """
    if int8_recurrence is not None:
        if not (projected and type(cell) is LSTMCell and int8_available(kernels)):
            raise ValueError("int8_recurrence runs a plain LSTM cell from given input products, on kernels "
                             "built with fbgemm")
        result = kernels.forward_projected_int8(x, cell.bias_ih + cell.bias_hh, list(state), int8_recurrence, lengths,
                                                reverse)
        return result[0], tuple(result[1:3])
    kind, proj, params, options = _SPECS[type(cell)](cell)
    n = len(state)
    if projected:
        result = kernels.forward_projected(kind, x, proj, list(state), params, lengths, reverse, options)
        return result[0], tuple(result[1 : 1 + n])
    tensors = (x, *proj, *state, *params)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        result = kernels.forward_autograd(kind, x, proj, list(state), params, lengths, reverse, options)
    else:
        result = kernels.forward(kind, x, proj, list(state), params, lengths, reverse, options, False)
    return result[0], tuple(result[1 : 1 + n])
