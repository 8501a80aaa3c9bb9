"""G2P decoding with and without ``seqlab.runtime.keep_freed_memory``: page faults and words/s.

Each process loads the shipped G2P model, decodes the test words once to
warm up, then ``--passes`` more times, and reports each pass's wall time and
its minor page faults (``ru_minflt``: pages the kernel had to map and zero).
glibc's allocator state depends on the order in which sizes came, so the
figures are per process, over ``--processes`` fresh processes per setting,
started in turn (kept, default, kept, ...) so that a slow spell of the
shared machine does not land on one setting only.

- *kept*: what the ``seqlab`` command runs with (``keep_freed_memory()``);
- *default*: glibc's own settings (``SEQLAB_MALLOC=default``).

Decoding is greedy on 1 torch thread, float32 and int8
(``G2PModel.quantized``), as in ``seqlab bench g2p``.  Writes
``docs/results/allocator.md`` and ``.json``.

Usage:
    python benchmarks/allocator.py [--processes N] [--passes N] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.provenance import cpu_name, git_commit

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "src" / "seqlab" / "pretrained" / "g2p-fast"
SETTINGS = ("kept", "default")
SYSTEMS = ("float32", "int8")

# One process: argv = system, passes. Prints one JSON line.
CHILD = """
import json, resource, sys, time
import torch
from seqlab.runtime import keep_freed_memory
applied = keep_freed_memory()
from seqlab.data.cmudict import load_g2p
from seqlab.tasks.g2p import G2PModel
torch.set_num_threads(1)
system, passes, checkpoint = sys.argv[1], int(sys.argv[2]), sys.argv[3]
words = [w for w, _ in load_g2p()["test"]]
model = G2PModel.from_checkpoint(checkpoint)
if system == "int8":
    model = model.quantized()
model.pronounce(words)
seconds, faults = [], []
for _ in range(passes):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    model.pronounce(words)
    seconds.append(time.perf_counter() - start)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "words": len(words), "seconds": seconds, "faults": faults}))
"""


def _process(system: str, setting: str, passes: int) -> dict:
    env = {**os.environ, "SEQLAB_MALLOC": "default" if setting == "default" else "", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, system, str(passes), str(CHECKPOINT)], env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["applied"] != (setting == "kept"):
        raise RuntimeError(f"setting {setting!r} was not what the process ran with: {result}")
    return result


def measure(processes: int, passes: int) -> dict:
    runs: dict[str, dict[str, list[dict]]] = {s: {k: [] for k in SETTINGS} for s in SYSTEMS}
    for k in range(processes):
        for system in SYSTEMS:
            for setting in SETTINGS:
                print(f"process {k + 1}/{processes}: {system}, {setting}", file=sys.stderr, flush=True)
                runs[system][setting].append(_process(system, setting, passes))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(REPO),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "processes": processes,
        "passes": passes,
        "runs": runs,
    }


def _summary(process_runs: list[dict]) -> tuple[list[float], list[int]]:
    """Each process's median words/s and median page faults per pass."""
    speeds = [r["words"] / statistics.median(r["seconds"]) for r in process_runs]
    faults = [int(statistics.median(r["faults"])) for r in process_runs]
    return speeds, faults


def render(result: dict) -> str:
    lines = [
        "# G2P decoding and glibc's allocator",
        "",
        f"Written by `python benchmarks/allocator.py` on {result['date']} (commit {result['commit']}), "
        f"torch {result['torch']}, {result['cpu']}. Greedy decoding of the 12,630 test words with the shipped "
        f"model (`src/seqlab/pretrained/g2p-fast`), 1 torch thread; {result['processes']} fresh processes per "
        f"row, started in turn; each decodes the words once to warm up, then {result['passes']} timed passes.",
        "",
        "- *kept*: `seqlab.runtime.keep_freed_memory()`, what the `seqlab` command runs with: glibc keeps "
        "freed blocks of up to 32 MiB for reuse;",
        "- *default*: glibc's own settings (`SEQLAB_MALLOC=default`).",
        "",
        "Page faults: minor faults per pass (`ru_minflt`), each process's median pass; words/s: each "
        "process's median pass. *vs default*: the ratio of the medians over processes.",
        "",
        "| model | allocator | words/s, median | words/s per process | page faults per pass, per process "
        "| vs default |",
        "|---|---|---:|---|---|---:|",
    ]
    for system in SYSTEMS:
        base = statistics.median(_summary(result["runs"][system]["default"])[0])
        for setting in SETTINGS:
            speeds, faults = _summary(result["runs"][system][setting])
            median = statistics.median(speeds)
            lines.append(
                f"| {system} | {setting} | {median:,.0f} | {', '.join(f'{s:,.0f}' for s in speeds)} | "
                f"{', '.join(f'{f:,}' for f in faults)} | {median / base:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=4, help="fresh processes per model and setting (default 4)")
    p.add_argument("--passes", type=int, default=3, help="timed passes over the test words per process (default 3)")
    p.add_argument("--out", default=str(REPO / "docs" / "results"), help="directory for allocator.md/.json")
    args = p.parse_args(argv)
    if args.processes < 1 or args.passes < 1:
        p.error("--processes and --passes must be at least 1")
    result = measure(args.processes, args.passes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "allocator.json", (json.dumps(result, indent=2) + "\n").encode())
    atomic_write_bytes(out / "allocator.md", render(result).encode())
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
