"""Property-based tests (hypothesis) of the data readers, the vocabulary, the metrics, the searches and
input normalisation: invariants that must hold for every input, checked against simple reference code."""

from __future__ import annotations

import json
import re
import tempfile
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.data import PHONES, Vocab, load_g2p, pad_sequences, read_cmudict, split_of
from seqlab.errors import DataError, SeqlabError
from seqlab.metrics import edit_distance, wer_per
from seqlab.seq2seq import beam_search, greedy_search
from seqlab.tasks.g2p import MAX_WORD_LENGTH, normalize_word

SETTINGS = settings(max_examples=60, deadline=None)

# --------------------------------------------------------------------------
# cmudict reader
# --------------------------------------------------------------------------

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=8)
prons = st.lists(st.tuples(st.sampled_from(PHONES), st.sampled_from(["", "0", "1", "2"])), min_size=1, max_size=6)
skipped_lines = st.sampled_from(
    ["", "   ", "# a comment", "3-d TH R IY1 D IY1", "ABC AH0 B", "a. EY1", "one-way W AH1 N"]
)  # blank, comment, or a well-formed entry whose word SPEC's filter drops


def _dictionary_lines(draw):
    """Shuffled dictionary lines (variants as ``word(2)``, stress digits, comments, lines the reader skips)."""
    entries = draw(st.lists(st.tuples(words, prons), min_size=1, max_size=25))
    seen: dict[str, int] = {}
    lines = []
    for word, pron in entries:
        seen[word] = seen.get(word, 0) + 1
        name = word if seen[word] == 1 else f"{word}({seen[word]})"
        comment = draw(st.sampled_from(["", "  # from a test", "#x"]))
        lines.append(f"{name} {' '.join(p + s for p, s in pron)}{comment}")
    lines += draw(st.lists(skipped_lines, max_size=4))
    return draw(st.permutations(lines))


def _reference_read(lines):
    """What SPEC's rules give for ``lines``, written the slow and obvious way."""
    lexicon: dict[str, list[tuple[str, ...]]] = {}
    for line in lines:
        fields = line.split("#")[0].split()
        if not fields:
            continue
        word = re.sub(r"\(\d+\)$", "", fields[0])
        if not re.fullmatch(r"[a-z']+", word):
            continue
        pron = tuple(p.rstrip("012") for p in fields[1:])
        if pron not in lexicon.setdefault(word, []):
            lexicon[word].append(pron)
    return lexicon


@SETTINGS
@given(st.data())
def test_read_cmudict_matches_the_rules_and_load_g2p_partitions_it(data):
    lines = _dictionary_lines(data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test.dict"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        lexicon = read_cmudict(path)
        splits = load_g2p(path)
    expected = _reference_read(lines)
    assert lexicon == expected and list(lexicon) == list(expected)  # same words, same first-seen order
    everything = []
    for name, entries in splits.items():
        assert [w for w, _ in entries] == sorted(w for w, _ in entries)
        assert all(split_of(w) == name for w, _ in entries)
        everything += entries
    assert sorted(everything) == sorted(expected.items())


@SETTINGS
@given(st.data(), st.sampled_from(["hello", "hello AH0 9", "hello H@ L", "x(2) ah"]))
def test_a_malformed_line_is_reported_with_its_file_and_line(data, bad):
    lines = [line for line in _dictionary_lines(data.draw) if line.strip()]
    at = data.draw(st.integers(0, len(lines)))
    lines.insert(at, bad)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.dict"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(DataError) as err:
            read_cmudict(path)
    assert str(err.value).startswith(f"{path}:{at + 1}: ")


# --------------------------------------------------------------------------
# Vocabulary and padding
# --------------------------------------------------------------------------

symbols = st.text(min_size=1, max_size=3).filter(lambda s: s not in Vocab.SPECIALS)


@SETTINGS
@given(st.lists(symbols, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_vocab_ids_round_trip_and_do_not_depend_on_order(syms, rng):
    vocab = Vocab(syms)
    shuffled = list(syms)
    rng.shuffle(shuffled)
    assert Vocab(shuffled) == vocab and len(vocab) == len(Vocab.SPECIALS) + len(set(syms))
    assert Vocab.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    ids = vocab.encode(shuffled, add_bos=True, add_eos=True)
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos and vocab.unk not in ids
    assert vocab.decode(ids) == shuffled
    assert vocab.encode(["<never seen>"]) == [vocab.unk]


@SETTINGS
@given(st.lists(st.lists(st.integers(1, 50), max_size=7), min_size=1, max_size=8), st.integers(0, 3))
def test_padding_keeps_every_sequence_and_only_adds_pad(seqs, pad):
    ids, lengths = pad_sequences(seqs, pad)  # (B, T), (B,)
    assert ids.shape == (len(seqs), max(len(s) for s in seqs))
    for row, seq, n in zip(ids.tolist(), seqs, lengths.tolist()):
        assert n == len(seq) and row[:n] == seq and all(x == pad for x in row[n:])


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

phone_seqs = st.lists(st.sampled_from(["AA", "B", "K", "T"]), max_size=7)


def _levenshtein(a, b):
    """Textbook dynamic programme (Wagner and Fischer 1974), the reference for rapidfuzz."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@SETTINGS
@given(phone_seqs, phone_seqs, phone_seqs)
def test_edit_distance_is_the_levenshtein_metric(a, b, c):
    d = edit_distance(a, b)
    assert d == _levenshtein(a, b) == edit_distance(b, a)
    assert (d == 0) == (a == b) and abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert edit_distance(a, c) <= d + edit_distance(b, c)


@SETTINGS
@given(st.lists(st.tuples(phone_seqs, st.lists(phone_seqs.filter(bool), min_size=1, max_size=3)), min_size=1,
                max_size=10), st.randoms(use_true_random=False))
def test_wer_per_bounds_and_reference_values(pairs, rng):
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    wer, per = wer_per(hyps, refs)
    assert wer == sum(h not in r for h, r in pairs) / len(pairs)
    assert per >= 0 and (per == 0) == (wer == 0)
    assert wer_per(hyps, refs)[1] == pytest.approx(
        sum(min(_levenshtein(h, x) for x in r) for h, r in pairs)
        / sum(len(min(r, key=lambda x, h=h: _levenshtein(h, x))) for h, r in pairs)
    )
    rng.shuffle(pairs)  # the score of a word list does not depend on its order
    assert wer_per([h for h, _ in pairs], [r for _, r in pairs]) == pytest.approx((wer, per))
    assert wer_per([r[0] for r in refs], refs) == (0.0, 0.0)  # saying any reference is perfect


# --------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------

BOS, EOS = 0, 1


class _Markov:
    """A decoder whose next-token log-probabilities depend on the sentence and the previous token only."""

    def __init__(self, table):  # (B, V, V)
        self.table = table

    def step(self, y_prev, sentence):
        return self.table[sentence, y_prev], sentence  # (N, V)

    def reorder_state(self, sentence, index):
        return sentence.index_select(0, index)


def _log_prob(table, b, tokens):
    prev, total = BOS, 0.0
    for y in [*tokens, EOS]:
        total, prev = total + float(table[b, prev, y]), y
    return total


def _search(table, caps, beam, length_penalty=1.0):
    decoder = _Markov(table)
    state = torch.arange(table.shape[0])
    kw = dict(batch_size=table.shape[0], bos=BOS, eos=EOS, max_len=caps)
    if beam == 0:
        return greedy_search(decoder, state, **kw)
    return beam_search(decoder, state, beam_size=beam, length_penalty=length_penalty, **kw)


tables = st.builds(
    lambda seed, B, V, spread: torch.log_softmax(
        spread * torch.randn(B, V, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1
    ),
    st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(3, 6), st.sampled_from([0.5, 2.0, 5.0]),
)


@SETTINGS
@given(tables, st.integers(1, 4), st.sampled_from([0.0, 1.0]), st.data())
def test_beam_search_invariants(table, beam, length_penalty, data):
    B = table.shape[0]
    caps = torch.tensor(data.draw(st.lists(st.integers(0, 6), min_size=B, max_size=B)))
    result = _search(table, caps, beam, length_penalty)
    for b in range(B):
        tokens = result.tokens[b]
        assert len(tokens) <= caps[b] and EOS not in tokens
        assert float(result.scores[b]) == pytest.approx(_log_prob(table, b, tokens), abs=1e-9)
        nbest = result.nbest[b]
        assert nbest[0][0] == tokens and 1 <= len(nbest) <= beam
        assert [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)
        assert len({tuple(h) for h, _ in nbest}) == len(nbest)
        assert len(result.nbest_log_probs[b]) == len(nbest)
        for (hyp, s), lp in zip(nbest, result.nbest_log_probs[b]):  # Wu et al. 2016: log P / |Y|^alpha
            assert lp == pytest.approx(_log_prob(table, b, hyp), abs=1e-9)
            assert s == pytest.approx(lp / (len(hyp) + 1) ** length_penalty, abs=1e-9)
        alone = _search(table[b : b + 1], caps[b : b + 1], beam, length_penalty)  # batching changes nothing
        assert alone.tokens[0] == tokens


@SETTINGS
@given(tables, st.integers(0, 6))
def test_beam_of_one_is_greedy(table, cap):
    caps = torch.full((table.shape[0],), cap)
    greedy, beam = _search(table, caps, 0), _search(table, caps, 1)
    assert greedy.tokens == beam.tokens
    torch.testing.assert_close(greedy.scores, beam.scores)


# --------------------------------------------------------------------------
# Input normalisation (what seqlab g2p, predict and serve accept)
# --------------------------------------------------------------------------


def _reference_normalize(word):
    """Decompose, drop combining accents, lowercase; the parts between hyphens/underscores; None if refused."""
    text = "".join(ch for ch in unicodedata.normalize("NFKD", word.strip()) if not unicodedata.combining(ch))
    text = text.lower().replace("_", "-")
    if not text or any(not ("a" <= ch <= "z" or ch in "'-") for ch in text):
        return None
    parts = [p for p in text.split("-") if p.strip("'")]
    if not parts or any(len(p) > MAX_WORD_LENGTH for p in parts):
        return None
    return parts


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=12), st.text(alphabet="abcXYZ-_' éüñ1ß€", max_size=12)))
def test_normalize_word_keeps_every_letter_or_refuses_in_one_line(word):
    expected = _reference_normalize(word)
    try:
        parts = normalize_word(word)
    except SeqlabError as err:
        assert expected is None, f"{word!r} refused ({err}) but pronounceable as {expected}"
        assert "\n" not in str(err)
        return
    # Nothing may be dropped silently: 'x€y' must be refused, not read as 'xy'.
    assert parts == expected
    assert all(re.fullmatch(r"[a-z']+", p) for p in parts)
    assert normalize_word("-".join(parts)) == parts  # normalising twice changes nothing
