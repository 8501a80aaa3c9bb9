"""Rescoring n-best lists with a right-to-left model.

A left-to-right decoder commits to its first tokens before it has seen how
the sequence ends; a model trained on reversed targets makes the opposite
mistakes.  Liu et al. 2016 ("Agreement on Target-bidirectional Neural
Machine Translation", NAACL) and Sennrich et al. 2016 (Edinburgh's WMT16
systems) let each direction propose an n-best list and rank the union by
both models' scores.  Here a candidate ``Y`` of source ``X`` is ranked by

    (1 - w) * log P_l2r(Y | X) / |Y|^α  +  w * log P_r2l(reverse(Y) | X) / |Y|^α

with ``|Y|`` the number of tokens including EOS, ``α`` the beam search's
length penalty and ``w`` the weight of the right-to-left model (tuned on
held-out data).  Both models may be ensembles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .search import SearchResult, generate

__all__ = ["sequence_log_probs", "Candidates", "bidirectional_candidates", "rerank"]


@torch.no_grad()
def sequence_log_probs(
    model: nn.Module,
    src: Tensor,
    src_len: Tensor,
    hyps: list[list[int]],
    *,
    bos: int,
    eos: int,
    rows: Tensor | None = None,
    state=None,
) -> Tensor:
    """``log P(hyp + EOS | src)`` for each hypothesis, by teacher forcing: ``-> (N,)``.

    ``src (B, S)`` is encoded once (or ``state``, ``model.encode(src, src_len)``,
    is reused); hypothesis ``n`` belongs to source ``rows[n]`` (default:
    ``n``, one hypothesis per source).  ``model`` is a
    :class:`~seqlab.seq2seq.model.Seq2Seq` or an
    :class:`~seqlab.seq2seq.ensemble.Ensemble`: ``encode``,
    ``reorder_state`` and ``teacher_force`` returning per-step logits or
    log-probabilities ``(N, T, V)``.
    """
    if rows is None:
        rows = torch.arange(src.shape[0], device=src.device)
    if len(hyps) != rows.shape[0]:
        raise ValueError(f"{len(hyps)} hypotheses for {rows.shape[0]} rows")
    # (N, T) inputs BOS y_1 .. y_n EOS.., targets y_1 .. y_n EOS EOS.., mask over the n + 1 scored steps,
    # filled from all hypotheses' tokens at once.
    lengths = torch.tensor([len(h) for h in hyps], dtype=torch.long)
    T = int(lengths.max()) + 1
    tokens = torch.tensor([t for h in hyps for t in h], dtype=torch.long)
    row = torch.repeat_interleave(torch.arange(len(hyps)), lengths)  # (total,)
    col = torch.arange(tokens.numel()) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    tgt_out = torch.full((len(hyps), T), eos, dtype=torch.long)
    tgt_out[row, col] = tokens
    tgt_in = torch.cat([torch.full((len(hyps), 1), bos, dtype=torch.long), tgt_out[:, :-1]], dim=1)
    mask = torch.arange(T) <= lengths.unsqueeze(1)
    tgt_in, tgt_out, mask = tgt_in.to(src.device), tgt_out.to(src.device), mask.to(src.device)
    if state is None:
        state = model.encode(src, src_len)
    state = model.reorder_state(state, rows)
    out, _ = model.teacher_force(tgt_in, state)
    token_lp = torch.log_softmax(out.float(), dim=-1).gather(2, tgt_out.unsqueeze(2)).squeeze(2)  # (N, T)
    return token_lp.masked_fill(~mask, 0.0).sum(dim=1)


@dataclass(frozen=True)
class Candidates:
    """The union of both directions' n-best lists with both models' scores.

    ``hyps[i]`` are sentence ``i``'s distinct candidates (left to right),
    ``l2r[i]`` and ``r2l[i]`` their log-probabilities ``(n_i,)`` under each
    model, EOS included, unnormalised.
    """

    hyps: list[list[list[int]]]
    l2r: list[Tensor]
    r2l: list[Tensor]

    def best(self, weight: float, length_penalty: float = 1.0) -> list[list[int]]:
        """Each sentence's best candidate under the combined score of the module docstring."""
        out = []
        for hyps, fwd, bwd in zip(self.hyps, self.l2r, self.r2l):
            if not hyps:
                out.append([])
                continue
            norm = torch.tensor([float(len(h) + 1) ** length_penalty for h in hyps])
            score = ((1 - weight) * fwd + weight * bwd) / norm
            out.append(hyps[int(score.argmax())])  # argmax takes the first of equal scores
        return out


@torch.no_grad()
def bidirectional_candidates(
    l2r: nn.Module,
    r2l: nn.Module,
    src: Tensor,
    src_len: Tensor,
    *,
    bos: int,
    eos: int,
    beam: int,
    length_penalty: float = 1.0,
) -> Candidates:
    """Beam-search both models, pool their n-best lists, score every candidate with both.

    Each model encodes the source once, for its search and its scoring.  A
    candidate from a model's own n-best list keeps the log-probability its
    search summed; only the candidates that the other direction alone found
    are scored by teacher forcing (the two agree to float rounding), so
    each model teacher-forces a fraction of the pool instead of all of it.
    """
    options = dict(bos=bos, eos=eos, beam=beam, length_penalty=length_penalty)
    l2r_state, r2l_state = l2r.encode(src, src_len), r2l.encode(src, src_len)
    forward: SearchResult = generate(l2r, src, src_len, state=l2r_state, **options)
    backward: SearchResult = generate(r2l, src, src_len, state=r2l_state, **options)
    # Per sentence: candidate (left to right) -> [log P_l2r or None, log P_r2l or None], in the order found.
    known: list[dict[tuple[int, ...], list[float | None]]] = []
    for i in range(src.shape[0]):
        seen: dict[tuple[int, ...], list[float | None]] = {}
        for (tokens, _), lp in zip(forward.nbest[i], forward.nbest_log_probs[i]):
            seen.setdefault(tuple(tokens), [None, None])[0] = lp
        for (tokens, _), lp in zip(backward.nbest[i], backward.nbest_log_probs[i]):
            seen.setdefault(tuple(reversed(tokens)), [None, None])[1] = lp
        known.append(seen)
    for side, (model, state) in enumerate(((l2r, l2r_state), (r2l, r2l_state))):
        missing = [(i, hyp) for i, seen in enumerate(known) for hyp, lps in seen.items() if lps[side] is None]
        if not missing:
            continue
        rows = torch.tensor([i for i, _ in missing], dtype=torch.long, device=src.device)
        hyps = [list(hyp) if side == 0 else list(reversed(hyp)) for _, hyp in missing]
        scores = sequence_log_probs(model, src, src_len, hyps, bos=bos, eos=eos, rows=rows, state=state)
        for (i, hyp), lp in zip(missing, scores.tolist()):
            known[i][hyp][side] = lp
    pools = [[list(hyp) for hyp in seen] for seen in known]
    fwd_lp = [torch.tensor([lps[0] for lps in seen.values()]) for seen in known]
    bwd_lp = [torch.tensor([lps[1] for lps in seen.values()]) for seen in known]
    return Candidates(pools, fwd_lp, bwd_lp)


def rerank(
    l2r: nn.Module,
    r2l: nn.Module,
    src: Tensor,
    src_len: Tensor,
    *,
    bos: int,
    eos: int,
    beam: int,
    weight: float,
    length_penalty: float = 1.0,
    rank_length_penalty: float | None = None,
) -> list[list[int]]:
    """The best candidate per sentence (left to right) after bidirectional rescoring.

    ``length_penalty`` is the beam searches' α; ``rank_length_penalty`` the
    α of the combined score (default: the same).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    found = bidirectional_candidates(
        l2r, r2l, src, src_len, bos=bos, eos=eos, beam=beam, length_penalty=length_penalty
    )
    return found.best(weight, length_penalty if rank_length_penalty is None else rank_length_penalty)
