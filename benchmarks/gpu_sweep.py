"""Training times on CUDA: the gated cells' step-kernel tiles swept, and the other Triton cells.

Prints, per issue-4 shape, torch.nn.LSTM's training time (forward + backward,
median of 20 after 3 warm-up calls), peephole's under each tile setting
(``gpu.TILES``: units, reduction depth; None is the default choice) and the
training and inference times of ln_lstm, nested_lstm, sru and cifg.  Single
timings, not paired rounds: for choosing tiles and spotting regressions;
``seqlab bench cells --device cuda`` gives the paired ratios.

Usage (from the repo root, on a machine with CUDA and Triton):
    python benchmarks/gpu_sweep.py | tee docs/results/cells_cuda_sweep.txt
"""
import sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from seqlab.nn import Recurrent  # noqa: E402
from seqlab.nn._kernels import gpu  # noqa: E402

S1, S2, S3 = (50, 32, 256, 256), (20, 128, 256, 512), (200, 16, 128, 128)

def wall(m, x, g, n=20, train=True):
    def step():
        if train:
            y, _ = m(x); y.backward(g)
        else:
            with torch.no_grad():
                m(x)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); step(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    ts.sort()
    return 1e3 * ts[len(ts) // 2]

for shape in (S1, S2, S3):
    T, B, I, H = shape
    torch.manual_seed(0)
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    g = torch.randn(T, B, H, device="cuda")
    base = torch.nn.LSTM(I, H).cuda()
    lstm = wall(base, x, g)
    res = [f"{shape}: torch LSTM train {lstm:.2f} ms"]
    for name in ("peephole",):
        m = Recurrent(name, I, H).cuda()
        for tiles in (None, (16, 64), (16, 128), (32, 64)):
            gpu.TILES = tiles
            gpu._GRAPHS.entries.clear()
            try:
                res.append(f"  {name} tiles={tiles}: {wall(m, x, g):.2f} ms")
            except Exception as e:
                res.append(f"  {name} tiles={tiles}: FAILED {repr(e)[:120]}")
        gpu.TILES = None
        gpu._GRAPHS.entries.clear()
    for name in ("ln_lstm", "nested_lstm", "sru", "cifg"):
        m = Recurrent(name, I, H).cuda()
        res.append(f"  {name}: train {wall(m, x, g):.2f} ms, infer {wall(m, x, g, train=False):.2f} ms")
    print("\n".join(res), flush=True)
