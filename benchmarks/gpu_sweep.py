"""Training times on CUDA: the gated cells' step-kernel tiles swept, and the other Triton cells.

Prints, per issue-4 shape, torch.nn.LSTM's training time (forward + backward,
median of 20 after 3 warm-up calls), peephole's under each tile setting
(``gpu.TILES``: units, reduction depth; None is the default choice) and the
training and inference times of ln_lstm, nested_lstm, sru and cifg.  Single
timings, not paired rounds: for choosing tiles and spotting regressions;
``seqlab bench cells --device cuda`` gives the paired ratios.

Usage (from the repo root, on a machine with CUDA and Triton):
    python benchmarks/gpu_sweep.py | tee docs/results/cells_gpu_sweep.txt
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from seqlab.nn import Recurrent  # noqa: E402
from seqlab.nn._kernels import gpu  # noqa: E402

SHAPES = S1, S2, S3 = (50, 32, 256, 256), (20, 128, 256, 512), (200, 16, 128, 128)


def step_fn(model, x, g, train=True):
    """One call of ``model``: forward and backward of ``g`` when training, else forward under no_grad."""
    def step():
        if train:
            y, _ = model(x)
            y.backward(g)
        else:
            with torch.no_grad():
                model(x)
    return step


def wall(model, x, g, n=20, train=True):
    """Median wall time of a call in ms, after 3 warm-up calls."""
    step = step_fn(model, x, g, train)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[n // 2]


def main():
    for shape in SHAPES:
        T, B, I, H = shape
        torch.manual_seed(0)
        x = torch.randn(T, B, I, device="cuda", requires_grad=True)
        g = torch.randn(T, B, H, device="cuda")
        lines = [f"{shape}: torch LSTM train {wall(torch.nn.LSTM(I, H).cuda(), x, g):.2f} ms"]
        model = Recurrent("peephole", I, H).cuda()
        for tiles in (None, (16, 64), (16, 128), (32, 64)):
            gpu.TILES = tiles
            try:
                lines.append(f"  peephole tiles={tiles}: {wall(model, x, g):.2f} ms")
            except Exception as err:  # a tile shape the compiler refuses
                lines.append(f"  peephole tiles={tiles}: FAILED {repr(err)[:120]}")
        gpu.TILES = None
        for name in ("ln_lstm", "nested_lstm", "sru", "cifg"):
            model = Recurrent(name, I, H).cuda()
            lines.append(f"  {name}: train {wall(model, x, g):.2f} ms, infer {wall(model, x, g, train=False):.2f} ms")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
