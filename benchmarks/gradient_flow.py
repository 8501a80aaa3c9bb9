"""Vanishing and exploding gradients, measured: ``||dL/dh_t||`` at every step of 100-step sequences.

Sizes: 32 sequences of 100 characters (one-hot, 28 symbols: a-z, the
apostrophe and a space) cut from the CMU dictionary's words in order, hidden
size 128, float64, untrained cells.  ``L = <h_T, u>`` with ``u`` a random unit
vector per sequence, so the last step's gradient has norm 1 and every
earlier step shows how much of it survives the trip back
(``seqlab.nn.gradients.step_gradient_norms``).  Cells: the tanh RNN with
orthogonal recurrent weights scaled by 0.5, 1 and 2; the ReLU RNN with the
identity (IRNN, Le et al. 2015) and 1.1 times it; LSTM, GRU and JANET with
seqlab's default initialisation (forget-gate bias 1; JANET's chrono bias).

Writes ``docs/results/gradient_flow.md`` and ``gradient_flow.png``.

Usage:
    python benchmarks/gradient_flow.py [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.data.cmudict import load_g2p
from seqlab.nn import CELLS, init
from seqlab.nn.gradients import step_gradient_norms
from seqlab.plot import line_plot
from seqlab.provenance import cpu_name, git_commit

REPO = Path(__file__).resolve().parents[1]
SYMBOLS = "abcdefghijklmnopqrstuvwxyz' "
T, B, H = 100, 32, 128
# (label, cell, recurrent weights: ("orthogonal", gain) or ("identity", gain) or None for the cell's own init)
CONFIGS = [
    ("tanh RNN, orthogonal x 0.5", "rnn_tanh", ("orthogonal", 0.5)),
    ("tanh RNN, orthogonal x 1", "rnn_tanh", ("orthogonal", 1.0)),
    ("tanh RNN, orthogonal x 2", "rnn_tanh", ("orthogonal", 2.0)),
    ("ReLU RNN, identity (IRNN)", "rnn_relu", ("identity", 1.0)),
    ("ReLU RNN, identity x 1.1", "rnn_relu", ("identity", 1.1)),
    ("LSTM", "lstm", None),
    ("GRU", "gru", None),
    ("JANET", "janet", None),
]


def text_batch(words: list[str], steps: int = T, batch: int = B) -> torch.Tensor:
    """``(steps, batch, 28)`` one-hot windows of the words joined by spaces, taken in order."""
    text = " ".join(words)
    if len(text) < steps * batch:
        raise ValueError(f"need {steps * batch} characters, got {len(text)}")
    ids = torch.tensor([SYMBOLS.index(ch) for ch in text[: steps * batch]]).view(batch, steps).t()
    return torch.nn.functional.one_hot(ids, len(SYMBOLS)).double()


def measure(x: torch.Tensor, hidden: int = H) -> list[tuple[str, list[float]]]:
    rows = []
    for label, name, recurrent in CONFIGS:
        torch.manual_seed(0)
        cell = CELLS[name](x.shape[2], hidden).double()
        if recurrent is not None:
            kind, gain = recurrent
            with torch.no_grad():
                if kind == "identity":
                    cell.weight_hh.copy_(torch.eye(hidden, dtype=torch.float64))
                else:
                    init.orthogonal_(cell.weight_hh)
                cell.weight_hh.mul_(gain)
        rows.append((label, step_gradient_norms(cell, x).tolist()))
    return rows


def render(rows: list[tuple[str, list[float]]], steps: int) -> str:
    back = [0, 10, 25, 50, steps - 1]
    lines = [
        "# Gradients through time: how much of the last step's gradient reaches earlier steps",
        "",
        f"Written by `python benchmarks/gradient_flow.py` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (commit {git_commit(REPO)}), torch "
        f"{torch.__version__}, {cpu_name()}. {B} sequences of {steps} characters of the CMU dictionary's words "
        f"(one-hot), hidden size {H}, untrained cells, float64. Each figure is the mean over the sequences of "
        "`||dL/dh_t||` with `L = <h_T, u>`, `||u|| = 1`: the last step's gradient is 1, and a step k steps "
        "earlier gets what survives k Jacobians (Pascanu, Mikolov & Bengio 2013). Plot: "
        "[gradient_flow.png](gradient_flow.png).",
        "",
        "| cell, recurrent init | " + " | ".join(f"{k} steps back" for k in back) + " |",
        "|---|" + "---:|" * len(back),
    ]
    for label, norms in rows:
        lines.append(f"| {label} | " + " | ".join(f"{norms[steps - 1 - k]:.1e}" for k in back) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="the folder the page goes to")
    args = parser.parse_args(argv)
    words = [w for w, _ in load_g2p()["train"] if all(ch in SYMBOLS for ch in w)]
    x = text_batch(words)
    rows = measure(x)
    args.out.mkdir(parents=True, exist_ok=True)
    steps_back = list(range(T))
    line_plot(args.out / "gradient_flow.png", [(label, steps_back, norms[::-1]) for label, norms in rows],
              xlabel="steps back from the last", ylabel="||dL/dh_t||", log_y=True,
              title=f"Gradient norm through time (H={H}, untrained)")
    page = args.out / "gradient_flow.md"
    atomic_write_bytes(page, render(rows, T).encode())
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
