#!/usr/bin/env bash
# Issue 4's GPU checks in one go, on a machine with CUDA, PyTorch and Triton:
#   1. the Triton kernels against the CPU reference loop (tests/test_triton.py);
#   2. `seqlab bench cells --device cuda` with CUDA graphs on (the default),
#      written to OUT/cells_gpu.md and .json;
#   3. the same with SEQLAB_CUDA_GRAPHS=0, written to OUT/cells_gpu_graphs_off.md and .json;
#   4. benchmarks/gpu_sweep.py (tile sweep) to OUT/cells_gpu_sweep.txt and
#      benchmarks/gpu_profile.py (torch.profiler tables) to OUT/cells_gpu_profile.txt.
# Usage: benchmarks/gpu_check.sh [OUT]   (default OUT: docs/results; PYTHON: python3)
set -u -o pipefail
out=${1:-docs/results}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$py -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name())'
status=0
timeout 300 $py -m pytest -q -p no:cacheprovider -n 4 tests/test_triton.py || status=1
timeout 200 $py benchmarks/cells.py --device cuda --out "$out" || status=1
tmp=$(mktemp -d)
if SEQLAB_CUDA_GRAPHS=0 timeout 200 $py benchmarks/cells.py --device cuda --out "$tmp"; then
    mv "$tmp/cells_gpu.md" "$out/cells_gpu_graphs_off.md"
    mv "$tmp/cells_gpu.json" "$out/cells_gpu_graphs_off.json"
else
    status=1
fi
timeout 200 $py benchmarks/gpu_sweep.py > "$out/cells_gpu_sweep.txt" || status=1
timeout 200 $py benchmarks/gpu_profile.py "$out/cells_gpu_profile.txt" || status=1
exit $status
