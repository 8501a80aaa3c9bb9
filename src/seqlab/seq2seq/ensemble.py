"""Ensembles of encoder-decoder models decoded as one.

Each step every member scores the next token from its own state; the
ensemble's distribution is the members' average,

    p(y_t | y_<t, x) = 1/K Σ_k p_k(y_t | y_<t, x),

the combination Sutskever et al. 2014 (sec. 3.6) and most NMT systems since
use for ensembles.  Rao et al. 2015 and Yao & Zweig 2015 report that
ensembling several neural G2P models gains about as much as doubling their
size.  The ensemble offers the same ``encode`` / ``step`` /
``reorder_state`` interface as one :class:`~seqlab.seq2seq.model.Seq2Seq`,
so the searches decode it unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .model import Seq2Seq
from .search import SearchResult, generate

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """K :class:`Seq2Seq` models over the same vocabularies, averaged per step."""

    def __init__(self, members: list[Seq2Seq]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        pads = {m.pad for m in members}
        if len(pads) != 1:
            raise ValueError(f"ensemble members disagree on the padding id: {sorted(pads)}")
        self.members = nn.ModuleList(members)
        self.pad = members[0].pad

    def encode(self, src: Tensor, src_len: Tensor) -> tuple:
        """One initial decoder state per member."""
        return tuple(m.encode(src, src_len) for m in self.members)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: ``-> (log of the averaged probabilities (B, T, V), averaged attention (B, T, S))``.

        The attention weights are the members' mean (each row still sums to 1);
        None when no member attends.
        """
        return self.teacher_force(tgt_in, self.encode(src, src_len))

    def teacher_force(self, tgt_in: Tensor, state: tuple) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward` from an encoded state (``encode``, rows picked with ``reorder_state``)."""
        outputs = [m.teacher_force(tgt_in, s) for m, s in zip(self.members, state)]
        log_probs = self._average([torch.log_softmax(logits, dim=-1) for logits, _ in outputs])
        weights = [w for _, w in outputs if w is not None]
        return log_probs, (torch.stack(weights).mean(0) if weights else None)

    def step(self, y_prev: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        scored = [m.step(y_prev, s) for m, s in zip(self.members, state)]
        return self._average([lp for lp, _ in scored]), tuple(s for _, s in scored)

    def reorder_state(self, state: tuple, index: Tensor) -> tuple:
        return tuple(m.reorder_state(s, index) for m, s in zip(self.members, state))

    def generate(self, src: Tensor, src_len: Tensor, **options) -> SearchResult:
        """Decode a batch: see :func:`seqlab.seq2seq.search.generate` for the options."""
        return generate(self, src, src_len, **options)

    def _average(self, log_probs: list[Tensor]) -> Tensor:
        """``log(1/K Σ_k p_k)`` from the members' log-probabilities, without leaving log space."""
        if len(log_probs) == 1:
            return log_probs[0]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))
