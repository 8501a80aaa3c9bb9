"""Where an SRU training step spends its time, against the GEMMs it cannot avoid.

Issue 4 asks SRU to train 3x faster than ``torch.nn.LSTM``; at two of its
three shapes ``seqlab bench cells`` measures it short of that, above its
*floor* (the ratio its matrix products alone would reach).  This splits one
layer of SRU training (float32, the issue's shapes, the compiled CPU kernel)
into the pieces that can be timed apart and sets each next to the GEMM that
does the same arithmetic as one ``torch.mm`` over the whole sequence:

- ``forward``: the kernel's training forward (its input projection runs step
  by step inside the time loop) against ``x W^T``;
- ``backward without dx``: the pointwise backward loop and ``dW = dxp^T x``
  against that GEMM alone;
- ``dx``: what computing ``dx = dxp W`` in the loop adds, against ``dxp W``;
- ``Recurrent``: the whole step through ``seqlab.nn.Recurrent`` and autograd,
  against the kernel calls alone (the gradients start from None at every
  step, as in the cells benchmark);
- against ``torch.nn.LSTM`` of the same size, trained the same way in the
  same rounds: the whole SRU step (the ratio the cells benchmark checks
  against 1/3) and its three GEMMs alone, each one ``torch.mm``: the time
  the step would take if its GEMMs ran at ``torch.mm``'s rate and nothing
  else took any (the kernel's in-loop GEMMs run within about 10% of that
  rate, faster or slower).

Every piece runs once per round in a shuffled order; times are medians over
the rounds after warm-up, and each "over its GEMM" figure is the median of
the within-round ratio.  Writes ``docs/results/sru_breakdown.md`` (``--page
NAME``: NAME.md, one page per machine kind, as ``seqlab bench cells`` does).

Usage:
    python benchmarks/sru_breakdown.py [--repeats N] [--out DIR] [--page NAME]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.nn import Recurrent, _kernels
from seqlab.nn._kernels.functions import _SPECS
from seqlab.provenance import cpu_name, git_commit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells import (  # noqa: E402  (benchmarks/cells.py)
    REPO, SHAPES, WARMUP, _median_ms, _page_name, _paired_ratio, _positive_int, timed_rounds,
)


def _shape_rows(kernels, shape: tuple[int, int, int, int], repeats: int) -> list[tuple[str, float, float, float]]:
    T, B, I, H = shape
    torch.manual_seed(0)
    model = Recurrent("sru", I, H)
    cell = model.cells[0]
    kind, proj, params, options = _SPECS[type(cell)](cell)
    proj, params = [p.detach() for p in proj], [p.detach() for p in params]
    x = torch.randn(T, B, I)
    x_grad = x.clone().requires_grad_(True)
    grad = torch.randn(T, B, H)
    state = [torch.zeros(B, H), torch.zeros(B, H)]
    lengths = torch.full((B,), T, dtype=torch.long)
    W = proj[0]
    dxp = torch.randn(T * B, W.shape[0])
    x2 = x.view(T * B, I)

    def forward() -> list[torch.Tensor]:
        return kernels.forward(kind, x, proj, state, params, lengths, False, options, True)

    def backward(saved: list[torch.Tensor], need_dx: bool) -> None:
        zeros = [torch.zeros(B, H), torch.zeros(B, H)]
        kernels.backward(kind, grad, zeros, saved, x, proj, params, lengths, False, options, need_dx)

    lstm = torch.nn.LSTM(I, H)

    def train_step(layer: torch.nn.Module) -> None:
        layer.zero_grad(set_to_none=True)
        x_grad.grad = None
        output, _ = layer(x_grad)
        output.backward(grad)

    saved = forward()[3:]
    pieces: dict[str, Callable[[], object]] = {
        "forward": forward,
        "gemm x W^T": lambda: torch.mm(x2, W.t()),
        "backward without dx": lambda: backward(saved, False),
        "backward": lambda: backward(saved, True),
        "gemm dxp^T x": lambda: torch.mm(dxp.t(), x2),
        "gemm dxp W": lambda: torch.mm(dxp, W),
        "kernel step": lambda: backward(forward()[3:], True),
        "Recurrent step": lambda: train_step(model),
        "torch.nn.LSTM step": lambda: train_step(lstm),
    }
    times = timed_rounds(pieces, repeats)

    def ms(name: str) -> float:
        return _median_ms(times[name])

    def over(name: str, reference: str) -> float:
        return _paired_ratio(times[name], times[reference])

    times["dx in the loop"] = [b - n for b, n in zip(times["backward"], times["backward without dx"], strict=True)]
    times["three GEMMs"] = [sum(ts) for ts in zip(times["gemm x W^T"], times["gemm dxp^T x"], times["gemm dxp W"],
                                                  strict=True)]
    return [
        ("forward (projection in the loop)", ms("forward"), ms("gemm x W^T"), over("forward", "gemm x W^T")),
        ("backward without dx (loop + dW)", ms("backward without dx"), ms("gemm dxp^T x"),
         over("backward without dx", "gemm dxp^T x")),
        ("dx in the loop", ms("dx in the loop"), ms("gemm dxp W"), over("dx in the loop", "gemm dxp W")),
        ("Recurrent + autograd", ms("Recurrent step"), ms("kernel step"), over("Recurrent step", "kernel step")),
        ("SRU step vs torch.nn.LSTM", ms("Recurrent step"), ms("torch.nn.LSTM step"),
         over("Recurrent step", "torch.nn.LSTM step")),
        ("its three GEMMs vs torch.nn.LSTM", ms("three GEMMs"), ms("torch.nn.LSTM step"),
         over("three GEMMs", "torch.nn.LSTM step")),
    ]


def _render(rows: dict[str, list[tuple[str, float, float, float]]], repeats: int, page: str = "sru_breakdown") -> str:
    command = "python benchmarks/sru_breakdown.py" + ("" if page == "sru_breakdown" else f" --page {page}")
    lines = [
        "# SRU training on the CPU: each piece against its GEMM",
        "",
        f"Written by `{command}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (commit {git_commit(REPO)}), "
        f"torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} torch thread(s). One layer, float32, "
        f"median of {repeats} rounds after {WARMUP} warm-up rounds. *reference*: the one `torch.mm` that does the "
        "same arithmetic over the whole sequence (for the last row: the kernel's forward and backward called "
        "directly, without `Recurrent` and autograd; for the last two: a `torch.nn.LSTM` of the same size trained "
        "the same way in the same rounds, against the whole SRU step and against the sum of its three GEMMs: "
        "what the step would take if its GEMMs ran at `torch.mm`'s rate and nothing else took any time; the "
        "issue asks for 0.33x). "
        "*over reference*: the median within-round ratio; for the pieces, what lies above 1.00x is the time the "
        "piece spends besides its GEMM.",
        "",
    ]
    for shape, shape_rows in rows.items():
        lines += [f"## {shape}", "", "| piece | ms | reference ms | over reference |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {t:.2f} | {ref:.2f} | {r:.2f}x |" for name, t, ref, r in shape_rows]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=_positive_int, default=30, help="timed rounds per shape (default 30)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="the folder the page goes to")
    parser.add_argument("--page", type=_page_name, default="sru_breakdown",
                        help="name of the page without .md (default: sru_breakdown); one per machine kind, "
                             "e.g. sru_breakdown_zen3")
    args = parser.parse_args(argv)
    kernels = _kernels.load()
    if kernels is None:
        print("sru_breakdown: seqlab's compiled kernels are not available here (see the notice above)",
              file=sys.stderr)
        return 1
    rows = {}
    for shape in SHAPES:
        T, B, I, H = shape
        print(f"[sru breakdown] T={T}, B={B}, I={I}, H={H}", file=sys.stderr, flush=True)
        rows[f"T={T}, B={B}, I={I}, H={H}"] = _shape_rows(kernels, shape, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.page}.md"
    atomic_write_bytes(path, _render(rows, args.repeats, args.page).encode())
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
