"""Every registered cell against ``torch.nn.LSTM``, in one run.

Sizes (issue 4), one layer, one direction, float32, input ``(T, B, I)``:

    (T, B, I, H) = (50, 32, 256, 256), (20, 128, 256, 512), (200, 16, 128, 128)

``--quick`` swaps them for two tiny shapes and 3 repeats (a smoke test whose
numbers mean nothing) and writes to ``runs/bench`` instead of ``docs/results``.

What is measured, per shape, in this one process:

- inference: ``model(x)`` under ``torch.no_grad()``;
- training: ``model(x)`` then ``output.backward(g)`` with a fixed random
  ``g``; ``x`` requires grad, as it does inside a stacked model;
- every model is a ``seqlab.nn.Recurrent`` with its default path (on the
  CPU seqlab's compiled kernels for every cell; on CUDA torch's kernel,
  cuDNN, for lstm/gru/rnn_* and seqlab's Triton kernels for the others),
  plus ``torch.nn.LSTM``, ``GRU`` and ``RNN`` themselves as baselines; on
  the CPU lstm, gru and rnn_* also run through torch's kernel
  (``impl="torch"``, rows such as "gru (torch)": the overhead of
  ``Recurrent`` around it, compared with their torch module);
- models are timed round-robin, one call of each per round in a freshly
  shuffled order, so that load changes on a shared machine and the position
  in a round hit all of them alike; the first rounds are warm-up and
  dropped; each time is the median over the rounds;
- ratios divide by ``torch.nn.LSTM`` at the same shape in the same run
  (lower is faster): the median over rounds of the ratio within a round, so
  that a slow stretch of the machine, which lasts over many rounds, cancels
  out (the ratio of the two medians is in the JSON too); lstm/gru/rnn_* are
  also compared with their own torch module (the overhead of going through
  ``Recurrent``), the same way;
- GFLOP/s count the matrix products only: ``2 T B`` times the size of every
  weight matrix per forward pass, three times that for training; the GEMM
  reference is the product ``(T B, I) x (I, 4H)`` timed in the same rounds,
  by ``torch.mm`` and, on the CPU, by the seqlab kernels' own whole-sequence
  product (``kernels.matmul``): the faster of the two sets the reference rate;
- *floor*: the ratio to ``torch.nn.LSTM`` a cell would reach if all of its
  matrix products ran at the GEMM reference rate and nothing else took time
  (its FLOPs / that rate / LSTM's time).  A target below a cell's floor asks
  for more than its arithmetic allows at this precision on this machine.

Usage:
    seqlab bench cells [--device cpu|cuda] [--repeats N] [--quick] [--out DIR] [--page NAME]
    python benchmarks/cells.py [same options]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqlab.checkpoint import atomic_write_bytes
from seqlab.errors import SeqlabError
from seqlab.provenance import cpu_name, git_commit
from seqlab.nn import CELLS, Recurrent, _kernels
from seqlab.nn._kernels import gpu

REPO = Path(__file__).resolve().parents[1]
SHAPES = ((50, 32, 256, 256), (20, 128, 256, 512), (200, 16, 128, 128))
QUICK_SHAPES = ((6, 4, 16, 16), (4, 8, 16, 24))
WARMUP = 3
# Issue 4's targets: time ratios to torch.nn.LSTM (variants), or to the cell's own torch module.
TARGET_TRAIN, TARGET_INFER, TARGET_SRU_TRAIN, TARGET_OVERHEAD = 1.0, 1.5, 1 / 3, 1.05
INTERVAL_LEVEL = 0.95  # of the intervals given with each target check's ratio
# The torch module behind each cell that has one: (name in the tables, constructor).
TORCH_MODULES: dict[str, tuple[str, Callable[[int, int], nn.Module]]] = {
    "lstm": ("torch.nn.LSTM", lambda i, h: nn.LSTM(i, h)),
    "gru": ("torch.nn.GRU", lambda i, h: nn.GRU(i, h)),
    "rnn_tanh": ("torch.nn.RNN(tanh)", lambda i, h: nn.RNN(i, h, nonlinearity="tanh")),
    "rnn_relu": ("torch.nn.RNN(relu)", lambda i, h: nn.RNN(i, h, nonlinearity="relu")),
}
BASELINE = TORCH_MODULES["lstm"][0]
# On the CPU the standard cells run seqlab's kernels by default; these are timed a second time through
# torch's kernel (impl="torch"), for the overhead of Recurrent around it.
TORCH_ALSO = tuple(TORCH_MODULES)
TORCH_SUFFIX = " (torch)"


def _log(message: str) -> None:
    print(f"[bench cells] {message}", file=sys.stderr, flush=True)


def _matmul_flops(model: nn.Module, T: int, B: int) -> int:
    """Multiply-adds x 2 of one forward pass: every weight matrix meets every step of every sequence once."""
    return 2 * T * B * sum(p.numel() for p in model.parameters() if p.dim() == 2)


def _median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def timed_rounds(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = WARMUP,
                 seed: int = 0) -> dict[str, list[float]]:
    """Each function's wall times in seconds over ``rounds`` rounds after ``warmup`` untimed ones: one call
    of each per round, in an order shuffled anew every round (so that load changes hit all alike)."""
    order = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + rounds):
        names = list(fns)
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            fns[name]()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def _paired_ratio(times: list[float], base: list[float]) -> float:
    """Median over rounds of ``times[r] / base[r]``: both timed in the same round, so a load change
    between rounds (minutes-long on a shared machine) cancels out of each ratio."""
    return statistics.median(t / b for t, b in zip(times, base, strict=True))


def _median_interval(values: list[float], level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of ``values``: the k-th smallest and the
    k-th largest value, with the largest k for which fewer than k of n values fall below the median with
    probability at most (1 - level) / 2 (binomial, n and 1/2), so that the interval covers the median
    with probability at least ``level`` (25 values: the 8th and the 18th).  With too few values for that
    (fewer than 6 at 95%): the smallest and the largest."""
    xs, n = sorted(values), len(values)
    if n == 0:
        raise ValueError("no values")
    k, below = 0, 0.0  # below: P(fewer than k + 1 values under the median)
    while k < n // 2:
        below += math.comb(n, k) / 2**n
        if below > (1 - level) / 2:
            break
        k += 1
    k = max(k, 1)
    return xs[k - 1], xs[n - k]


def _paired_interval(times: list[float], base: list[float]) -> tuple[float, float]:
    """:func:`_median_interval` of the within-round ratios whose median :func:`_paired_ratio` is."""
    return _median_interval([t / b for t, b in zip(times, base, strict=True)])


def _bench_shape(shape: tuple[int, int, int, int], device: torch.device, repeats: int, warmup: int) -> dict[str, Any]:
    T, B, I, H = shape
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {label: make(I, H) for label, make in TORCH_MODULES.values()}
    for name in CELLS:
        models[name] = Recurrent(name, I, H)
    for name in TORCH_ALSO:  # torch's kernel for a cell whose CPU default is seqlab's (impl="torch")
        if models[name].backend != "torch":
            models[name + TORCH_SUFFIX] = Recurrent(name, I, H, impl="torch")
    for model in models.values():
        model.to(device)
    x = torch.randn(T, B, I, device=device, requires_grad=True)
    grad = torch.randn(T, B, H, device=device)
    a, w = torch.randn(T * B, I, device=device), torch.randn(I, 4 * H, device=device)
    kernels = _kernels.load() if device.type == "cpu" else None
    products: dict[str, Callable[[], Any]] = {"torch.mm": lambda: torch.mm(a, w)}
    if kernels is not None:
        products["seqlab"] = lambda: kernels.matmul(a, w)

    def infer(model: nn.Module) -> None:
        with torch.no_grad():
            model(x)

    def train(model: nn.Module) -> None:
        output, _ = model(x)
        output.backward(grad)

    def timed(fn: Callable[[], None]) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    times: dict[str, dict[str, list[float]]] = {name: {"infer": [], "train": []} for name in models}
    gemm: dict[str, list[float]] = {name: [] for name in products}
    order = random.Random(0)
    for round_ in range(warmup + repeats):
        keep = round_ >= warmup
        for name, product in products.items():
            t = timed(product)
            if keep:
                gemm[name].append(t)
        names = list(models)
        order.shuffle(names)
        for name in names:
            t = timed(lambda: infer(models[name]))
            if keep:
                times[name]["infer"].append(t)
        order.shuffle(names)
        for name in names:
            models[name].zero_grad(set_to_none=True)
            x.grad = None
            t = timed(lambda: train(models[name]))
            if keep:
                times[name]["train"].append(t)

    product_ms = {name: _median_ms(times_) for name, times_ in gemm.items()}
    gemm_by = min(product_ms, key=product_ms.get)
    gemm_ms = product_ms[gemm_by]
    gemm_gflops = 2 * T * B * I * 4 * H / (gemm_ms * 1e6)
    base_ms = {k: _median_ms(v) for k, v in times[BASELINE].items()}
    base_flops = _matmul_flops(models[BASELINE], T, B)
    rows = []
    for name, model in models.items():
        infer_ms, train_ms = _median_ms(times[name]["infer"]), _median_ms(times[name]["train"])
        flops = _matmul_flops(model, T, B)
        row = {
            "model": name,
            "path": model.backend if isinstance(model, Recurrent) else "torch",
            "infer_ms": infer_ms,
            "train_ms": train_ms,
            "infer_ratio": _paired_ratio(times[name]["infer"], times[BASELINE]["infer"]),
            "train_ratio": _paired_ratio(times[name]["train"], times[BASELINE]["train"]),
            "infer_interval": _paired_interval(times[name]["infer"], times[BASELINE]["infer"]),
            "train_interval": _paired_interval(times[name]["train"], times[BASELINE]["train"]),
            # The plain ratio of the two medians, for comparison with the paired estimate.
            "infer_ratio_of_medians": infer_ms / base_ms["infer"],
            "train_ratio_of_medians": train_ms / base_ms["train"],
            "infer_gflops": flops / (infer_ms * 1e6),
            "train_gflops": 3 * flops / (train_ms * 1e6),
            "flops_ratio": flops / base_flops,
            # All matrix products at the GEMM reference rate, nothing else: the lowest reachable ratio.
            "infer_floor": flops / (gemm_gflops * 1e6) / base_ms["infer"],
            "train_floor": 3 * flops / (gemm_gflops * 1e6) / base_ms["train"],
        }
        cell = name.removesuffix(TORCH_SUFFIX)
        if cell in TORCH_MODULES:  # seqlab's layer against its own torch module
            own = times[TORCH_MODULES[cell][0]]
            row["infer_overhead"] = _paired_ratio(times[name]["infer"], own["infer"])
            row["train_overhead"] = _paired_ratio(times[name]["train"], own["train"])
            row["infer_overhead_interval"] = _paired_interval(times[name]["infer"], own["infer"])
            row["train_overhead_interval"] = _paired_interval(times[name]["train"], own["train"])
        row["targets"] = _targets(name, row)
        rows.append(row)
    return {"T": T, "B": B, "I": I, "H": H, "gemm_ms": gemm_ms, "gemm_gflops": gemm_gflops, "gemm_by": gemm_by,
            "gemm_products_ms": product_ms, "rows": rows}


def _targets(name: str, row: dict[str, Any]) -> dict[str, dict[str, float | bool]]:
    """Issue 4's targets that apply to this row: {target: {"value", "interval", "limit", "met"(, "floor")}}."""
    checks: dict[str, tuple[float, tuple[float, float], float, float | None]] = {}  # value, interval, limit, floor
    if name in CELLS and CELLS[name].native is None:
        train = (row["train_ratio"], row["train_interval"])
        checks["training vs LSTM"] = (*train, TARGET_TRAIN, row["train_floor"])
        checks["inference vs LSTM"] = (row["infer_ratio"], row["infer_interval"], TARGET_INFER, row["infer_floor"])
        if name == "sru":
            checks["SRU training vs LSTM"] = (*train, TARGET_SRU_TRAIN, row["train_floor"])
    elif name.removesuffix(TORCH_SUFFIX) in ("lstm", "gru"):
        checks["training vs own torch module"] = (row["train_overhead"], row["train_overhead_interval"],
                                                  TARGET_OVERHEAD, None)
        checks["inference vs own torch module"] = (row["infer_overhead"], row["infer_overhead_interval"],
                                                   TARGET_OVERHEAD, None)
    return {k: {"value": v, "interval": interval, "limit": limit, "met": v <= limit}
            | ({"floor": floor} if floor is not None else {})
            for k, (v, interval, limit, floor) in checks.items()}


# ------------------------------------------------------------------ report


def _check_note(check: dict[str, Any]) -> str:
    """`` (95% interval 1.490-1.604x; floor 1.37x, above the target)``: the interval of a check's ratio, and
    its floor where it has one."""
    lo, hi = check["interval"]
    note = f" ({100 * INTERVAL_LEVEL:.0f}% interval {lo:.3f}-{hi:.3f}x"
    if "floor" in check:
        note += f"; floor {check['floor']:.2f}x" + (", above the target" if check["floor"] > check["limit"] else "")
    return note + ")"


def _gemm_sources(s: dict[str, Any]) -> str:
    """`` (seqlab; torch.mm: 4.944 ms)``: the faster product, then the others' times, when more than one
    product was timed; else ``""``."""
    products = s.get("gemm_products_ms") or {}
    if len(products) < 2:
        return ""
    others = "; ".join(f"{name}: {ms:.3f} ms" for name, ms in products.items() if name != s["gemm_by"])
    return f" ({s['gemm_by']}; {others})"


def _render(r: dict[str, Any]) -> str:
    device = r["device"]
    if device == "cuda":
        machine = (f"{r['gpu']}, Triton {r['triton']}, CUDA graphs {'on' if r['cuda_graphs'] else 'off'}; "
                   f"cuDNN may use TF32 (`torch.backends.cudnn.allow_tf32={r['cudnn_tf32']}`), the Triton "
                   "kernels multiply in full float32")
    else:
        machine = f"{r['cpu']}, {r['threads']} torch thread(s)" + (
            f", per-step GEMM of the seqlab kernels: `{r['step_gemm']}`" if r.get("step_gemm") else "")
    lines = [
        f"# Recurrent cells on the {'GPU' if device == 'cuda' else device.upper()}: seqlab against torch.nn.LSTM",
        "",
        f"Written by `{r['command']}` on {r['date']} (commit {r['commit'] or 'unknown'}), torch {r['torch']}, "
        f"{machine}. One layer, one direction, float32. Each time is the median "
        f"of {r['repeats']} rounds after {r['warmup']} warm-up rounds; in a round every model runs once, so all "
        "of them see the same machine load. Ratios divide by `torch.nn.LSTM` at the same shape in this run "
        "(lower is faster); each is the median over rounds of the ratio within a round, so that the machine's "
        "slow stretches cancel out (the JSON also has the ratio of the medians). *path*: `torch` is torch's own "
        "kernel (cuDNN on CUDA), `seqlab` the compiled CPU kernels of `seqlab.nn._kernels`, `triton` its Triton "
        "kernels (`seqlab.nn._kernels.gpu`), `reference` the Python step loop. GFLOP/s count matrix products only "
        "(training: 3x the forward count). *FLOPs vs LSTM*: the cell's matrix-product FLOPs over "
        "torch.nn.LSTM's. *floor*: the ratio to torch.nn.LSTM the cell would reach if all of its matrix products "
        "ran at this shape's GEMM reference rate (the faster of `torch.mm` and, on the CPU, the seqlab kernels' "
        "own whole-sequence product, on the same matrices in the same rounds) and nothing else took time; a "
        "target below the floor is out of reach in float32 on this machine.",
        "",
        f"Targets (issue 4): every variant trains in <= {TARGET_TRAIN:.2f}x and infers in <= {TARGET_INFER:.2f}x "
        f"the time of torch.nn.LSTM; SRU trains in <= {TARGET_SRU_TRAIN:.2f}x (3x faster); lstm and gru through "
        f"`Recurrent` take <= {TARGET_OVERHEAD:.2f}x the time of their own torch module.",
        "",
    ]
    checks = [(s, row, name, c) for s in r["shapes"] for row in s["rows"] for name, c in row["targets"].items()]

    def described(s: dict[str, Any], row: dict[str, Any], name: str, c: dict[str, Any]) -> str:
        sign = "<=" if c["met"] else ">"
        # Three decimals: at two, SRU's 0.335x against its 1/3 read "0.33x > 0.33x".
        return (f"- {row['model']} at T={s['T']}, B={s['B']}, I={s['I']}, H={s['H']}: {name} {c['value']:.3f}x "
                f"{sign} {c['limit']:.3f}x" + _check_note(c))

    missed = [described(*check) for check in checks if not check[3]["met"]]
    close = [described(*check) for check in checks
             if check[3]["met"] and check[3]["interval"][1] > check[3]["limit"]]
    met = len(checks) - len(missed)
    lines.append(f"**{met} of {len(checks)} target checks met.**" + (" Missed:" if missed else ""))
    lines += missed
    if close:
        lines += ["", "Met, with the interval reaching past the limit (another run may miss them):"] + close
    lines += ["", f"Each check's ratio comes with a {100 * INTERVAL_LEVEL:.0f}% confidence interval for its median "
              "over rounds (distribution-free: order statistics of the within-round ratios); where the interval "
              "holds the limit, this run cannot tell whether the target is met."]
    for s in r["shapes"]:
        lines += [
            "",
            f"## T={s['T']}, B={s['B']}, I={s['I']}, H={s['H']}",
            "",
            f"GEMM reference: ({s['T'] * s['B']} x {s['I']}) . ({s['I']} x {4 * s['H']}) in {s['gemm_ms']:.3f} ms, "
            f"{s['gemm_gflops']:.0f} GFLOP/s" + _gemm_sources(s) + ".",
            "",
            "| model | path | inference ms | vs LSTM | training ms | vs LSTM | training GFLOP/s | of GEMM | "
            "FLOPs vs LSTM | floor (inf / train) | vs own torch module (inf / train) | targets |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in s["rows"]:
            overhead = (f"{row['infer_overhead']:.2f}x / {row['train_overhead']:.2f}x" if "train_overhead" in row
                        else "")
            checks = row["targets"].values()
            verdict = ("met" if all(c["met"] for c in checks) else "**missed**") if checks else ""
            lines.append(
                f"| {row['model']} | {row['path']} | {row['infer_ms']:.2f} | {row['infer_ratio']:.2f}x | "
                f"{row['train_ms']:.2f} | {row['train_ratio']:.2f}x | {row['train_gflops']:.0f} | "
                f"{100 * row['train_gflops'] / s['gemm_gflops']:.0f}% | {row['flops_ratio']:.2f}x | "
                f"{row['infer_floor']:.2f}x / {row['train_floor']:.2f}x | {overhead} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def _step_gemm() -> str | None:
    """The per-step float GEMM the compiled kernels use here (``panel``, ``mkl``, ``blas``), or None."""
    kernels = _kernels.load()
    return kernels.step_gemm() if kernels is not None else None


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def run(args: argparse.Namespace) -> list[Path]:
    """Measure every shape, write ``cells_cpu.md`` or ``cells_gpu.md`` and its ``.json``; return their paths."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqlabError("--device cuda asked for, but torch sees no CUDA device", hint="use --device cpu")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = args.repeats or (3 if args.quick else 25)
    warmup = 1 if args.quick else WARMUP
    out = Path(args.out or ("runs/bench" if args.quick else REPO / "docs" / "results"))
    results = []
    for shape in shapes:
        _log(f"T={shape[0]}, B={shape[1]}, I={shape[2]}, H={shape[3]}: {warmup} + {repeats} rounds")
        results.append(_bench_shape(shape, device, repeats, warmup))
    record = {
        "device": device.type,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(REPO),
        "command": "seqlab bench cells" + (f" --device {device.type}" if device.type != "cpu" else "")
        + (" --quick" if args.quick else "") + (f" --repeats {args.repeats}" if args.repeats else "")
        + (f" --page {args.page}" if args.page else ""),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "step_gemm": _step_gemm() if device.type == "cpu" else None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "triton": _triton_version() if device.type == "cuda" else None,
        "cuda_graphs": gpu.graphs_enabled() if device.type == "cuda" else None,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
        "repeats": repeats,
        "warmup": warmup,
        "quick": bool(args.quick),
        "shapes": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = args.page or ("cells_gpu" if device.type == "cuda" else "cells_cpu")  # the names issue 4 gives
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    atomic_write_bytes(js, (json.dumps(record, indent=2) + "\n").encode())
    atomic_write_bytes(md, _render(record).encode())
    return [md, js]


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _page_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text) or text.endswith((".md", ".json")):
        raise argparse.ArgumentTypeError(f"expected a file name without folder or extension, e.g. cells_cpu_amd, got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python benchmarks/cells.py`` and of ``seqlab bench cells``."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to run (default: cpu); cuda times seqlab's Triton kernels against cuDNN and "
                             "needs a CUDA build of torch with Triton (SEQLAB_CUDA_GRAPHS=0: without CUDA graphs)")
    parser.add_argument("--repeats", type=_positive_int, help="timed rounds per shape (default: 25, quick: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="two tiny shapes, 3 rounds, written to runs/bench: a smoke test, not a measurement")
    parser.add_argument("--out", help="output folder (default: docs/results; with --quick: runs/bench)")
    parser.add_argument("--page", type=_page_name,
                        help="name of the page and its JSON, without .md/.json (default: cells_cpu, or cells_gpu "
                             "with --device cuda); one per machine kind, e.g. cells_cpu_amd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        for path in run(args):
            print(f"wrote {path}")
    except SeqlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
