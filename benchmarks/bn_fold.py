"""Inference time of a small CNN with its BatchNorms folded into the convolutions and linear layers.

Sizes: a VGG-style stack on 32x32 RGB inputs, batch 64, float32, the CPU's
torch threads: three blocks of (3x3 conv, BatchNorm, ReLU) x 2 + max-pool
with 32, 64 and 128 channels, then Linear(2048, 256), BatchNorm1d, ReLU,
Linear(256, 10): 7 BatchNorms, all foldable.  Random weights with running
statistics from a few training-mode passes.  Both models run once per
round in a shuffled order; the speed-up is the median over rounds of the
within-round ratio, with its 95% interval (as in ``seqlab bench cells``), and
the outputs' largest difference is reported beside it.

Writes ``docs/results/bn_fold.md``.

Usage:
    python benchmarks/bn_fold.py [--repeats N] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
from torch import nn

from seqlab.checkpoint import atomic_write_bytes
from seqlab.compress.fold import fold_batchnorm
from seqlab.provenance import cpu_name, git_commit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells import REPO, _median_interval, _median_ms, _paired_ratio, _positive_int, timed_rounds  # noqa: E402

BATCH, SIZE = 64, 32


def make_cnn(widths: tuple[int, ...] = (32, 64, 128), size: int = SIZE) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    side = size // 2 ** len(widths)
    layers += [nn.Flatten(), nn.Linear(channels * side * side, 256), nn.BatchNorm1d(256), nn.ReLU(),
               nn.Linear(256, 10)]
    return nn.Sequential(*layers)


def measure(repeats: int, batch: int = BATCH, widths: tuple[int, ...] = (32, 64, 128), size: int = SIZE) -> dict:
    torch.manual_seed(0)
    model = make_cnn(widths, size)
    x = torch.randn(batch, 3, size, size)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    model.eval()
    folded, pairs = fold_batchnorm(model)
    with torch.no_grad():
        difference = float((folded(x) - model(x)).abs().max())

        def run(m: nn.Module):
            return lambda: m(x)

        times = timed_rounds({"original": run(model), "folded": run(folded)}, repeats)
    ratios = [f / o for f, o in zip(times["folded"], times["original"], strict=True)]
    return {"pairs": pairs, "difference": difference, "original_ms": _median_ms(times["original"]),
            "folded_ms": _median_ms(times["folded"]), "ratio": _paired_ratio(times["folded"], times["original"]),
            "interval": _median_interval(ratios), "repeats": repeats, "batch": batch}


def render(result: dict) -> str:
    lo, hi = result["interval"]
    return "\n".join([
        "# BatchNorm folded into the layers before it: inference time",
        "",
        f"Written by `python benchmarks/bn_fold.py` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
        f"UTC (commit {git_commit(REPO)}), torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} torch "
        f"thread(s). A VGG-style CNN (6 convolutions with 32-128 channels, 2 linear layers) on a batch of "
        f"{result['batch']} 32x32 inputs, float32, evaluation mode; `seqlab.compress.fold.fold_batchnorm` folded "
        f"{result['pairs']} BatchNorms. Median of {result['repeats']} rounds; the ratio is the median of the "
        "within-round ratios, with its 95% interval.",
        "",
        "| model | ms per batch | time vs original | largest output difference |",
        "|---|---:|---:|---:|",
        f"| original | {result['original_ms']:.2f} | 1.00x | |",
        f"| folded | {result['folded_ms']:.2f} | {result['ratio']:.3f}x ({lo:.3f}-{hi:.3f}) | "
        f"{result['difference']:.1e} |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=_positive_int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="the folder the page goes to")
    args = parser.parse_args(argv)
    result = measure(args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    page = args.out / "bn_fold.md"
    atomic_write_bytes(page, render(result).encode())
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
