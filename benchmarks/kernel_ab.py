"""Two builds of seqlab's CPU kernels against each other, paired in one process.

For work on ``recurrence.cpp``.  On a shared machine the same step can take
a third longer from one minute to the next, so two runs of the cells
benchmark cannot tell a 3% change from noise; two builds loaded into one
process and timed in the same rounds can.  This builds the kernel source of
two git revisions or files (default: ``HEAD``'s against the working tree's)
as extensions of their own, with the flags seqlab builds its kernels with,
and times chosen cells through both (``seqlab.nn._kernels.run_cell``) and
``torch.nn.LSTM`` of the same size: in each round the three run once in a
shuffled order, and each figure is the median over rounds of the ratio
within a round (``B/A`` below 1: B is faster), B/A with a 95% interval for
that median (``benchmarks/cells.py``'s; an interval that holds 1 means the
rounds cannot tell the builds apart).  ``--check`` first compares
the two builds' outputs and gradients (largest difference relative to the
largest value).

It prints its table and writes nothing: it is a tool for deciding what to
keep, not a results page (``seqlab bench cells`` writes those).

Usage:
    python benchmarks/kernel_ab.py [--a REV|FILE] [--b REV|FILE] [--cells sru,ln_lstm]
        [--shapes 50x32x256x256,200x16x128x128] [--pass train|infer|both] [--rounds N] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

from seqlab.errors import SeqlabError
from seqlab.nn import CELLS, Recurrent, _kernels
from seqlab.nn._kernels import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells import REPO, SHAPES, _paired_interval, _paired_ratio, timed_rounds  # noqa: E402  (benchmarks/cells.py)

SOURCE = "src/seqlab/nn/_kernels/recurrence.cpp"


def source_text(spec: str, repo: Path = REPO) -> str:
    """The kernel source of ``spec``: a file that exists, else a git revision of ``repo``."""
    path = Path(spec)
    if path.is_file():
        return path.read_text()
    run = subprocess.run(["git", "show", f"{spec}:{SOURCE}"], cwd=repo, capture_output=True, text=True)
    if run.returncode != 0:
        raise SeqlabError(f"{spec!r} is neither a file nor a git revision with {SOURCE}",
                          hint="give a path to a recurrence.cpp or a revision such as HEAD or HEAD~2")
    return run.stdout


def build_source(text: str) -> ModuleType:
    """``text`` compiled as an extension named by its hash, in the kernel cache (a second call loads it)."""
    name = "seqlab_ab_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = build.cache_dir() / "ab" / name
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "recurrence.cpp"
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    print(f"[kernel ab] building or loading {name} in {folder}", file=sys.stderr, flush=True)
    return build.compile_extension(name, source, folder)


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """``"50x32x256x256,..."`` -> ``[(T, B, I, H), ...]``."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().split("x")
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"a shape is TxBxIxH with positive integers, got {item!r}")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def _step(kernels: ModuleType, layer: Recurrent, x: torch.Tensor, grad: torch.Tensor | None) -> list[torch.Tensor]:
    """One layer's forward (and backward with ``grad``) through ``kernels``: its output, then the gradients."""
    cell = layer.cells[0]
    T, B = x.shape[:2]
    state = tuple(torch.zeros(B, layer.hidden_size) for _ in range(cell.state_size))
    lengths = torch.full((B,), T, dtype=torch.long)
    if grad is None:
        with torch.no_grad():
            return [_kernels.run_cell(kernels, cell, x, state, lengths, False)[0]]
    layer.zero_grad(set_to_none=True)
    x.grad = None
    output, _ = _kernels.run_cell(kernels, cell, x, state, lengths, False)
    output.backward(grad)
    return [output.detach(), x.grad, *(p.grad for p in cell.parameters())]


def largest_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """The largest |a - b| over every pair of tensors, relative to the largest |b| of its pair."""
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)) for x, y in zip(a, b, strict=True))


def compare(a: ModuleType, b: ModuleType, cells: list[str], shapes: list[tuple[int, int, int, int]],
            passes: list[str], rounds: int, check: bool) -> list[dict]:
    """One row per cell, shape and pass: B/A, A and B over torch.nn.LSTM, A's median ms (and the check)."""
    rows = []
    for T, B, I, H in shapes:
        for name in cells:
            torch.manual_seed(0)
            layer = Recurrent(name, I, H)
            lstm = torch.nn.LSTM(I, H)
            x = torch.randn(T, B, I, requires_grad=True)
            grad = torch.randn(T, B, H)
            for pass_ in passes:
                g = grad if pass_ == "train" else None
                row = {"cell": name, "shape": (T, B, I, H), "pass": pass_}
                if check:
                    row["difference"] = largest_difference(_step(b, layer, x, g), _step(a, layer, x, g))

                def torch_lstm() -> None:
                    if g is None:
                        with torch.no_grad():
                            lstm(x)
                        return
                    lstm.zero_grad(set_to_none=True)
                    x.grad = None
                    lstm(x)[0].backward(g)

                times = timed_rounds({"A": lambda: _step(a, layer, x, g), "B": lambda: _step(b, layer, x, g),
                                      "LSTM": torch_lstm}, rounds)
                row |= {"b_over_a": _paired_ratio(times["B"], times["A"]),
                        "b_over_a_interval": _paired_interval(times["B"], times["A"]),
                        "a_over_lstm": _paired_ratio(times["A"], times["LSTM"]),
                        "b_over_lstm": _paired_ratio(times["B"], times["LSTM"]),
                        "a_ms": 1000 * statistics.median(times["A"])}
                rows.append(row)
                print(_format(row), flush=True)
    return rows


def _format(row: dict) -> str:
    shape = "x".join(map(str, row["shape"]))
    check = f"  difference {row['difference']:.1e}" if "difference" in row else ""
    lo, hi = row["b_over_a_interval"]
    return (f"{row['cell']:12s} {shape:>16s} {row['pass']:5s}  B/A {row['b_over_a']:.3f} ({lo:.3f}-{hi:.3f})  "
            f"A/LSTM {row['a_over_lstm']:.3f}  B/LSTM {row['b_over_lstm']:.3f}  A {row['a_ms']:.2f} ms{check}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="HEAD", help="the base: a git revision or a recurrence.cpp (default HEAD)")
    parser.add_argument("--b", default=str(REPO / SOURCE), help="the candidate: a git revision or a "
                                                                 "recurrence.cpp (default: the working tree's)")
    parser.add_argument("--cells", default=None,
                        help="comma-separated cells with a seqlab kernel (default: every one)")
    parser.add_argument("--shapes", type=parse_shapes, default=list(SHAPES),
                        help="comma-separated TxBxIxH (default: issue 4's, as in seqlab bench cells)")
    parser.add_argument("--pass", dest="passes", choices=("train", "infer", "both"), default="both",
                        help="training (forward + backward), inference, or both (default)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--check", action="store_true", help="compare outputs and gradients of the two builds first")
    args = parser.parse_args(argv)
    fused = [name for name, cls in CELLS.items() if _kernels.supports(cls)]
    cells = fused if args.cells is None else [c.strip() for c in args.cells.split(",")]
    unknown = [c for c in cells if c not in fused]
    if unknown:
        parser.error(f"no seqlab kernel for {', '.join(unknown)}; cells with one: {', '.join(fused)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        a = build_source(source_text(args.a))
        b = build_source(source_text(args.b))
    except SeqlabError as err:
        print(f"error: {err}" + (f" ({err.hint})" if err.hint else ""), file=sys.stderr)
        return 2
    passes = ["train", "infer"] if args.passes == "both" else [args.passes]
    print(f"A = {args.a}, B = {args.b}; {torch.get_num_threads()} torch thread(s), {args.rounds} rounds")
    compare(a, b, cells, args.shapes, passes, args.rounds, args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
