"""Padding and length-bucketed batching."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.data import bucket_batches, pad_sequences


def test_pad_sequences_values_shapes_and_dtypes():
    ids, lengths = pad_sequences([[5, 6, 7], [8], []], pad=0)
    assert ids.dtype == torch.long and lengths.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert lengths.tolist() == [3, 1, 0]


def test_pad_sequences_uses_given_pad_id():
    ids, _ = pad_sequences([[1], [2, 3]], pad=9)
    assert ids.tolist() == [[1, 9], [2, 3]]


def test_pad_sequences_rejects_empty_batch():
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_sequences([], pad=0)


def test_batch_size_cuts_sorted_lengths():
    lengths = [5, 1, 3, 2, 4]
    batches = bucket_batches(lengths, batch_size=2, shuffle=False)
    assert batches == [[1, 3], [2, 4], [0]]


def test_max_tokens_counts_padded_tokens():
    lengths = [2, 2, 3, 6, 1]
    # Sorted: 4(1) 0(2) 1(2) 2(3) 3(6).  Budget 6: [4,0,1] is 3x2=6, adding
    # 2 would be 4x3=12; [2] plus 3 would be 2x6=12; [3] alone is 6.
    assert bucket_batches(lengths, max_tokens=6, shuffle=False) == [[4, 0, 1], [2], [3]]


def test_both_limits_apply():
    lengths = [1] * 5
    by_count = bucket_batches(lengths, max_tokens=100, batch_size=2, shuffle=False)
    by_tokens = bucket_batches(lengths, max_tokens=3, batch_size=4, shuffle=False)
    assert [len(b) for b in by_count] == [2, 2, 1]
    assert [len(b) for b in by_tokens] == [3, 2]


def test_same_seed_same_batches_other_seed_other_order():
    lengths = [i % 7 + 1 for i in range(200)]
    a = bucket_batches(lengths, batch_size=8, seed=3)
    assert a == bucket_batches(lengths, batch_size=8, seed=3)
    assert a != bucket_batches(lengths, batch_size=8, seed=4)


def test_shuffle_randomises_ties_within_length():
    lengths = [4] * 50
    unshuffled = bucket_batches(lengths, batch_size=50, shuffle=False)
    shuffled = bucket_batches(lengths, batch_size=50, seed=0)
    assert unshuffled == [list(range(50))]
    assert sorted(shuffled[0]) == list(range(50)) and shuffled[0] != list(range(50))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="needs max_tokens, batch_size"):
        bucket_batches([1, 2])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        bucket_batches([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="length of example 1 is negative"):
        bucket_batches([1, -2], batch_size=2)
    with pytest.raises(ValueError, match="example 0 has length 9 > max_tokens=8"):
        bucket_batches([9, 2], max_tokens=8)


def test_empty_input_gives_no_batches():
    assert bucket_batches([], batch_size=4) == []


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=30), max_size=120),
    max_tokens=st.one_of(st.none(), st.integers(min_value=30, max_value=200)),
    batch_size=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    shuffle=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_index_once_and_limits_respected(lengths, max_tokens, batch_size, shuffle, seed):
    if max_tokens is None and batch_size is None:
        batch_size = 7
    batches = bucket_batches(lengths, max_tokens, batch_size, shuffle=shuffle, seed=seed)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(batches)
    for batch in batches:
        if max_tokens is not None:
            assert len(batch) * max(lengths[i] for i in batch) <= max_tokens
        if batch_size is not None:
            assert len(batch) <= batch_size
    # Buckets: batches are runs of the length-sorted order, so their length
    # ranges do not overlap.
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))
    assert batches == bucket_batches(lengths, max_tokens, batch_size, shuffle=shuffle, seed=seed)
