"""The per-step GEMMs of seqlab's CPU kernels, each kind this build has, against each other.

The compiled recurrences multiply a thread's few batch rows by the recurrent
weights at every step (``StepGemm`` in ``recurrence.cpp``); which code does
that is a run-time switch, ``seqlab.nn._kernels.load().step_gemm(kind)``:
``panel`` (seqlab's AVX2 micro-kernel), ``panel512`` (its AVX-512 form),
``mkl`` (MKL's packed GEMM), ``auto`` (panel512 below one core's L2, else
mkl) and ``blas`` (a BLAS call per step), as far as this build has them.
Under the two panel kinds the whole-sequence products (input projection, dx,
weight gradients) run on the same micro-kernel; under the others on MKL.

For every cell with a compiled kernel at the three shapes of issue 4, one
layer, float32, inference and training (forward + backward), this times the
same ``seqlab.nn.Recurrent`` under every kind: in each round every kind runs
once in a shuffled order, and a kind's figure is the median over rounds of
its time over the reference kind's time in the same round (lower is
faster).  It is what the default kind (``default`` in the table) was chosen
by; the machine matters, so the page names it.

Usage:
    python benchmarks/step_gemm.py [--repeats N] [--out DIR] [--page NAME]   (writes DIR/NAME, default step_gemm_cpu.md)
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.nn import CELLS, Recurrent, _kernels
from seqlab.provenance import cpu_name, git_commit

REPO = Path(__file__).resolve().parents[1]
SHAPES = ((50, 32, 256, 256), (20, 128, 256, 512), (200, 16, 128, 128))
KINDS = ("mkl", "panel", "panel512", "auto", "blas")
WARMUP = 3
PAGE = "step_gemm_cpu.md"


def _kinds(kernels) -> list[str]:
    """The kinds this build has; switching through them leaves the last one set (the caller restores)."""
    have = []
    for kind in KINDS:
        try:
            kernels.step_gemm(kind)
        except RuntimeError:
            continue
        have.append(kind)
    return have


def _measure(kernels, kinds: list[str], cell: str, shape: tuple[int, ...], train: bool, repeats: int) -> dict:
    T, B, I, H = shape
    torch.manual_seed(0)
    model = Recurrent(cell, I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    grad = torch.randn(T, B, H)

    def call() -> None:
        with torch.set_grad_enabled(train):
            output, _ = model(x)
        if train:
            output.backward(grad)

    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for r in range(WARMUP + repeats):
        order = list(kinds)
        random.shuffle(order)
        for kind in order:
            kernels.step_gemm(kind)
            start = time.perf_counter()
            call()
            if r >= WARMUP:
                times[kind].append(time.perf_counter() - start)
    ref = times[kinds[0]]
    return {kind: {"ms": 1000 * statistics.median(ts), "ratio": statistics.median(t / b for t, b in zip(ts, ref))}
            for kind, ts in times.items()}


def run(repeats: int, out: Path, page: str = PAGE) -> Path:
    kernels = _kernels.load()
    if kernels is None:
        raise SystemExit("error: seqlab's compiled kernels are not available here (see the notice above)")
    default = kernels.step_gemm()
    try:
        kinds = _kinds(kernels)
        cells = [name for name in CELLS if Recurrent(name, 4, 4).backend == "seqlab"]
        rows = []
        for shape in SHAPES:
            for cell in cells:
                for train in (False, True):
                    print(f"[step_gemm] {shape} {cell} {'training' if train else 'inference'}", file=sys.stderr,
                          flush=True)
                    rows.append((shape, cell, train, _measure(kernels, kinds, cell, shape, train, repeats)))
    finally:
        kernels.step_gemm(default)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Per-step GEMM kinds of seqlab's CPU kernels",
        "",
        f"Written by `python benchmarks/step_gemm.py --repeats {repeats}"
        + (f" --page {page}" if page != PAGE else "") + f"` on {date} (commit {git_commit(REPO)}), "
        f"torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} torch thread(s); default kind here: "
        f"`{default}`. Each figure is the median over {repeats} rounds (after {WARMUP} warm-up rounds) of a "
        f"kind's time over `{kinds[0]}`'s in the same round, for one layer of `seqlab.nn.Recurrent` in float32 "
        "(lower is faster); the first column is that reference time.",
        "",
        "| T, B, I, H | cell | pass | " + f"{kinds[0]} ms | " + " | ".join(kinds[1:]) + " |",
        "|---|---|---|" + "---:|" * len(kinds),
    ]
    for shape, cell, train, result in rows:
        figures = [f"{result[kinds[0]]['ms']:.2f}"] + [f"{result[k]['ratio']:.3f}" for k in kinds[1:]]
        lines.append(f"| {', '.join(map(str, shape))} | {cell} | {'training' if train else 'inference'} | "
                     + " | ".join(figures) + " |")
    out.mkdir(parents=True, exist_ok=True)
    path = out / page
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per cell, shape and pass (default 15)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="output folder")
    parser.add_argument("--page", default=PAGE,
                        help=f"file name of the page in the output folder (default {PAGE}; one per machine kind)")
    args = parser.parse_args(argv)
    print(f"wrote {run(args.repeats, args.out, args.page)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
