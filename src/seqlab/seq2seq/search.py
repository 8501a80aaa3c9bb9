"""Batched greedy and beam search over any decoder that can take one step.

The search never looks inside the decoder.  It talks to it through the
:class:`Stepper` protocol only: ``step`` scores the next token for every row
of a batch, ``reorder_state`` selects (and repeats) rows of the opaque
decoder state.  Rows are sentences for greedy search and sentences × beams,
``(B * K, ·)``, for beam search; sentences that are done are dropped from the
batch, so later steps only pay for the sentences still being searched (greedy
search waits until a quarter of its rows are done).  A decoder can keep what
belongs to a source sentence (encoder outputs) out of the rows it copies:
:class:`~seqlab.seq2seq.decoder.DecoderState` does, so a sentence's ``K``
beams read one copy of its encoder outputs.

Conventions shared by both searches:

* ``max_len`` caps the number of output tokens before EOS, an int or a
  ``(B,)`` LongTensor per sentence.  At step ``max_len`` only EOS is allowed
  (the log-probabilities of all other tokens are set to -inf), so every
  hypothesis ends with EOS and its score includes the EOS log-probability.
* Returned tokens exclude BOS and EOS; returned scores are the sum of the
  log-probabilities of the hypothesis, EOS included, before any length
  normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["Stepper", "SearchResult", "greedy_search", "beam_search", "generate"]

State = Any

# Greedy search drops finished sentences from the batch once they are this fraction of it: dropping
# copies the decoder's per-row state, while a finished row left in costs a little at every step (with
# the Seq2Seq state, whose encoder outputs are not copied, 0 to 0.25 decoded the G2P test words at the
# same speed).
DROP_FINISHED_AT = 0.25


class Stepper(Protocol):
    """What a decoder offers to the search; ``state`` is opaque to the search."""

    def step(self, y_prev: Tensor, state: State) -> tuple[Tensor, State]:
        """Score the next token: ``y_prev (N,)`` long -> ``(log_probs (N, V), state)``."""
        ...

    def reorder_state(self, state: State, index: Tensor) -> State:
        """Rows ``index (N',)`` of ``state`` (select, repeat or permute batch rows)."""
        ...


class Generator(Stepper, Protocol):
    """A :class:`Stepper` that also builds its initial state from a source batch."""

    def encode(self, src: Tensor, src_len: Tensor) -> State:
        """``src (B, S)``, ``src_len (B,)`` -> the initial decoder state for ``B`` rows."""
        ...


@dataclass(frozen=True)
class SearchResult:
    """Output of a search, one entry per sentence.

    Attributes:
        tokens: best hypothesis per sentence, without BOS and EOS.
        scores: ``(B,)`` sum of log-probabilities of ``tokens`` plus EOS, unnormalised.
        nbest: beam search only: up to ``beam_size`` finished hypotheses per
            sentence as ``(tokens, normalised score)``, best first; the first
            one is ``tokens``.  None for greedy search.
        nbest_log_probs: beam search only: the unnormalised log-probability
            (EOS included) of each hypothesis in ``nbest``, in its order.
    """

    tokens: list[list[int]]
    scores: Tensor
    nbest: list[list[tuple[list[int], float]]] | None = None
    nbest_log_probs: list[list[float]] | None = None


@torch.no_grad()
def generate(
    model: Generator,
    src: Tensor,
    src_len: Tensor,
    *,
    bos: int,
    eos: int,
    beam: int = 1,
    max_len: int | Tensor | None = None,
    length_penalty: float = 1.0,
    state: State | None = None,
) -> SearchResult:
    """Encode a source batch and decode it: greedy when ``beam == 1``, else beam search.

    ``max_len`` defaults to ``2 * src_len + 5`` per sentence.  ``state``:
    ``model.encode(src, src_len)`` when the caller has it already.
    """
    if state is None:
        state = model.encode(src, src_len)
    if max_len is None:
        max_len = 2 * src_len + 5
    kwargs = dict(batch_size=src.shape[0], bos=bos, eos=eos, max_len=max_len, device=src.device)
    if beam == 1:
        return greedy_search(model, state, **kwargs)
    return beam_search(model, state, beam_size=beam, length_penalty=length_penalty, **kwargs)


def greedy_search(
    decoder: Stepper,
    state: State,
    *,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    device: torch.device | str | None = None,
) -> SearchResult:
    """Pick the most probable token at every step: ``y_t = argmax_y log p(y | y_<t, x)``.

    Args:
        decoder: a :class:`Stepper`; ``state`` has ``batch_size`` rows.
        bos, eos: token ids that start and end a hypothesis.
        max_len: most output tokens before EOS, an int or a ``(B,)`` LongTensor.
        device: where the search's own tensors live; None: the device of the
            first tensor found in ``state`` (CPU if there is none).
    """
    _check_batch(batch_size, 1)
    device = _device(device, state)
    caps = _caps(max_len, batch_size, device)  # (n,) for the sentences still running
    active = torch.arange(batch_size, device=device)  # (n,) their index in the batch
    y_prev = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    running = None  # (n,) score so far, created with the decoder's dtype
    history = torch.empty(batch_size, 0, dtype=torch.long, device=device)  # (n, t)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    scores: Tensor | None = None

    gone = torch.zeros(batch_size, dtype=torch.bool, device=device)  # (n,) finished rows still in the batch
    for t in range(int(caps.max()) + 1):
        log_probs, state = decoder.step(y_prev, state)  # (n, V)
        _check_log_probs(log_probs, active.numel())
        if running is None:
            running = log_probs.new_zeros(batch_size)
            scores = log_probs.new_zeros(batch_size)
        choice = log_probs.argmax(dim=1).masked_fill(caps <= t, eos)  # (n,)
        running = running + log_probs.gather(1, choice.unsqueeze(1)).squeeze(1)  # (n,)

        done = (choice == eos) & ~gone  # (n,) finished at this step
        if bool(done.any()):
            rows = done.nonzero().squeeze(1)
            scores[active[rows]] = running[rows]
            for i, hyp in zip(active[rows].tolist(), history[rows].tolist()):
                tokens[i] = hyp
            gone = gone | done
            n_gone = int(gone.sum())
            if n_gone == gone.numel():
                break
            if n_gone >= DROP_FINISHED_AT * gone.numel():
                keep = (~gone).nonzero().squeeze(1)  # (n',)
                state = decoder.reorder_state(state, keep)
                active, caps, running, gone = active[keep], caps[keep], running[keep], gone[keep]
                choice, history = choice[keep], history[keep]
        history = torch.cat([history, choice.unsqueeze(1)], dim=1)  # (n, t + 1)
        y_prev = choice
    return SearchResult(tokens=tokens, scores=scores)


def beam_search(
    decoder: Stepper,
    state: State,
    *,
    batch_size: int,
    beam_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    length_penalty: float = 1.0,
    device: torch.device | str | None = None,
) -> SearchResult:
    """Beam search with length normalisation, all sentences and beams in one batch.

    At every step each sentence's ``K`` live hypotheses are extended by every
    token, and the ``2K`` best of the ``K * V`` candidates are taken with one
    ``topk``.  EOS candidates among the best ``K`` are moved to the
    sentence's finished list; the ``K`` best non-EOS candidates form the new
    beam, so the beam always holds ``K`` live hypotheses (the standard scheme
    of fairseq and OpenNMT; with at most one EOS per beam, ``2K`` candidates
    always contain ``K`` that are not EOS).

    Finished hypotheses are ranked by the normalised score (Wu et al. 2016,
    "Google's NMT System", Sect. 7, without their constant 5 and coverage
    term):

        score(Y) = log P(Y | X) / |Y|^α

    with ``|Y|`` the number of output tokens including EOS and
    ``α = length_penalty`` (0 ranks by log-probability alone).

    A sentence is done when it has ``K`` finished hypotheses and the best of
    them has a log-probability no live hypothesis can still reach (extending
    a hypothesis only lowers its log-probability), or when it reaches its
    ``max_len``.  With ``length_penalty = 0`` this means stopping never loses
    the beam's best hypothesis; with ``α > 0`` a longer live hypothesis could
    still have won after normalisation, which we accept as fairseq does.

    Args:
        decoder: a :class:`Stepper`; ``state`` has ``batch_size`` rows and is
            expanded to ``batch_size * beam_size`` rows, beams of a sentence
            next to each other.
        beam_size: ``K``; 1 gives the same result as :func:`greedy_search`.
        bos, eos: token ids that start and end a hypothesis.
        max_len: most output tokens before EOS, an int or a ``(B,)`` LongTensor.
        length_penalty: ``α`` above.
        device: where the search's own tensors live; None: the device of the
            first tensor found in ``state`` (CPU if there is none).
    """
    _check_batch(batch_size, beam_size)
    B, K = batch_size, beam_size
    device = _device(device, state)
    caps = _caps(max_len, B, device)  # (n,) for the sentences still running
    active = torch.arange(B, device=device)  # (n,) their index in the batch
    state = decoder.reorder_state(state, active.repeat_interleave(K))  # B -> B * K rows
    y_prev = torch.full((B * K,), bos, dtype=torch.long, device=device)
    history = torch.empty(B, K, 0, dtype=torch.long, device=device)  # (n, K, t)
    # Only beam 0 is live at the start: K copies of the same BOS would fill the beam with duplicates.
    beam_scores = torch.full((B, K), float("-inf"), device=device)  # (n, K)
    beam_scores[:, 0] = 0.0
    n_finished = torch.zeros(B, dtype=torch.long, device=device)  # (n,)
    best_finished = torch.full((B,), float("-inf"), device=device)  # (n,) unnormalised
    finished: list[list[tuple[list[int], float, float]]] = [[] for _ in range(B)]  # (tokens, raw, normalised)
    vocab = None

    for t in range(int(caps.max()) + 1):
        n = active.numel()
        log_probs, state = decoder.step(y_prev, state)  # (n * K, V)
        _check_log_probs(log_probs, n * K)
        if vocab is None:
            V = log_probs.shape[1]
            vocab = torch.arange(V, device=device)
            beam_scores, best_finished = beam_scores.to(log_probs.dtype), best_finished.to(log_probs.dtype)
        log_probs = log_probs.view(n, K, V)
        at_cap = caps <= t  # (n,)
        if bool(at_cap.any()):
            log_probs = log_probs.masked_fill(at_cap.view(n, 1, 1) & (vocab != eos), float("-inf"))

        # log P(y_<=t) = log P(y_<t) + log p(y_t | y_<t)
        candidates = (beam_scores.unsqueeze(2) + log_probs).view(n, K * V)  # (n, K * V)
        C = min(2 * K, K * V)
        top_scores, top_index = candidates.topk(C, dim=1)  # (n, C), best first
        top_beam, top_token = top_index // V, top_index % V  # (n, C) back-pointer and token
        is_eos = top_token == eos  # (n, C)

        # EOS among the best K: finished.  At the cap, EOS is forced even when the model gave it -inf.
        parent_live = torch.isfinite(beam_scores.gather(1, top_beam[:, :K]))  # (n, K)
        new_finished = is_eos[:, :K] & (torch.isfinite(top_scores[:, :K]) | (at_cap.unsqueeze(1) & parent_live))
        if bool(new_finished.any()):
            row, col = new_finished.nonzero(as_tuple=True)  # (m,), (m,)
            raw = top_scores[row, col]  # (m,)
            normalised = raw / float(t + 1) ** length_penalty  # |Y| = t tokens + EOS
            hyps = history[row, top_beam[row, col]]  # (m, t)
            for i, hyp, r, s in zip(active[row].tolist(), hyps.tolist(), raw.tolist(), normalised.tolist()):
                finished[i].append((hyp, r, s))
            n_finished = n_finished + new_finished.sum(dim=1)
            best_new = top_scores[:, :K].masked_fill(~new_finished, float("-inf")).max(dim=1).values  # (n,)
            best_finished = torch.maximum(best_finished, best_new)

        # The K best candidates that are not EOS, best first, form the new beam.
        rank = is_eos.long() * C + torch.arange(C, device=device)  # EOS ranks after every non-EOS
        pick = rank.topk(K, dim=1, largest=False).indices  # (n, K)
        beam_scores = top_scores.gather(1, pick).masked_fill(is_eos.gather(1, pick), float("-inf"))  # (n, K)
        parent = top_beam.gather(1, pick)  # (n, K)
        y_new = top_token.gather(1, pick)  # (n, K)
        history = torch.cat(
            [history.gather(1, parent.unsqueeze(2).expand(n, K, t)), y_new.unsqueeze(2)], dim=2
        )  # (n, K, t + 1)

        best_live = beam_scores.max(dim=1).values  # (n,)
        done = at_cap | torch.isinf(best_live) | ((n_finished >= K) & (best_finished >= best_live))  # (n,)
        if bool(done.all()):
            break
        rows = torch.arange(n, device=device)
        if bool(done.any()):
            rows = (~done).nonzero().squeeze(1)  # (n',)
            active, caps, n_finished, best_finished = active[rows], caps[rows], n_finished[rows], best_finished[rows]
            beam_scores, parent, y_new, history = beam_scores[rows], parent[rows], y_new[rows], history[rows]
        # Follow the back-pointers: row r * K + parent of sentence r's old rows.
        state = decoder.reorder_state(state, (rows.unsqueeze(1) * K + parent).view(-1))  # (n' * K,)
        y_prev = y_new.view(-1)

    return _beam_result(finished, K, log_probs.dtype, device)


def _beam_result(
    finished: list[list[tuple[list[int], float, float]]], K: int, dtype: torch.dtype, device: torch.device
) -> SearchResult:
    tokens, scores, nbest, log_probs = [], [], [], []
    for hyps in finished:
        # sorted() is stable: among equal normalised scores the earlier (shorter) hypothesis wins.
        hyps = sorted(hyps, key=lambda h: h[2], reverse=True)[:K]
        tokens.append(hyps[0][0] if hyps else [])
        scores.append(hyps[0][1] if hyps else float("-inf"))
        nbest.append([(hyp, s) for hyp, _, s in hyps])
        log_probs.append([r for _, r, _ in hyps])
    return SearchResult(tokens=tokens, scores=torch.tensor(scores, dtype=dtype, device=device), nbest=nbest,
                        nbest_log_probs=log_probs)


def _check_batch(batch_size: int, beam_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")


def _check_log_probs(log_probs: Tensor, rows: int) -> None:
    if log_probs.dim() != 2 or log_probs.shape[0] != rows:
        raise ValueError(f"decoder.step must return log_probs of shape ({rows}, V), got {tuple(log_probs.shape)}")


def _caps(max_len: int | Tensor, batch_size: int, device: torch.device) -> Tensor:
    """``max_len`` as a ``(B,)`` LongTensor on ``device``."""
    if isinstance(max_len, Tensor):
        if max_len.shape != (batch_size,) or max_len.dtype.is_floating_point or max_len.dtype == torch.bool:
            raise ValueError(f"max_len must be an int or a ({batch_size},) integer tensor, got {max_len!r}")
        caps = max_len.to(device=device, dtype=torch.long)
    else:
        caps = torch.full((batch_size,), int(max_len), dtype=torch.long, device=device)
    if bool((caps < 0).any()):
        raise ValueError(f"max_len must be >= 0, got {max_len!r}")
    return caps


def _device(device: torch.device | str | None, state: State) -> torch.device:
    if device is not None:
        return torch.device(device)
    found = _first_tensor(state)
    return found.device if found is not None else torch.device("cpu")


def _first_tensor(obj: Any) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None
