import importlib.util
import os
import random
import sys
from pathlib import Path

import pytest
import torch

# Without CUDA the Triton kernels (tests/test_triton.py) run through Triton's interpreter on
# CPU tensors; Triton reads this when the kernels are defined, so it is set before any import.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from seqlab.tasks.g2p import G2PConfig, G2PTask


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` as a module (the folder is not a package; its scripts import each other)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_tuple(state):
    """A layer's state as a tuple, whether it has one tensor or several."""
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def run_with_grads(layer, x, state0, lengths):
    """Outputs, final state and every gradient of a weighted loss over all of them, on the CPU.

    ``x`` and ``state0`` are copied onto a fresh graph; an input the outputs do not depend on
    (SRU's h_0 without lengths) has no gradient in the reference loop and a zero one from the
    kernels, so a missing gradient counts as zero.
    """
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    state0 = tuple(s.clone().requires_grad_(True) for s in state0)
    out, final = layer(x, state0[0] if len(state0) == 1 else state0, lengths=lengths)
    final = as_tuple(final)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    loss = (out * weights).sum() + sum((k + 1) * f.sum() for k, f in enumerate(final))
    loss.backward()
    leaves = [x, *state0, *layer.parameters()]
    grads = [torch.zeros_like(v) if v.grad is None else v.grad for v in leaves]
    return [v.cpu() for v in [out, *final, *grads]]


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
