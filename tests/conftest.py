import os
import random

import pytest
import torch

# Without CUDA the Triton kernels (tests/test_triton.py) run through Triton's interpreter on
# CPU tensors; Triton reads this when the kernels are defined, so it is set before any import.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from seqlab.tasks.g2p import G2PConfig, G2PTask


def synthetic_g2p(n_train: int = 300, seed: int = 0) -> dict[str, list]:
    """A tiny lexicon with a learnable rule: each letter is one phone, read backwards."""
    rng = random.Random(seed)
    letters = "abcdefgh"

    def entry():
        word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 5)))
        return word, [tuple(ch.upper() for ch in reversed(word))]

    return {"train": [entry() for _ in range(n_train)], "dev": [entry() for _ in range(20)],
            "test": [entry() for _ in range(20)]}


TINY = dict(emb_size=8, enc_hidden=16, enc_layers=1, dec_hidden=32, dropout=0.1, batch_tokens=60,
            lr=1e-2, threads=1, label_smoothing=0.1)


@pytest.fixture
def tiny_task():
    def make(**overrides):
        return G2PTask(G2PConfig(**{**TINY, **overrides}), synthetic_g2p())

    return make
