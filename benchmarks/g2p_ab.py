"""G2P decoding speed of two seqlab revisions against each other, in alternating processes.

For work on the decoding path (``seqlab.compress``, ``seqlab.seq2seq``, the
kernels) where a change is worth a few percent: on a shared machine two runs
of ``seqlab bench g2p`` minutes apart can differ by more than that.  This
runs the same timing in fresh processes of revision A and revision B in
turn (A B, then B A, ...), each decoding every CMUdict test word with one
torch thread after a warm-up, and reports the median over pairs of the
ratio of their words/s within a pair (``B/A`` above 1: B is faster), and
how many words the two revisions pronounce differently.

A git revision's ``src/`` is exported to a temporary folder and its kernels
built in a cache folder of their own (``~/.cache/seqlab/ab/REV-HASH``), so
that the two builds do not replace each other; ``worktree`` (the default B)
is this checkout as it is, with its kernels where seqlab builds them.

It prints its table and writes nothing: a tool for deciding what to keep,
not a results page (``seqlab bench g2p`` writes those).

Usage:
    python benchmarks/g2p_ab.py [--a REV] [--b REV|worktree] [--compute int8|float32] [--beam N]
        [--pairs N] [--passes N] [--test-words N] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from seqlab.errors import SeqlabError

REPO = Path(__file__).resolve().parents[1]
WORKTREE = "worktree"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqlab" / "ab"

# What each process runs: ``sys.argv[1:]`` = checkpoint, compute, beam, passes, test words (0: all).  The best pass of the
# process (after one warm-up call) is its figure; it prints that and a digest of what it decoded.
CHILD = r"""
import hashlib, json, sys, time, warnings
warnings.simplefilter("ignore")
import torch
from seqlab.runtime import keep_freed_memory
from seqlab.data import load_g2p
from seqlab.tasks.g2p import G2PModel
keep_freed_memory()
torch.set_num_threads(1)
checkpoint, compute, beam, passes, first = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
words = [w for w, _ in load_g2p()["test"]][: first or None]
model = G2PModel.from_checkpoint(checkpoint).with_compute(compute)
model.pronounce(words[:500], beam=beam)
best = 0.0
for _ in range(passes):
    start = time.perf_counter()
    out = model.pronounce(words, beam=beam)
    best = max(best, len(words) / (time.perf_counter() - start))
import seqlab
print(json.dumps({"words_per_second": best, "phones": [" ".join(p) for p in out], "seqlab": seqlab.__file__}))
"""


def rev_sha(rev: str) -> str:
    run = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True)
    if run.returncode != 0:
        raise SeqlabError(f"{rev!r} is not a git revision of {REPO}", hint="give e.g. HEAD, HEAD~2 or a hash")
    return run.stdout.strip()


def export_src(sha: str, into: Path) -> Path:
    """``src/`` of commit ``sha`` under ``into``; returns the folder to put on ``PYTHONPATH``."""
    archive = into / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", sha, "src"], cwd=REPO, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


class Side:
    """One revision: where its code is and where its kernels are built."""

    def __init__(self, name: str, src: Path, cache: Path | None) -> None:
        self.name, self.src, self.cache = name, src, cache

    def run(self, args: argparse.Namespace) -> dict:
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        if self.cache is not None:
            env["SEQLAB_KERNEL_CACHE"] = str(self.cache)
        run = subprocess.run([sys.executable, "-c", CHILD, str(args.checkpoint), args.compute, str(args.beam),
                              str(args.passes), str(args.test_words)], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise SeqlabError(f"the timing process of {self.name} failed:\n{run.stderr[-2000:]}")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        if not Path(result["seqlab"]).is_relative_to(self.src):
            raise SeqlabError(f"{self.name}: the timing process imported seqlab from {result['seqlab']}, "
                              f"not from {self.src}")
        return result


def side(spec: str, tmp: Path) -> Side:
    if spec == WORKTREE:
        return Side(WORKTREE, REPO / "src", None)  # the kernels where seqlab builds them
    sha = rev_sha(spec)
    folder = tmp / sha[:12]
    folder.mkdir()
    name = sha[:7] if sha.startswith(spec) else f"{spec} ({sha[:7]})"
    return Side(name, export_src(sha, folder), CACHE / sha[:12])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", default="HEAD", help="the baseline revision (default: HEAD)")
    p.add_argument("--b", default=WORKTREE, help="the revision to compare (default: this checkout as it is)")
    p.add_argument("--compute", choices=("float32", "int8"), default="int8", help="default: int8")
    p.add_argument("--beam", type=int, default=1, help="beam size (default: 1, greedy)")
    p.add_argument("--pairs", type=int, default=6, help="pairs of processes (default: 6)")
    p.add_argument("--passes", type=int, default=3, help="passes over the test words per process (default: 3)")
    p.add_argument("--test-words", type=int, default=0, help="first N test words only (0 = all; smoke tests)")
    p.add_argument("--checkpoint", type=Path, default=REPO / "src/seqlab/pretrained/g2p-fast",
                   help="the model (default: the shipped distilled model of seqlab g2p --fast)")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.passes < 1 or args.beam < 1 or args.test_words < 0:
        p.error("--pairs, --passes and --beam must be at least 1, --test-words at least 0")
    with tempfile.TemporaryDirectory(prefix="seqlab-g2p-ab-") as tmp:
        a, b = side(args.a, Path(tmp)), side(args.b, Path(tmp))
        print(f"A = {a.name}, B = {b.name}; {args.compute}, beam {args.beam}, {args.pairs} pairs of processes, "
              f"best of {args.passes} passes each", file=sys.stderr)
        ratios, speeds, differ = [], {a.name: [], b.name: []}, None
        for i in range(args.pairs):
            first, second = (a, b) if i % 2 == 0 else (b, a)
            got = {first.name: first.run(args), second.name: second.run(args)}
            ra, rb = got[a.name], got[b.name]
            ratios.append(rb["words_per_second"] / ra["words_per_second"])
            for s in (a, b):
                speeds[s.name].append(got[s.name]["words_per_second"])
            differ = sum(x != y for x, y in zip(ra["phones"], rb["phones"]))
            print(f"pair {i + 1}: A {ra['words_per_second']:,.0f} words/s, B {rb['words_per_second']:,.0f}, "
                  f"B/A {ratios[-1]:.3f}", file=sys.stderr)
    print(f"| side | median words/s | range |\n|---|---:|---|")
    for name, values in speeds.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f}-{max(values):,.0f} |")
    faster = sum(r > 1 for r in ratios)
    print(f"\nB/A: median {statistics.median(ratios):.3f} over {len(ratios)} pairs (B faster in {faster}); "
          f"words pronounced differently: {differ}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SeqlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
