"""Edit distance and G2P WER/PER (SPEC.md, "G2P split")."""

from __future__ import annotations

import pytest

from seqlab.metrics import edit_distance, wer_per


def test_edit_distance_compares_whole_symbols():
    assert edit_distance(["K", "AE", "T"], ["K", "AE", "T"]) == 0
    assert edit_distance(["AA", "B"], ["AA", "BB"]) == 1
    assert edit_distance(("K", "AE", "T"), ["K", "AA", "T", "S"]) == 2
    assert edit_distance([], ["K", "AE"]) == 2
    assert edit_distance(["K", "AE", "T"], ["T", "AE", "K"]) == 2


def test_exact_match_gives_zero_errors():
    refs = [[("K", "AE", "T")], [("D", "AO", "G")]]
    assert wer_per([["K", "AE", "T"], ("D", "AO", "G")], refs) == (0.0, 0.0)


def test_any_reference_counts_as_correct():
    refs = [[("T", "AH", "M", "EY", "T", "OW"), ("T", "AH", "M", "AA", "T", "OW")]]
    assert wer_per([["T", "AH", "M", "AA", "T", "OW"]], refs) == (0.0, 0.0)


def test_closest_reference_is_used():
    refs = [[("A", "B", "C", "D"), ("X", "Y")]]
    # Distance 1 to the first (4 phones), 4 to the second.
    assert wer_per([["A", "B", "C"]], refs) == (1.0, 1 / 4)
    # Distance 1 to the second (2 phones), 4 to the first.
    assert wer_per([["X"]], refs) == (1.0, 1 / 2)


def test_per_denominator_is_length_of_attaining_reference_summed_over_words():
    hyps = [["A", "B", "C"], ["K", "AE", "T"], ["X"]]
    refs = [
        [("A", "B", "C", "D"), ("Q",)],  # d=1, via the 4-phone ref
        [("K", "AE", "T")],  # d=0, 3 phones
        [("Z", "Z", "Z"), ("X", "Y")],  # d=1, via the 2-phone ref
    ]
    wer, per = wer_per(hyps, refs)
    assert wer == pytest.approx(2 / 3)
    assert per == pytest.approx((1 + 0 + 1) / (4 + 3 + 2))


def test_tie_uses_first_attaining_reference():
    # "A" is at distance 1 from both; the first listed decides the length.
    assert wer_per([["A"]], [[("A", "B"), ("C",)]]) == (1.0, 1 / 2)
    assert wer_per([["A"]], [[("C",), ("A", "B")]]) == (1.0, 1 / 1)


def test_empty_hypothesis_costs_the_closest_reference_length():
    refs = [[("K", "AE", "T", "S"), ("K", "AE", "T")]]
    assert wer_per([[]], refs) == (1.0, 3 / 3)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference"):
        wer_per([["A"], ["B"]], [[("A",)]])
    with pytest.raises(ValueError, match="at least one word"):
        wer_per([], [])
    with pytest.raises(ValueError, match="word 1 has no reference"):
        wer_per([["A"], ["B"]], [[("A",)], []])
    with pytest.raises(ValueError, match="reference 1 of word 0 is empty"):
        wer_per([["A"]], [[("A",), ()]])
