"""Where the time of a training step goes on CUDA: torch.profiler tables per cell and shape.

For each case (cell, shape, CUDA graphs on or off, training or inference)
prints the wall time per call and the summed GPU kernel time, and writes the
profiler's table (sorted by GPU time) to the file named on the command line.
With graphs on, the profiler may count a replayed graph's kernels more than
once; the graphs-off rows give per-kernel times.

Usage (from the repo root, on a machine with CUDA and Triton):
    python benchmarks/gpu_profile.py docs/results/cells_gpu_profile.txt
"""
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import profile, ProfilerActivity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from seqlab.nn import Recurrent  # noqa: E402

from gpu_sweep import S1, S3, step_fn  # noqa: E402  (this folder is on sys.path when run as a script)

CASES = [  # (cell or "torch" for torch.nn.LSTM, shape, CUDA graphs, training)
    ("torch", S3, True, True), ("peephole", S3, True, True), ("peephole", S3, False, True),
    ("ln_lstm", S3, True, True), ("ln_lstm", S3, False, True), ("nested_lstm", S3, True, True),
    ("sru", S1, True, True), ("sru", S1, False, True), ("torch", S1, True, True), ("sru", S3, True, True),
    ("sru", S1, True, False), ("ln_lstm", S3, True, False),
]


def case(out, name, shape, graphs, train, n=10):
    os.environ["SEQLAB_CUDA_GRAPHS"] = "1" if graphs else "0"
    T, B, I, H = shape
    torch.manual_seed(0)
    model = (torch.nn.LSTM(I, H) if name == "torch" else Recurrent(name, I, H)).cuda()
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    step = step_fn(model, x, torch.randn(T, B, H, device="cuda"), train)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - start) / n * 1e3
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    averages = prof.key_averages()
    gpu_ms = sum(e.self_device_time_total for e in averages) / n / 1e3
    events = sum(e.count for e in averages if e.self_device_time_total > 0) / n
    line = (f"== {name} {shape} graphs={graphs} train={train}: wall {wall:.3f} ms/iter, "
            f"GPU kernels {gpu_ms:.3f} ms/iter, {events:.0f} GPU events/iter")
    print(line, flush=True)
    table = averages.table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=60)
    out.write(line + "\n" + table + "\n")
    out.flush()


def main():
    with open(sys.argv[1], "w") as out:
        for args in CASES:
            try:
                case(out, *args)
            except Exception as err:  # report and go on to the next case
                print("FAILED", args, repr(err)[:300], flush=True)


if __name__ == "__main__":
    main()
