"""Load test of ``seqlab serve``: many concurrent clients against a local server.

Sizes: 1,000 requests from 32 concurrent clients (``--requests``,
``--concurrency``), each request 1 to 4 words drawn (seeded) from the CMUdict
test split, beam 5, the shipped model.  The server is a real ``seqlab
serve`` process on a free loopback port with ``--threads`` torch threads
(default 1, leaving the other core to the clients); the clients are one
asyncio process with an HTTP connection pool of ``--concurrency``.

Measured in the same run, against the same server:

- baseline: 100 requests from one client, one at a time;
- load: the requests from the concurrent clients.

Reported: throughput (requests/s, words/s), latency percentiles (p50, p90,
p99, max) per request as the client sees it, errors (any answer other than
200, or no answer), and the mean batch size the server decoded (its
``/api/info`` counters).  Writes ``docs/results/serve_load.md``.

Usage:
    python benchmarks/serve_load.py [--requests 1000] [--concurrency 32] [--note "..."]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import platform
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.data import load_g2p
from seqlab.provenance import cpu_name, git_commit

REPO = Path(__file__).resolve().parents[1]
BASELINE_REQUESTS = 100


def _log(message: str) -> None:
    print(f"[serve-load] {message}", file=sys.stderr, flush=True)


def _start_server(beam: int, threads: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """A ``seqlab serve`` process on a free port, its output going to ``log_path``; returns it and its URL."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "seqlab", "serve", "--port", "0", "--beam", str(beam)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        match = re.search(r"http://[^/\s]+", log_path.read_text())
        if match:
            return proc, match.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log_path.read_text()}")


def _requests(n: int, seed: int) -> list[list[str]]:
    words = [w for w, _ in load_g2p()["test"]]
    rng = random.Random(seed)
    return [rng.sample(words, rng.randint(1, 4)) for _ in range(n)]


async def _fire(url: str, requests: list[list[str]], concurrency: int) -> tuple[list[float], Counter, float]:
    """``(latencies in seconds of the answered requests, errors by kind, wall seconds)``."""
    latencies: list[float] = []
    errors: Counter = Counter()
    todo = iter(requests)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def client_loop() -> None:
            for words in todo:
                start = time.perf_counter()
                try:
                    response = await client.post("/api/g2p", json={"words": words})
                except httpx.HTTPError as err:
                    errors[f"{type(err).__name__}: {err}"[:120]] += 1
                    continue
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}: {response.text}"[:120]] += 1
                elif len(response.json()["results"]) != len(words):
                    errors["wrong number of results"] += 1
                else:
                    latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/api/info", timeout=30).json()["stats"]


def _summary(requests: list[list[str]], latencies: list[float], errors: Counter, seconds: float) -> dict[str, Any]:
    words = sum(len(r) for r in requests)
    out = {"requests": len(requests), "words": words, "errors": sum(errors.values()), "kinds": errors,
           "seconds": seconds,
           "rps": len(requests) / seconds, "wps": words / seconds}
    for q in (50, 90, 99):
        out[f"p{q}"] = 1000 * _percentile(latencies, q) if latencies else float("nan")
    out["max"] = 1000 * max(latencies) if latencies else float("nan")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="a line about the conditions, written into the results")
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "serve_load.md"))
    args = parser.parse_args()

    requests = _requests(args.requests + BASELINE_REQUESTS, args.seed)
    baseline_requests, load_requests = requests[:BASELINE_REQUESTS], requests[BASELINE_REQUESTS:]
    _log(f"starting seqlab serve (beam {args.beam}, {args.threads} torch thread(s)) ...")
    server_log = Path(tempfile.mkdtemp(prefix="serve-load-")) / "server.log"
    server, url = _start_server(args.beam, args.threads, server_log)
    try:
        asyncio.run(_fire(url, requests[:5], 1))  # warm-up, not counted
        _log(f"baseline: {BASELINE_REQUESTS} requests from 1 client at {url}")
        base = _summary(baseline_requests, *asyncio.run(_fire(url, baseline_requests, 1)))
        before = _stats(url)
        _log(f"load: {args.requests} requests from {args.concurrency} clients")
        load = _summary(load_requests, *asyncio.run(_fire(url, load_requests, args.concurrency)))
        after = _stats(url)
    finally:
        server.terminate()
        server.wait(30)
    batches = after["batches"] - before["batches"]
    mean_batch = (after["requests"] - before["requests"]) / max(batches, 1)

    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *sys.argv[1:]])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [("1 client, one request at a time", base), (f"{args.concurrency} concurrent clients", load)]
    lines = [
        "# `seqlab serve` under load",
        "",
        f"- date: {now}",
        f"- git commit: {git_commit(REPO)}",
        f"- machine: {cpu_name()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"torch {torch.__version__}; server and clients on the same machine",
        f"- server: `seqlab serve --beam {args.beam}`, shipped model, {args.threads} torch thread(s), one uvicorn "
        "worker; clients: one asyncio process (httpx)",
        f"- requests: 1 to 4 words each (mean {load['words'] / load['requests']:.2f}), drawn from the CMUdict "
        f"test split with seed {args.seed}; every answer includes phones, scores and attention weights",
    ]
    if args.note:
        lines.append(f"- conditions: {args.note}")
    lines += [
        "",
        "| clients | requests | errors | requests/s | words/s | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['requests']:,} | {r['errors']} | {r['rps']:,.1f} | {r['wps']:,.1f} | "
                     f"{r['p50']:,.1f} | {r['p90']:,.1f} | {r['p99']:,.1f} | {r['max']:,.1f} |")
    lines += [
        "",
        f"Throughput with {args.concurrency} concurrent clients: {load['rps'] / base['rps']:.2f}x the "
        f"one-client baseline; the server decoded the concurrent requests in {batches:,} batches "
        f"({mean_batch:.1f} requests per batch on average: requests that arrive while a batch is being "
        "decoded wait and are decoded together).",
        "",
        "Latency: from sending a request to having its whole answer, as the client measures it "
        "(nearest-rank percentiles). Errors: answers other than 200 with one result per word, or no answer.",
    ]
    kinds = [(name, kind, n) for name, r in rows for kind, n in r["kinds"].most_common()]
    if kinds:
        lines += ["", "Errors seen:", "", *(f"- {name}: {n} x `{kind}`" for name, kind, n in kinds)]
    lines += ["", f"Regenerate with `{command}`.", ""]
    atomic_write_bytes(Path(args.out), "\n".join(lines).encode("utf-8"))
    _log(f"wrote {args.out}: {load['errors']} errors, p99 {load['p99']:.1f} ms, {load['rps']:.1f} requests/s")
    return 1 if load["errors"] or base["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
