"""Accuracy against size of a G2P model whose LSTM matrices are cut to low rank by truncated SVD.

``seqlab.compress.compress_svd`` replaces the recurrent and input matrices of
every LSTM cell (encoder layers and directions, decoder) by their best
rank-``r`` approximation, each rank chosen by the share of the singular
values' energy it keeps or by a fixed share of the matrix's numbers.  The
model is then scored on the SPEC test split (greedy decoding, float32) like
``seqlab eval g2p``.  No fine-tuning after the cut: the table shows what the
factorization alone costs.  *numbers as factors*: what storing the two
factors of each matrix would take (``r (m + n)`` per matrix, or ``m n`` where
that is less), for the compressed matrices and for the whole model
(embeddings, biases, attention and output layer as they are); the compressed
model itself stores the products densely, so it runs at the original speed.

Writes ``docs/results/svd_g2p.md`` and ``.json``.

Usage:
    python benchmarks/svd_g2p.py [--checkpoint DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
from pathlib import Path

import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.compress import compress_svd
from seqlab.data.cmudict import load_g2p
from seqlab.provenance import cpu_name, git_commit
from seqlab.tasks.g2p import G2PModel, evaluate_g2p

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "src" / "seqlab" / "pretrained" / "g2p-fast"
# (rule, value) pairs, from the mildest cut to the hardest.
RULES = [("energy", 0.99), ("energy", 0.95), ("energy", 0.90), ("energy", 0.80), ("fraction", 0.75),
         ("fraction", 0.50), ("fraction", 0.35), ("fraction", 0.25)]


def _rows(checkpoint: Path) -> list[dict]:
    base = G2PModel.from_checkpoint(checkpoint)
    data = load_g2p()
    total = sum(p.numel() for p in base.model.parameters())
    print("[svd g2p] original", file=sys.stderr, flush=True)
    original = evaluate_g2p(base, "test", data=data)
    rows = [{"rule": "original", "value": None, "matrices": 0, "dense": 0, "factored": 0, "model": total,
             "model_factored": total, "wer": original["wer"], "per": original["per"]}]
    for rule, value in RULES:
        print(f"[svd g2p] {rule} {value}", file=sys.stderr, flush=True)
        model = copy.deepcopy(base)
        report = compress_svd(model.model, **{rule: value})
        dense, factored = sum(f.dense for f in report), sum(f.params for f in report)
        scores = evaluate_g2p(model, "test", data=data)
        rows.append({"rule": rule, "value": value, "matrices": len(report), "dense": dense, "factored": factored,
                     "model": total, "model_factored": total - dense + factored, "wer": scores["wer"],
                     "per": scores["per"], "ranks": {f.name: [f.rank, *f.shape, round(f.energy, 4)] for f in report}})
    return rows


def _render(rows: list[dict], checkpoint: Path, command: str) -> str:
    base = rows[0]
    lines = [
        "# G2P after truncated-SVD compression of its LSTM matrices",
        "",
        f"Written by `{command}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(commit {git_commit(REPO)}), torch {torch.__version__}, {cpu_name()}. Model: `{checkpoint.name}` "
        f"({base['model']:,} numbers). Every LSTM cell's input and recurrent matrix replaced by its best rank-r "
        "approximation (`seqlab.compress.compress_svd`), no fine-tuning; scored on the SPEC test split "
        "(greedy, float32). *energy*: each rank keeps at least that share of its matrix's squared singular "
        "values; *fraction*: each matrix's two factors take at most that share of its numbers. *as factors*: "
        "the numbers storing the factors would take (the model itself keeps the products dense and runs at the "
        "original speed).",
        "",
        "| rule | matrices as factors | whole model as factors | WER | PER | WER change |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["rule"] == "original":
            lines.append(f"| original | | {row['model']:,} (100%) | {100 * row['wer']:.2f}% | "
                         f"{100 * row['per']:.2f}% | |")
            continue
        share = row["factored"] / row["dense"]
        whole = row["model_factored"] / row["model"]
        lines.append(f"| {row['rule']} {row['value']:.2f} | {row['factored']:,} of {row['dense']:,} ({100 * share:.0f}%) "
                     f"| {row['model_factored']:,} ({100 * whole:.0f}%) | {100 * row['wer']:.2f}% | "
                     f"{100 * row['per']:.2f}% | {100 * (row['wer'] - base['wer']):+.2f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="a G2P checkpoint folder (default: the shipped distilled model of seqlab g2p --fast)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="the folder the page goes to")
    args = parser.parse_args(argv)
    rows = _rows(args.checkpoint)
    command = "python benchmarks/svd_g2p.py" + ("" if args.checkpoint == DEFAULT_CHECKPOINT
                                                 else f" --checkpoint {args.checkpoint}")
    args.out.mkdir(parents=True, exist_ok=True)
    page = args.out / "svd_g2p.md"
    atomic_write_bytes(page, _render(rows, args.checkpoint, command).encode())
    atomic_write_bytes(args.out / "svd_g2p.json", json.dumps(rows, indent=1).encode())
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
