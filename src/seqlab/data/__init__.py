"""Data sources and batching: CMUdict G2P split, vocabularies, padding."""

from seqlab.data.batching import bucket_batches, pad_sequences
from seqlab.data.cmudict import (
    PHONES,
    SPLITS,
    default_dict_path,
    load_g2p,
    read_cmudict,
    split_of,
)
from seqlab.data.vocab import Vocab

__all__ = [
    "PHONES",
    "SPLITS",
    "Vocab",
    "bucket_batches",
    "default_dict_path",
    "load_g2p",
    "pad_sequences",
    "read_cmudict",
    "split_of",
]
