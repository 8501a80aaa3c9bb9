"""Where the time of a training step goes on CUDA: torch.profiler tables per cell and shape.

For each case (cell, shape, CUDA graphs on or off, training or inference)
prints the wall time per call and the summed GPU kernel time, and writes the
profiler's table (sorted by GPU time) to the file named on the command line.
With graphs on, the profiler may count a replayed graph's kernels more than
once; the graphs-off rows give per-kernel times.

Usage (from the repo root, on a machine with CUDA and Triton):
    python benchmarks/gpu_profile.py docs/results/cells_cuda_profile.txt
"""
import os, sys, time
from pathlib import Path

import torch
from torch.profiler import profile, ProfilerActivity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from seqlab.nn import Recurrent  # noqa: E402

S1, S3 = (50, 32, 256, 256), (200, 16, 128, 128)
out = open(sys.argv[1], "w")

def case(name, shape, graphs=True, n=10, train=True):
    os.environ["SEQLAB_CUDA_GRAPHS"] = "1" if graphs else "0"
    T, B, I, H = shape
    torch.manual_seed(0)
    m = (torch.nn.LSTM(I, H) if name == "torch" else Recurrent(name, I, H)).cuda()
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    g = torch.randn(T, B, H, device="cuda")
    def step():
        if train:
            y, _ = m(x); y.backward(g)
        else:
            with torch.no_grad():
                m(x)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / n * 1e3
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    ka = prof.key_averages()
    gpu = sum(e.self_device_time_total for e in ka) / n / 1e3
    cnt = sum(e.count for e in ka if e.self_device_time_total > 0) / n
    line = f"== {name} {shape} graphs={graphs} train={train}: wall {wall:.3f} ms/iter, GPU kernels {gpu:.3f} ms/iter, {cnt:.0f} GPU events/iter"
    print(line, flush=True)
    out.write(line + "\n" + ka.table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=60) + "\n")
    out.flush()

for args in [("torch", S3), ("peephole", S3), ("peephole", S3, False), ("ln_lstm", S3), ("ln_lstm", S3, False),
             ("nested_lstm", S3), ("sru", S1), ("sru", S1, False), ("torch", S1), ("sru", S3),
             ("sru", S1, True, 10, False), ("ln_lstm", S3, True, 10, False)]:
    try:
        case(*args)
    except Exception as e:
        print("FAILED", args, repr(e)[:300], flush=True)
