"""A linear-chain conditional random field over per-step tag scores.

Lafferty, McCallum & Pereira (2001), "Conditional Random Fields", sec. 3: for
a sequence of ``T`` steps with emission scores ``e_t(y)`` (from a BiLSTM, say)
and tag-to-tag transition scores ``A[i, j]`` (tag ``i`` followed by ``j``), a
tag path ``y_1..y_T`` scores

    s(y) = start[y_1] + sum_t e_t(y_t) + sum_{t>1} A[y_{t-1}, y_t] + end[y_T]

and has probability ``exp s(y) / Z`` with ``Z`` the sum over all ``K^T``
paths.  ``log Z`` comes from the forward algorithm in ``O(T K^2)``:

    alpha_1(j) = start[j] + e_1(j)
    alpha_t(j) = logsumexp_i(alpha_{t-1}(i) + A[i, j]) + e_t(j)
    log Z      = logsumexp_j(alpha_T(j) + end[j])

and the best path from Viterbi's recursion, the same with max for logsumexp
and back-pointers.  The BiLSTM-CRF tagger is Huang, Xu & Yu (2015) and
Lample et al. (2016, sec. 2.2), whose start and end scores this layer has.

Padded batches: a step past a sequence's length carries ``alpha`` (and the
Viterbi scores) through unchanged, with back-pointers to the same tag, so the
end scores can be added once after the last step for every sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .recurrent import checked_lengths

__all__ = ["CRF"]


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags.

    ``forward(emissions, tags, lengths=None)`` is the negative log-likelihood
    of the gold ``tags``; :meth:`decode` gives the best paths (Viterbi).
    ``emissions``: ``(T, B, K)`` (``(B, T, K)`` with ``batch_first``) scores of
    each tag at each step; ``tags``: ``(T, B)`` (or ``(B, T)``) tag ids;
    ``lengths``: ``(B,)`` true lengths of a padded batch (default: all ``T``).
    """

    def __init__(self, num_tags: int, *, batch_first: bool = False) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # [i, j]: i followed by j
        self.start = nn.Parameter(torch.empty(num_tags))
        self.end = nn.Parameter(torch.empty(num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Small random scores, so that no tag order is preferred before training.
        for p in (self.transitions, self.start, self.end):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"{self.num_tags}" + (", batch_first=True" if self.batch_first else "")

    # ------------------------------------------------------------------ public

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None, *,
                reduction: str = "sum") -> Tensor:
        """``-log p(tags | emissions)``: per sequence ``(B,)`` with ``reduction="none"``, else their
        "sum" or "mean"."""
        if reduction not in ("none", "sum", "mean"):
            raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
        emissions, tags, mask, last = self._inputs(emissions, tags, lengths)
        nll = self._log_partition(emissions, mask) - self._path_score(emissions, tags, mask, last)  # (B,)
        if reduction == "none":
            return nll
        return nll.sum() if reduction == "sum" else nll.mean()

    def log_partition(self, emissions: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``log Z`` of each sequence, ``(B,)``."""
        emissions, _, mask, _ = self._inputs(emissions, None, lengths)
        return self._log_partition(emissions, mask)

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``s(tags)`` of each sequence, ``(B,)``: the unnormalised log-score of the given paths."""
        emissions, tags, mask, last = self._inputs(emissions, tags, lengths)
        return self._path_score(emissions, tags, mask, last)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Viterbi: ``(paths, scores)``, the highest-scoring tag path of each sequence as ``(T, B)``
        (or ``(B, T)``) int64, with -1 past each sequence's length, and its score ``s`` ``(B,)``."""
        emissions, _, mask, last = self._inputs(emissions, None, lengths)
        T, B, K = emissions.shape
        tags = torch.arange(K, device=emissions.device)
        best = self.start + emissions[0]  # (B, K): best score of a path ending in each tag
        pointers = []
        for t in range(1, T):
            # candidates[b, i, j]: the best path to tag i at t - 1, then tag j.  # (B, K, K)
            candidates = best.unsqueeze(2) + self.transitions
            top, arg = candidates.max(dim=1)  # (B, K)
            on = mask[t].unsqueeze(1)  # (B, 1)
            best = torch.where(on, top + emissions[t], best)
            pointers.append(torch.where(on, arg, tags))  # padding: point to the same tag
        scores, tag = (best + self.end).max(dim=1)  # (B,)
        path = [tag]
        for arg in reversed(pointers):
            tag = arg.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        paths = torch.stack(path[::-1])  # (T, B)
        paths = paths.masked_fill(~mask, -1)
        return (paths.t() if self.batch_first else paths), scores

    # ----------------------------------------------------------------- helpers

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        alpha = self.start + emissions[0]  # (B, K)
        for t in range(1, emissions.shape[0]):
            # logsumexp over the previous tag i of alpha(i) + A[i, j].  # (B, K, K) -> (B, K)
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[t]
            alpha = torch.where(mask[t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def _path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor, last: Tensor) -> Tensor:
        T, B, _ = emissions.shape
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (T, B): e_t(y_t)
        moved = self.transitions[tags[:-1], tags[1:]]  # (T - 1, B): A[y_{t-1}, y_t]
        on = mask.to(emissions.dtype)
        total = self.start[tags[0]] + (emitted * on).sum(0) + (moved * on[1:]).sum(0)
        final = tags.gather(0, last.unsqueeze(0)).squeeze(0)  # (B,): each sequence's last tag
        return total + self.end[final]

    def _inputs(self, emissions: Tensor, tags: Tensor | None, lengths: Tensor | None):
        """Checked inputs in the ``(T, B, ·)`` layout, the ``(T, B)`` step mask and each last step."""
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            layout = "(B, T, K)" if self.batch_first else "(T, B, K)"
            raise ValueError(f"expected emissions {layout} with K={self.num_tags}, got shape {tuple(emissions.shape)}")
        if self.batch_first:
            emissions = emissions.transpose(0, 1)
            tags = None if tags is None else tags.transpose(0, 1)
        T, B, _ = emissions.shape
        lengths = checked_lengths(lengths, T, B)
        if tags is not None:
            if tags.shape != (T, B):
                want = (B, T) if self.batch_first else (T, B)
                got = tuple(tags.transpose(0, 1).shape) if self.batch_first else tuple(tags.shape)
                raise ValueError(f"expected tags of shape {want}, got {got}")
            if tags.dtype != torch.long:
                raise ValueError(f"tags must be int64 ids, got {tags.dtype}")
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=emissions.device)
        lengths = lengths.to(emissions.device)
        mask = torch.arange(T, device=emissions.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
        if tags is not None:
            valid = tags[mask]
            if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= self.num_tags):
                raise ValueError(f"tags must lie in [0, {self.num_tags - 1}], got min {int(valid.min())}, "
                                 f"max {int(valid.max())}")
            tags = tags.masked_fill(~mask, 0)  # padding may hold anything (e.g. -1); it is never scored
        return emissions, tags, mask, lengths - 1
