"""Low-rank compression of a trained recurrent model by truncated SVD.

Eckart & Young (1936): the best rank-``r`` approximation of ``W (m, n)`` in the
Frobenius norm keeps its ``r`` largest singular values, ``W_r = U_r Σ_r V_rᵀ``.
Stored as two factors ``A = U_r Σ_r^½ (m, r)`` and ``B = Σ_r^½ V_rᵀ (r, n)`` it
takes ``r (m + n)`` numbers instead of ``m n``.  Prabhavalkar et al. (2016),
"On the compression of recurrent neural networks with an application to LVCSR
acoustic modeling for embedded speech recognition", sec. 3, factor an RNN's
recurrent and inter-layer (input) matrices this way and choose each rank by
the share of the singular values' energy ``Σ σ_i²`` it keeps; the other rule
here gives each matrix a fixed share of its parameters.

:func:`compress_svd` replaces the matrices of a model in place by their
rank-``r`` products, so the model runs unchanged (its speed too: the product
is stored dense) and its accuracy can be measured; :class:`Factored` records
what storing the factors would take.  At full rank the model is the original
one (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn.cells import RecurrentCell

__all__ = ["Factored", "rank_for", "factor", "compress_svd"]


@dataclass(frozen=True)
class Factored:
    """One matrix after :func:`compress_svd`."""

    name: str  # the parameter's name in the model, e.g. "encoder.rnn.cells.0.weight_hh"
    shape: tuple[int, int]  # (m, n)
    rank: int  # r
    energy: float  # Σ_{i<r} σ_i² / Σ σ_i², the share of the squared Frobenius norm kept

    @property
    def dense(self) -> int:
        """Numbers in the matrix: m n."""
        return self.shape[0] * self.shape[1]

    @property
    def params(self) -> int:
        """Numbers in its two factors: r (m + n), or m n where that is no more."""
        return min(self.rank * (self.shape[0] + self.shape[1]), self.dense)


def rank_for(singular: Tensor, shape: tuple[int, int], *, energy: float | None = None,
             fraction: float | None = None) -> int:
    """The rank for a matrix of ``shape`` with these singular values (descending): the smallest that
    keeps ``energy`` of ``Σ σ²``, or the largest whose two factors take at most ``fraction`` of the
    matrix's ``m n`` numbers (at least 1)."""
    if (energy is None) == (fraction is None):
        raise ValueError("give exactly one of energy and fraction")
    m, n = shape
    full = min(m, n)
    if energy is not None:
        if not 0 < energy <= 1:
            raise ValueError(f"energy must be in (0, 1], got {energy}")
        if energy == 1:
            return full
        kept = torch.cumsum(singular.double() ** 2, 0) / (singular.double() ** 2).sum().clamp_min(1e-300)
        return min(full, int((kept < energy).sum()) + 1)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return full
    return max(1, min(full, int(fraction * m * n // (m + n))))


def factor(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``(A (m, r), B (r, n))`` with ``A B`` the best rank-``r`` approximation of ``weight (m, n)``;
    the singular values are split evenly between the factors."""
    U, S, Vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = S[:rank].sqrt()
    A, B = U[:, :rank] * root, root.unsqueeze(1) * Vh[:rank]
    return A.to(weight.dtype), B.to(weight.dtype)


def compress_svd(model: nn.Module, *, energy: float | None = None, fraction: float | None = None,
                 recurrent: bool = True, inputs: bool = True) -> list[Factored]:
    """Replace, in place, the recurrent (``…weight_hh``) and input (``…weight_ih``) matrices of every
    recurrent cell in ``model`` by their truncated-SVD products, each rank chosen by
    :func:`rank_for` (``energy`` or ``fraction``); returns one :class:`Factored` per matrix.

    Cells whose matrices have other names (SRU's single ``weight_ih`` is its input matrix; the Nested
    LSTM's ``inner_weight_*`` count as theirs) are covered by the same suffixes.  Biases, embeddings,
    attention and output layers are left as they are.
    """
    suffixes = tuple(s for s, on in (("weight_hh", recurrent), ("weight_ih", inputs)) if on)
    if not suffixes:
        raise ValueError("nothing to compress: recurrent and inputs are both off")
    done = []
    for prefix, module in model.named_modules():
        if not isinstance(module, RecurrentCell):
            continue
        for name, weight in module.named_parameters(recurse=False):
            if weight.dim() != 2 or not name.endswith(suffixes):
                continue
            S = torch.linalg.svdvals(weight.detach().double())
            r = rank_for(S, tuple(weight.shape), energy=energy, fraction=fraction)
            A, B = factor(weight, r)
            with torch.no_grad():
                weight.copy_(A @ B)
            kept = float((S[:r] ** 2).sum() / (S**2).sum().clamp_min(1e-300))
            done.append(Factored(f"{prefix}.{name}" if prefix else name, tuple(weight.shape), r, kept))
    return done
