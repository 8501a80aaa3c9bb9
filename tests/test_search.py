"""Greedy and beam search driven by a hand-made decoder with fixed log-probability tables."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from seqlab.seq2seq import SearchResult, beam_search, greedy_search

EOS, BOS = 0, 1


class TableStepper:
    """A decoder whose next-token log-probabilities are ``table[sentence, t, y_prev]``.

    ``table`` is ``(B, T, V, V)``; ``state`` is ``(sentence (N,), t (N,))``, so
    every row knows which sentence it belongs to and how many steps it took.
    Steps past ``T - 1`` reuse the last table.
    """

    def __init__(self, table: Tensor) -> None:
        self.table = table

    def initial_state(self) -> tuple[Tensor, Tensor]:
        B = self.table.shape[0]
        return torch.arange(B), torch.zeros(B, dtype=torch.long)

    def step(self, y_prev: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        sentence, t = state
        t_table = t.clamp(max=self.table.shape[1] - 1)
        return self.table[sentence, t_table, y_prev], (sentence, t + 1)  # (N, V)

    def reorder_state(self, state: tuple[Tensor, ...], index: Tensor) -> tuple[Tensor, ...]:
        return tuple(s.index_select(0, index) for s in state)


def _random_table(seed: int, B: int, T: int, V: int, spread: float = 2.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(spread * torch.randn(B, T, V, V, generator=g, dtype=torch.float64), dim=-1)


def _table(V: int, T: int, rows: dict[tuple[int, int], dict[int, float]], eps: float = 1e-4) -> Tensor:
    """One sentence's ``(1, T, V, V)`` table from ``{(t, y_prev): {token: prob}}``.

    Unlisted rows put (almost) all mass on EOS; unlisted tokens get ``eps``;
    each row is renormalised.
    """
    probs = torch.full((T, V, V), eps, dtype=torch.float64)
    probs[:, :, EOS] = 1.0
    for (t, prev), dist in rows.items():
        probs[t, prev] = eps
        for token, p in dist.items():
            probs[t, prev, token] = p
    return (probs / probs.sum(-1, keepdim=True)).log().unsqueeze(0)


def _run(search, table: Tensor, **kwargs) -> SearchResult:
    stepper = TableStepper(table)
    return search(stepper, stepper.initial_state(), batch_size=table.shape[0], bos=BOS, eos=EOS, **kwargs)


def _sequence_log_prob(table: Tensor, b: int, tokens: list[int]) -> float:
    """log P(tokens + EOS) under sentence ``b``'s table, the slow way."""
    total, prev = 0.0, BOS
    for t, y in enumerate([*tokens, EOS]):
        total += float(table[b, min(t, table.shape[1] - 1), prev, y])
        prev = y
    return total


def _exact_best(table: Tensor, b: int, max_len: int) -> float:
    """The highest log P(Y + EOS) over every sequence of at most ``max_len`` non-EOS tokens."""
    V = table.shape[-1]
    tokens = [y for y in range(V) if y != EOS]
    return max(
        _sequence_log_prob(table, b, list(seq))
        for n in range(max_len + 1)
        for seq in itertools.product(tokens, repeat=n)
    )


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_beam_size_one_equals_greedy(seed, length_penalty):
    table = _random_table(seed, B=6, T=8, V=5)
    greedy = _run(greedy_search, table, max_len=7)
    beam = _run(beam_search, table, beam_size=1, max_len=7, length_penalty=length_penalty)
    assert beam.tokens == greedy.tokens
    torch.testing.assert_close(beam.scores, greedy.scores, rtol=0, atol=0)


def test_scores_are_log_prob_of_returned_tokens_with_eos():
    table = _random_table(7, B=4, T=6, V=6)
    for search, kwargs in [(greedy_search, {}), (beam_search, {"beam_size": 3})]:
        result = _run(search, table, max_len=5, **kwargs)
        for b, tokens in enumerate(result.tokens):
            assert EOS not in tokens
            assert float(result.scores[b]) == pytest.approx(_sequence_log_prob(table, b, tokens), abs=1e-12)


@pytest.mark.parametrize("length_penalty", [0.0, 0.6])
def test_batched_beam_equals_one_sentence_at_a_time(length_penalty):
    table = _random_table(3, B=5, T=9, V=6, spread=1.0)
    max_len = torch.tensor([8, 3, 0, 5, 8])
    batched = _run(beam_search, table, beam_size=3, max_len=max_len, length_penalty=length_penalty)
    for b in range(5):
        alone = _run(beam_search, table[b : b + 1], beam_size=3, max_len=int(max_len[b]), length_penalty=length_penalty)
        assert batched.tokens[b] == alone.tokens[0]
        assert batched.nbest[b] == alone.nbest[0]
        torch.testing.assert_close(batched.scores[b], alone.scores[0], rtol=0, atol=0)


def test_nbest_holds_beam_size_distinct_hypotheses_best_first():
    table = _random_table(11, B=3, T=7, V=5)
    result = _run(beam_search, table, beam_size=4, max_len=6, length_penalty=1.0)
    for b, nbest in enumerate(result.nbest):
        assert len(nbest) == 4
        assert nbest[0][0] == result.tokens[b]
        normalised = [s for _, s in nbest]
        assert normalised == sorted(normalised, reverse=True)
        assert len({tuple(tokens) for tokens, _ in nbest}) == 4
        for tokens, s in nbest:
            assert s == pytest.approx(_sequence_log_prob(table, b, tokens) / (len(tokens) + 1), abs=1e-12)


def test_beam_finds_the_sequence_greedy_misses():
    a, b = 2, 3
    # Greedy takes a (0.6) and then ends: 0.6 * 0.4 = 0.24.  [b] ends with 0.4 * 0.9 = 0.36.
    table = _table(V=4, T=3, rows={(0, BOS): {a: 0.6, b: 0.4}, (1, a): {EOS: 0.4, a: 0.3, b: 0.3}, (1, b): {EOS: 0.9}})
    greedy = _run(greedy_search, table, max_len=2)
    beam = _run(beam_search, table, beam_size=2, max_len=2, length_penalty=0.0)
    assert greedy.tokens == [[a]]
    assert beam.tokens == [[b]]
    assert float(beam.scores[0]) == pytest.approx(_sequence_log_prob(table, 0, [b]))
    assert float(beam.scores[0]) > float(greedy.scores[0])


def test_length_penalty_prefers_the_longer_hypothesis():
    a, b, c, x = 2, 3, 4, 5
    # [a]: 0.55 * 0.5 = 0.275, log / 2 = -0.65.  [b, c]: 0.45 * 0.6 * 0.9 = 0.243, log / 3 = -0.47.
    rows = {
        (0, BOS): {a: 0.55, b: 0.45},
        (1, a): {EOS: 0.5, x: 0.3, c: 0.2},
        (1, b): {c: 0.6, EOS: 0.1, x: 0.3},
        (2, c): {EOS: 0.9, x: 0.1},
    }
    table = _table(V=6, T=4, rows=rows)
    plain = _run(beam_search, table, beam_size=2, max_len=3, length_penalty=0.0)
    normalised = _run(beam_search, table, beam_size=2, max_len=3, length_penalty=1.0)
    assert plain.tokens == [[a]]
    assert normalised.tokens == [[b, c]]
    assert float(normalised.scores[0]) == pytest.approx(_sequence_log_prob(table, 0, [b, c]))


def test_beam_can_score_below_greedy():
    """Beam search is not monotone: a wider beam may push greedy's path out and end lower.

    Greedy: a (0.4), x (0.3), EOS (1.0) = 0.12.  Beam 2 keeps [a] and [b]
    after step 0, then [b, p] (0.176) and [b, q] (0.144) push every child of
    [a] (at most 0.12) out, and both end with EOS at 0.01.
    """
    a, b, c, x, y, z, p, q = range(2, 10)
    rows = {
        (0, BOS): {a: 0.4, b: 0.32, c: 0.28},
        (1, a): {x: 0.3, y: 0.25, z: 0.25, EOS: 0.2},
        (1, b): {p: 0.55, q: 0.45},
        (2, p): {EOS: 0.01, y: 0.99},
        (2, q): {EOS: 0.01, z: 0.99},
    }
    table = _table(V=10, T=3, rows=rows, eps=1e-6)
    greedy = _run(greedy_search, table, max_len=2)
    beam = _run(beam_search, table, beam_size=2, max_len=2, length_penalty=0.0)
    assert greedy.tokens == [[a, x]]
    assert beam.tokens[0][0] == b
    assert float(beam.scores[0]) < float(greedy.scores[0])


def test_max_len_caps_output_length():
    # EOS is almost never wanted: every hypothesis runs into its cap and is ended there.
    table = torch.log_softmax(torch.randn(3, 1, 5, 5, dtype=torch.float64), dim=-1)
    table[..., EOS] = -30.0
    for cap in (0, 1, 4):
        assert [len(t) for t in _run(greedy_search, table, max_len=cap).tokens] == [cap] * 3
        result = _run(beam_search, table, beam_size=3, max_len=cap)
        assert [len(t) for t in result.tokens] == [cap] * 3
        assert all(len(tokens) == cap for nbest in result.nbest for tokens, _ in nbest)

    caps = torch.tensor([0, 2, 5])
    assert [len(t) for t in _run(greedy_search, table, max_len=caps).tokens] == [0, 2, 5]
    assert [len(t) for t in _run(beam_search, table, beam_size=2, max_len=caps).tokens] == [0, 2, 5]
    # The forced EOS is paid for in the score.
    result = _run(greedy_search, table, max_len=caps)
    for b, tokens in enumerate(result.tokens):
        assert float(result.scores[b]) == pytest.approx(_sequence_log_prob(table, b, tokens))


def test_bad_arguments_are_refused():
    table = _random_table(0, B=2, T=3, V=4)
    with pytest.raises(ValueError, match="beam_size"):
        _run(beam_search, table, beam_size=0, max_len=2)
    with pytest.raises(ValueError, match="max_len"):
        _run(greedy_search, table, max_len=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="max_len"):
        _run(beam_search, table, beam_size=2, max_len=-1)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beam_size=st.integers(1, 4), max_len=st.integers(0, 3))
def test_no_search_beats_exact_search(seed, beam_size, max_len):
    """Greedy and beam scores are log-probabilities of real sequences, so never above the optimum."""
    table = _random_table(seed, B=2, T=4, V=4)
    greedy = _run(greedy_search, table, max_len=max_len)
    beam = _run(beam_search, table, beam_size=beam_size, max_len=max_len, length_penalty=0.0)
    for b in range(2):
        best = _exact_best(table, b, max_len)
        assert float(greedy.scores[b]) <= best + 1e-12
        assert float(beam.scores[b]) <= best + 1e-12


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), max_len=st.integers(0, 3))
def test_beam_wide_enough_to_keep_every_prefix_is_exact(seed, max_len):
    """With K at least the candidates of a step, V * (V - 1)^(max_len - 1), nothing is pruned."""
    table = _random_table(seed, B=2, T=4, V=4)
    beam = _run(beam_search, table, beam_size=36, max_len=max_len, length_penalty=0.0)
    for b in range(2):
        assert float(beam.scores[b]) == pytest.approx(_exact_best(table, b, max_len), abs=1e-12)
