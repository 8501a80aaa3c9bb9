"""Vocab: fixed special ids, sorted symbols, encode/decode, checkpoint form."""

from __future__ import annotations

import json

import pytest
import torch

from seqlab.data import Vocab
from seqlab.errors import DataError


@pytest.fixture
def vocab() -> Vocab:
    return Vocab.build([["K", "AE", "T"], ["D", "AO", "G"], ["K", "AE", "T"]])


def test_specials_come_first_then_sorted_symbols(vocab):
    assert (vocab.pad, vocab.bos, vocab.eos, vocab.unk) == (0, 1, 2, 3)
    assert vocab.itos == ("<pad>", "<s>", "</s>", "<unk>", "AE", "AO", "D", "G", "K", "T")
    assert len(vocab) == 10
    assert "AE" in vocab and "ZH" not in vocab


def test_ids_do_not_depend_on_data_order():
    assert Vocab.build([["b", "a"], ["c"]]) == Vocab.build([["c", "a", "b"]])
    assert Vocab.build([["a"]]) != Vocab.build([["b"]])


def test_encode_with_bos_eos_and_unknown(vocab):
    assert vocab.encode(["K", "AE", "T"]) == [8, 4, 9]
    assert vocab.encode(["K", "AE", "T"], add_bos=True, add_eos=True) == [1, 8, 4, 9, 2]
    assert vocab.encode(["K", "ZH"]) == [8, vocab.unk]
    assert vocab.encode([]) == []


def test_decode_stops_at_eos_and_strips_pad_and_bos(vocab):
    assert vocab.decode([1, 8, 4, 9, 2, 6, 0, 0]) == ["K", "AE", "T"]
    assert vocab.decode([8, 3, 9]) == ["K", "<unk>", "T"]
    assert vocab.decode([1, 8, 2, 0], strip_special=False) == ["<s>", "K", "</s>", "<pad>"]
    assert vocab.decode(torch.tensor([8, 4, 9, 2, 0])) == ["K", "AE", "T"]


def test_encode_decode_round_trip(vocab):
    symbols = ["D", "AO", "G", "K"]
    assert vocab.decode(vocab.encode(symbols, add_bos=True, add_eos=True)) == symbols


def test_decode_rejects_out_of_range_ids(vocab):
    with pytest.raises(ValueError, match="id 10 is outside"):
        vocab.decode([4, 10])
    with pytest.raises(ValueError, match="id -1 is outside"):
        vocab.decode([-1])


@pytest.mark.parametrize("bad", ["<unk>", "<pad>", "</s>", "<s>"])
def test_symbol_clashing_with_special_is_rejected(bad):
    with pytest.raises(ValueError, match="clashes with a reserved special"):
        Vocab.build([["a", bad]])


@pytest.mark.parametrize("bad", ["", 3, None])
def test_non_string_or_empty_symbol_is_rejected(bad):
    with pytest.raises(ValueError, match="non-empty strings"):
        Vocab([bad])


def test_dict_round_trip_through_json(vocab):
    restored = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab
    assert restored.encode(["G", "AO", "D"]) == vocab.encode(["G", "AO", "D"])


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"itos": "abc"},
        {"itos": ["<pad>", "<s>", "</s>", "<unk>", 5]},
        {"itos": ["<s>", "<pad>", "</s>", "<unk>", "a"]},
        {"itos": ["<pad>", "<s>", "</s>", "<unk>", "b", "a"]},
        {"itos": ["<pad>", "<s>", "</s>", "<unk>", "a", "a"]},
        {"itos": ["<pad>", "<s>", "</s>", "<unk>", "<pad>"]},
        ["<pad>"],
    ],
)
def test_from_dict_rejects_malformed_data(data):
    with pytest.raises(DataError, match="invalid vocabulary"):
        Vocab.from_dict(data)
