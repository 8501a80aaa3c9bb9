"""Attention for encoder-decoder models: additive (Bahdanau) and dot / general (Luong).

Every attention module scores one decoder query against all encoder
positions, normalises the scores over the real (unmasked) positions and
returns the weighted sum of the values:

    e_s = score(q, k_s)                      one scalar per source position s
    α_s = exp(e_s) / Σ_{s' real} exp(e_{s'})  softmax over real positions only
    c   = Σ_s α_s v_s                        the context vector

The modules differ only in ``score``.  Each splits it in two, so that a
decoder can hoist the key-only work out of its time loop:

* ``precompute(keys) -> cache``: the part that depends on the keys only,
  computed once per source sentence (``U k`` for additive, ``W k`` for
  general, the keys themselves for dot).
* ``forward(query, keys, values, mask, cache=None) -> (context, weights)``:
  one decoder step; with ``cache`` given, the keys are not projected again.

Notation: ``B`` batch, ``S`` source length, ``Hq`` query size, ``Hk`` key
size, ``Hv`` value size, ``A`` attention size (additive only).  ``mask`` is
``(B, S)`` bool with True at real tokens; every row needs at least one real
position (an all-padding row has no distribution to normalise: its weights
come out NaN).
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

__all__ = [
    "Attention",
    "AdditiveAttention",
    "DotAttention",
    "GeneralAttention",
    "ATTENTIONS",
    "make_attention",
]


class Attention(nn.Module, abc.ABC):
    """Base class: masking, softmax and the weighted sum shared by every score.

    Subclasses implement ``precompute(keys)`` and ``_score(query (B, T, Hq), cache) -> (B, T, S)``.
    Those whose score is the dot product of the query with the cache set
    ``dot_scores``: a decoder step without autograd then runs as one compiled
    pass per row (``dot_attention`` in seqlab's kernels) instead of batched
    matrix products of one row each.
    """

    dot_scores = False

    @abc.abstractmethod
    def precompute(self, keys: Tensor) -> Tensor:
        """What ``score`` needs from the keys, cacheable per source sentence: ``(B, S, Hk) -> (B, S, ·)``."""

    @abc.abstractmethod
    def _score(self, query: Tensor, cache: Tensor) -> Tensor:
        """Scores ``(B, T, S)`` of queries ``(B, T, Hq)`` against the cached keys."""

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        cache: Tensor | None = None,
        rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from one decoder step, or from ``T`` steps at once.

        Args:
            query: ``(B, Hq)`` one decoder state per sentence, or ``(B, T, Hq)``
                for ``T`` steps at once (teacher forcing without input feeding).
            keys: ``(B, S, Hk)``, the encoder outputs that are scored; unused when ``cache`` is given.
                With ``rows``, keys, values, mask and cache have ``N`` rows of their own.
            values: ``(B, S, Hv)``, the encoder outputs that are averaged (often the same as ``keys``).
            mask: ``(B, S)`` bool, True at real tokens; None means no padding.
            cache: ``precompute(keys)`` from an earlier step, to skip re-projecting the keys.
            rows: ``(B,)`` long, the row (of ``N``) of keys, values, mask and cache that each
                query attends to (the beams of a sentence share its encoder outputs);
                None: query row ``b`` reads row ``b``.

        Returns:
            ``(context, weights)``: ``(B, Hv)`` and ``(B, S)`` for a 2-D query,
            ``(B, T, Hv)`` and ``(B, T, S)`` for a 3-D one; weights are exactly 0 at
            masked positions.
        """
        if cache is None:
            cache = self.precompute(keys)
        N, S = cache.shape[:2]
        B = N if rows is None else rows.shape[0]
        if rows is not None and (rows.dim() != 1 or rows.dtype != torch.long):
            raise ValueError(f"expected rows as a 1-D long tensor, got {rows.dtype} of shape {tuple(rows.shape)}")
        if query.dim() not in (2, 3) or query.shape[0] != B:
            raise ValueError(f"expected query (B={B}, Hq) or (B={B}, T, Hq), got shape {tuple(query.shape)}")
        if values.shape[:2] != (N, S):
            raise ValueError(f"expected values (B={N}, S={S}, Hv), got shape {tuple(values.shape)}")
        if mask is not None and mask.shape != (N, S):
            raise ValueError(f"expected mask (B={N}, S={S}), got shape {tuple(mask.shape)}")
        one_step = query.dim() == 2
        if one_step and self.dot_scores and query.shape[1] == cache.shape[2]:
            from ._kernels.build import inference_kernels

            kernels = inference_kernels(query, cache, values)
            if kernels is not None:
                real = mask if mask is not None else torch.ones(N, S, dtype=torch.bool, device=query.device)
                context, weights = kernels.dot_attention(query, cache, values, real.bool(), rows)
                return context, weights
        if rows is not None:  # one copy of each source per query row, for the batched products below
            cache, values = cache.index_select(0, rows), values.index_select(0, rows)
            mask = mask.index_select(0, rows) if mask is not None else None
        if one_step:
            query = query.unsqueeze(1)  # (B, 1, Hq)
        scores = self._score(query, cache)  # (B, T, S)
        if mask is not None:
            # exp(-inf) = 0: padded positions get weight exactly 0, not just a small one.
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        context = torch.bmm(weights, values)  # (B, T, S) @ (B, S, Hv) -> (B, T, Hv)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


class AdditiveAttention(Attention):
    """Additive ("concat", MLP) attention of Bahdanau, Cho & Bengio 2015.

    "Neural Machine Translation by Jointly Learning to Align and Translate",
    Sect. 3.1 eq. (6) and Appendix A.1.2:

        e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)

    with query ``q = s_{i-1}`` and key ``k_j = h_j``.  As in the paper there
    are no biases.  ``U_a h_j`` does not depend on the decoder step, so
    ``precompute`` returns it (the paper's appendix makes the same remark).
    """

    def __init__(self, query_size: int, key_size: int, attn_size: int) -> None:
        super().__init__()
        _check_sizes(query_size=query_size, key_size=key_size, attn_size=attn_size)
        self.query_size, self.key_size, self.attn_size = query_size, key_size, attn_size
        self.query_proj = nn.Linear(query_size, attn_size, bias=False)  # W_a
        self.key_proj = nn.Linear(key_size, attn_size, bias=False)  # U_a
        self.energy = nn.Linear(attn_size, 1, bias=False)  # v_a^T

    def precompute(self, keys: Tensor) -> Tensor:
        """``U_a k``: ``(B, S, Hk) -> (B, S, A)``."""
        return self.key_proj(keys)  # (B, S, A)

    def _score(self, query: Tensor, cache: Tensor) -> Tensor:
        # e = v_a^T tanh(W_a q + U_a k)
        wq = self.query_proj(query).unsqueeze(2)  # (B, T, 1, A)
        return self.energy(torch.tanh(wq + cache.unsqueeze(1))).squeeze(-1)  # (B, T, S, A) -> (B, T, S)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}, attn_size={self.attn_size}"


class DotAttention(Attention):
    """Dot-product attention of Luong, Pham & Manning 2015.

    "Effective Approaches to Attention-based Neural Machine Translation",
    Sect. 3.1 eq. (8), "dot":

        score(h_t, h̄_s) = h_t^T h̄_s

    Unscaled, as in the paper (the 1/sqrt(d) of Vaswani et al. 2017 is not
    applied).  Query and keys must have the same size; there are no
    parameters, and the cache is the keys themselves.
    """

    dot_scores = True

    def precompute(self, keys: Tensor) -> Tensor:
        """The keys themselves: ``(B, S, Hk)``."""
        return keys

    def _score(self, query: Tensor, cache: Tensor) -> Tensor:
        if query.shape[-1] != cache.shape[-1]:
            raise ValueError(
                f"dot attention needs query and key sizes to match, got Hq={query.shape[-1]}, Hk={cache.shape[-1]};"
                " use 'general' or 'additive' attention for different sizes"
            )
        # score = q^T k
        return torch.bmm(query, cache.transpose(1, 2))  # (B, T, H) @ (B, H, S) -> (B, T, S)


class GeneralAttention(Attention):
    """Bilinear ("general") attention of Luong, Pham & Manning 2015.

    "Effective Approaches to Attention-based Neural Machine Translation",
    Sect. 3.1 eq. (8), "general":

        score(h_t, h̄_s) = h_t^T W_a h̄_s

    ``W_a`` is ``(Hq, Hk)``.  ``precompute`` returns ``W_a h̄_s`` for every
    source position, so each decoder step is one dot product per position.
    """

    dot_scores = True

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        _check_sizes(query_size=query_size, key_size=key_size)
        self.query_size, self.key_size = query_size, key_size
        self.key_proj = nn.Linear(key_size, query_size, bias=False)  # W_a, weight (Hq, Hk)

    def precompute(self, keys: Tensor) -> Tensor:
        """``W_a k``: ``(B, S, Hk) -> (B, S, Hq)``."""
        return self.key_proj(keys)  # (B, S, Hq)

    def _score(self, query: Tensor, cache: Tensor) -> Tensor:
        # score = q^T (W_a k)
        return torch.bmm(query, cache.transpose(1, 2))  # (B, T, Hq) @ (B, Hq, S) -> (B, T, S)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}"


ATTENTIONS: dict[str, type[Attention]] = {
    "additive": AdditiveAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
}
"""The attention registry: name -> class.  Models and the CLI look attention up here."""


def make_attention(kind: str, query_size: int, key_size: int, attn_size: int | None = None) -> Attention:
    """Build the attention named ``kind`` from :data:`ATTENTIONS`.

    ``attn_size`` is required for "additive" and refused by the others, so a
    config can never carry a setting that silently does nothing.  "dot"
    requires ``query_size == key_size``.
    """
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; valid kinds: {', '.join(ATTENTIONS)}")
    if kind == "additive":
        if attn_size is None:
            raise ValueError("additive attention needs attn_size")
        return AdditiveAttention(query_size, key_size, attn_size)
    if attn_size is not None:
        raise ValueError(f"attn_size is only used by additive attention, not by {kind!r}")
    if kind == "dot":
        _check_sizes(query_size=query_size, key_size=key_size)
        if query_size != key_size:
            raise ValueError(
                f"dot attention needs query_size == key_size, got {query_size} and {key_size};"
                " use 'general' or 'additive' attention for different sizes"
            )
        return DotAttention()
    return ATTENTIONS[kind](query_size, key_size)


def _check_sizes(**sizes: int) -> None:
    bad = {name: size for name, size in sizes.items() if size < 1}
    if bad:
        raise ValueError("sizes must be positive, got " + ", ".join(f"{n}={s}" for n, s in bad.items()))
