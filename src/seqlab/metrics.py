"""Sequence metrics: edit distance, and WER/PER for G2P (SPEC.md, "G2P split").

A G2P test word may have several reference pronunciations.  A hypothesis is
scored against the reference closest to it:

- WER: the fraction of words whose hypothesis equals one of its references;
- PER: ``sum_w d_w / sum_w len(r_w)``, where ``d_w`` is the smallest edit
  distance from the hypothesis of word ``w`` to its references and ``r_w`` is
  the reference attaining it.  When several references attain ``d_w``, the
  first of them (in the order given: for CMUdict, primary pronunciation
  first) is used, so the score is reproducible.  This choice only matters
  for a wrong hypothesis tied between references of different lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

__all__ = ["edit_distance", "wer_per"]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two symbol sequences (unit costs).

    Symbols are compared whole: ``["AA", "B"]`` and ``["AA", "BB"]`` are at
    distance 1.  Computed by ``rapidfuzz`` (C++).
    """
    # rapidfuzz compares the elements of lists/tuples by hash; a plain str
    # would be compared character by character, which is the same thing here.
    return Levenshtein.distance(a, b)


def wer_per(
    hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]]
) -> tuple[float, float]:
    """Word and phone error rates of G2P hypotheses, as fractions.

    WER lies in ``[0, 1]``; PER is usually below 1 but can exceed it when
    hypotheses are much longer than their references.

    Args:
        hyps: one predicted phone sequence per word (may be empty).
        refs: for each word, its reference pronunciations (at least one, each
            non-empty), in dictionary order.

    Returns:
        ``(wer, per)``; see the module docstring for the definitions.

    Raises:
        ValueError: ``hyps`` and ``refs`` differ in length or are empty, or a
            word has no references, or a reference is empty.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
    if len(hyps) == 0:
        raise ValueError("wer_per needs at least one word")
    wrong_words = 0
    errors = 0
    ref_phones = 0
    for w, (hyp, word_refs) in enumerate(zip(hyps, refs)):
        if len(word_refs) == 0:
            raise ValueError(f"word {w} has no reference pronunciations")
        for r, ref in enumerate(word_refs):
            if len(ref) == 0:
                raise ValueError(f"reference {r} of word {w} is empty")
        dists = [edit_distance(hyp, ref) for ref in word_refs]
        best_dist = min(dists)
        best_len = len(word_refs[dists.index(best_dist)])  # first reference attaining the min
        wrong_words += best_dist > 0
        errors += best_dist
        ref_phones += best_len
    return wrong_words / len(hyps), errors / ref_phones
