"""Padding and length-bucketed batching.

Recurrent models spend time on every padded step, so batches are made of
sequences of similar length: sort by length, cut the sorted list into
batches, then shuffle the order of the batches (not their contents) so that
training does not see lengths in increasing order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

__all__ = ["pad_sequences", "bucket_batches"]


def pad_sequences(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences into one tensor.

    Args:
        seqs: ``B`` sequences of ids (may have length 0).
        pad: the id to fill with (``Vocab.pad``).

    Returns:
        ``(ids, lengths)``: ``ids`` is a ``torch.long`` tensor ``(B, T)`` with
        ``T`` the longest length, ``lengths`` a ``torch.long`` tensor ``(B,)``.

    Raises:
        ValueError: ``seqs`` is empty.
    """
    if len(seqs) == 0:
        raise ValueError("pad_sequences needs at least one sequence")
    sizes = [len(s) for s in seqs]
    T = max(sizes)
    # One tensor from padded Python lists: far cheaper than a slice assignment per row.
    ids = torch.tensor([[*s, *[pad] * (T - n)] for s, n in zip(seqs, sizes)], dtype=torch.long)  # (B, T)
    return ids.view(len(seqs), T), torch.tensor(sizes, dtype=torch.long)


def bucket_batches(
    lengths: Sequence[int],
    max_tokens: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> list[list[int]]:
    """Group the indices of ``lengths`` into batches of similar length.

    Indices are sorted by length; equal lengths are ordered randomly (seeded)
    when ``shuffle``, else by index.  The sorted list is cut greedily: a
    batch is closed when adding the next index would exceed ``batch_size``
    sequences or ``max_tokens`` padded tokens (batch size times its longest
    length, which is what the model computes on).  Give either limit or both.
    With ``shuffle`` the order of the batches is then shuffled with
    ``random.Random(seed)``; without it batches come shortest first.

    The result depends only on the arguments: the same ``seed`` gives the
    same batches, and every index appears in exactly one batch.

    Args:
        lengths: length of each example (e.g. target length incl. ``</s>``).
        max_tokens: budget of padded tokens per batch.
        batch_size: most sequences per batch.
        shuffle: randomise tie order and batch order.
        seed: seed for the randomisation (pass the epoch number to get a new
            order each epoch).

    Returns:
        Lists of indices into ``lengths``, each sorted by length.

    Raises:
        ValueError: no limit given, a limit below 1, a negative length, or a
            sequence longer than ``max_tokens`` (it fits in no batch).
    """
    if max_tokens is None and batch_size is None:
        raise ValueError("bucket_batches needs max_tokens, batch_size, or both")
    for name, limit in (("max_tokens", max_tokens), ("batch_size", batch_size)):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be at least 1, got {limit}")
    for i, n in enumerate(lengths):
        if n < 0:
            raise ValueError(f"length of example {i} is negative ({n})")
        if max_tokens is not None and n > max_tokens:
            raise ValueError(
                f"example {i} has length {n} > max_tokens={max_tokens}; "
                "raise max_tokens or filter long examples out"
            )

    rng = random.Random(seed)
    tie_break = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(tie_break)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tie_break[i]))

    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        # Lengths ascend along `order`, so lengths[i] is the new batch maximum.
        too_many = batch_size is not None and len(batch) + 1 > batch_size
        too_long = max_tokens is not None and (len(batch) + 1) * lengths[i] > max_tokens
        if batch and (too_many or too_long):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)

    if shuffle:
        rng.shuffle(batches)
    return batches
