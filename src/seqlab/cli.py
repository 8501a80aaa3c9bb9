"""The ``seqlab`` command.

Each subcommand is a small function: argparse fills the arguments, the
function calls importable library code.  Errors a user can cause are
:class:`seqlab.errors.SeqlabError`; they are printed as one line (plus a
hint) on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import SeqlabError
from .provenance import git_commit
from .runtime import keep_freed_memory

__all__ = ["main", "build_parser"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def _read_words(path: str) -> list[tuple[int, str]]:
    """Non-empty lines of a word list as ``(line number, word)``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeqlabError(f"input file {path} does not exist") from None
    except UnicodeDecodeError:
        raise SeqlabError(f"input file {path} is not UTF-8 text") from None
    except OSError as err:
        raise SeqlabError(f"cannot read {path}: {err.strerror}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------


def _cmd_cells(args: argparse.Namespace) -> int:
    from .nn import CELLS
    from .nn._kernels import gpu, supports

    rows = []
    for name, cls in CELLS.items():
        cell = cls(args.input_size, args.hidden_size)
        params = sum(p.numel() for p in cell.parameters())
        state = ("h", "h, c", "h, c, c_inner")[cell.state_size - 1]
        # What Recurrent's impl="auto" runs: on the CPU seqlab's kernel (torch's for a standard cell, or
        # the reference loop, where it cannot build); on CUDA cuDNN for standard cells, else Triton.
        cpu = "seqlab" if supports(cls) else "torch" if cls.native else "reference"
        cuda = "cuDNN" if cls.native else "Triton" if gpu.supports(cls) else "reference"
        kernel = f"{cpu} / {cuda}"
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append((name, f"{params:,}", state, kernel, summary))
    header = ("cell", "params", "state", "kernel (CPU / CUDA)", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(f"cells at input_size={args.input_size}, hidden_size={args.hidden_size} (one layer, one direction):")
    for row in [header, *rows]:
        cols = [f"{v:>{w}}" if i == 1 else f"{v:<{w}}" for i, (v, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cols) + "  " + row[4])
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .tasks import RECIPES

    recipe = RECIPES[args.task]
    config = load_config(recipe.config, args.config, args.overrides)
    run_dir = args.run_dir or f"runs/{args.task}"
    result = recipe.train(config, run_dir, resume=not args.restart)
    best = "  ".join(f"{k} {v:.4g}" for k, v in result.best_metrics.items())
    print(f"done after {result.epochs} epochs ({result.stopped}, {result.seconds / 60:.1f} min); best: {best}")
    print(f"best model: {Path(result.run_dir) / 'best'}   log: {Path(result.run_dir) / 'log.csv'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data import load_g2p
    from .tasks import g2p

    model = _load_g2p(args)
    data = load_g2p()
    results = []
    for beam in args.beam:
        result = {**g2p.evaluate_g2p(model, args.split, beam=beam, data=data), "compute": args.compute}
        results.append(result)
        print(
            f"{args.split}: {result['words']:,} words, beam {beam}: WER {_percent(result['wer'])}  "
            f"PER {_percent(result['per'])}  ({result['words_per_second']:,.0f} words/s, {result['threads']} threads"
            + (f", {args.compute} compute)" if args.compute != "float32" else ")")
        )
    label = g2p.model_label(args.checkpoint, fast=args.fast)
    out = args.results
    # docs/results/g2p.json records the shipped model as it ships: float32 compute.
    if out is None and label == "shipped" and args.compute == "float32" and args.split == "test" and Path("docs/results").is_dir():
        out = "docs/results/g2p.json"
    if out:
        record = {
            "model": label,
            "results": results,
            "date": datetime.date.today().isoformat(),
            "commit": git_commit(),
            "command": "seqlab " + " ".join(sys.argv[1:]),
            "training": {k: model.meta[k] for k in ("epoch", "metrics", "train_seconds", "init_from") if k in model.meta},
            "members": [
                {k: m[k] for k in ("source", "epoch", "metrics", "train_seconds", "init_from") if k in m}
                for m in model.meta.get("members", [])
            ],
        }
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


def _load_g2p(args: argparse.Namespace):
    """The model of ``--checkpoint`` or ``--fast`` (default: the shipped ensemble), in ``--int8/bf16-compute``."""
    from .tasks import g2p

    model = g2p.load_pretrained(args.checkpoint, fast=args.fast)
    return model.with_compute(getattr(args, "compute", "float32"))


def _add_compute_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--int8-compute", dest="compute", action="store_const", const="int8", default="float32",
                       help="compute in int8 (dynamic quantisation): faster on CPU, slightly less exact")
    group.add_argument("--bf16-compute", dest="compute", action="store_const", const="bfloat16",
                       help="matrix products in bfloat16: several times faster on CPUs with AVX512-BF16 or AMX, "
                       "slightly less exact")


def _beam(args: argparse.Namespace) -> int:
    """``--beam``, whose default follows the model: greedy for ``--fast`` (what it is made for), else 5."""
    return args.beam if args.beam is not None else 1 if args.fast else 5


def _cmd_predict(args: argparse.Namespace) -> int:
    from .tasks import g2p

    lines = _read_words(args.input)
    if not lines:
        raise SeqlabError(f"input file {args.input} has no words", hint="one word per line")
    words = []
    for number, word in lines:
        try:
            words.append(g2p.normalize_word(word))
        except SeqlabError as err:
            raise SeqlabError(f"{args.input}:{number}: {err}", hint=err.hint) from None
    model = _load_g2p(args)
    start = time.perf_counter()
    phones = model.pronounce_parts(words, beam=_beam(args))
    seconds = time.perf_counter() - start
    out = [f"{word}\t{' '.join(p)}\n" for (_, word), p in zip(lines, phones)]
    Path(args.output).write_text("".join(out), encoding="utf-8")
    print(f"wrote {len(out):,} pronunciations to {args.output} ({len(out) / seconds:,.0f} words/s)", file=sys.stderr)
    return 0


def _cmd_g2p(args: argparse.Namespace) -> int:
    from .plot import attention_heatmaps
    from .tasks import g2p

    parts = [g2p.normalize_word(w) for w in args.words]  # bad words fail before the model loads
    model = _load_g2p(args)
    flat_words = [p for ps in parts for p in ps]
    flat = model.pronounce(flat_words, beam=_beam(args))  # one decode for the printout and the plot
    k = 0
    for word, ps in zip(args.words, parts):
        print(f"{word}\t{' '.join(ph for piece in flat[k : k + len(ps)] for ph in piece)}")
        k += len(ps)
    if args.plot:
        items = []
        for word, phones in zip(flat_words, flat):
            weights = model.attention(word, phones)
            if weights is None:
                raise SeqlabError("this model has no attention to plot (attention=none)")
            items.append((list(word), [*phones, "</s>"], weights))
        print(f"wrote {attention_heatmaps(items, args.plot, title='seqlab G2P attention')}", file=sys.stderr)
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    import torch

    from .tasks import g2p

    dtype = torch.int8 if args.int8 else torch.float16 if args.float16 else torch.float32
    weight = 0.5 if args.rescore_weight is None else args.rescore_weight
    meta = g2p.save_ensemble(args.checkpoints, args.output, dtype=dtype, rescore_weight=weight,
                             rescore_length_penalty=args.length_penalty)
    backward = sum(bool(m["config"].get("reverse_target")) for m in meta["members"])
    if backward and args.rescore_weight is None:
        tuning = g2p.tune_rescore_weight(g2p.G2PModel.from_checkpoint(args.output), beam=args.tune_beam)
        meta = g2p.save_ensemble(args.checkpoints, args.output, dtype=dtype, rescore_weight=tuning["weight"],
                                 rescore_length_penalty=tuning["length_penalty"], tuning=tuning)
    print(f"wrote an ensemble of {len(meta['members'])} models to {args.output} ({meta['dtype']})"
          + (f"; {backward} right-to-left, rescoring with weight {meta['rescore_weight']:g} and length penalty "
             f"{meta['rescore_length_penalty']:g}" if backward else ""))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .tasks import REPORTS

    for path in REPORTS[args.name](Path(args.runs), Path(args.out)):
        print(f"wrote {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .tasks import g2p

    g2p.run_demo(Path(args.out))
    return 0


BENCHMARKS = {"cells": "cells", "g2p": "g2p_vs_phonetisaurus"}  # seqlab bench TARGET -> benchmarks/<file>.py


def _bench_module(target: str):
    """The module of ``benchmarks/<file>.py`` for ``seqlab bench TARGET``, or None when the source tree lacks it."""
    import importlib.util

    # Benchmarks live in the repository's benchmarks/ folder, beside src/, not in the package.
    script = Path(__file__).resolve().parents[2] / "benchmarks" / f"{BENCHMARKS[target]}.py"
    if not script.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"seqlab_bench_{target}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cmd_bench(args: argparse.Namespace) -> int:
    module = _bench_module(args.target)
    if module is None:
        raise SeqlabError(
            f"seqlab bench {args.target} runs benchmarks/{BENCHMARKS[args.target]}.py of the source tree, "
            "which this installation lacks",
            hint="install seqlab from a clone of its repository: pip install -e .",
        )
    for path in module.run(args):
        print(f"wrote {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import ServeConfig, serve

    config = ServeConfig(checkpoint=args.checkpoint, fast=args.fast, beam=_beam(args), max_words=args.max_words,
                         compute=args.compute)
    serve(config, host=args.host, port=args.port)
    return 0


# --------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_model_options(p: argparse.ArgumentParser, *, beam: bool = True) -> None:
    """Which G2P model (``--checkpoint`` or ``--fast``; default the shipped ensemble) and ``--beam``."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", help="a checkpoint folder (default: the shipped ensemble)")
    which.add_argument("--fast", action="store_true",
                       help="the shipped distilled model: one network trained on the ensemble's pronunciations, "
                       "several times faster and a little less accurate (WERs and words/s in README.md)")
    if beam:
        p.add_argument("--beam", type=_positive_int, help="beam size (default: 5, or 1 with --fast; 1 is greedy)")


def build_parser() -> argparse.ArgumentParser:
    from .tasks import RECIPES, REPORTS, TASKS

    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="Recurrent and attention sequence models on PyTorch.",
        epilog="Start with: seqlab demo   (trains a small G2P model, compares it with the shipped one)",
    )
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="the main job in a few minutes: train a compact G2P model and compare it with the shipped one",
        description="Train a compact G2P model on CMUdict (a few minutes on 2 cores), evaluate it on the test "
        "split next to the shipped model, pronounce a few test words both ways and draw an attention heatmap.",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.set_defaults(func=_cmd_demo)

    g2p = sub.add_parser(
        "g2p",
        help="pronounce words with the shipped G2P model",
        description="Pronounce words (ARPAbet, no stress) with the shipped model. Words are lowercased, accents "
        "are removed and hyphenated words are pronounced part by part; digits and other symbols are refused.",
    )
    g2p.add_argument("words", nargs="+", metavar="WORD")
    _add_model_options(g2p)
    _add_compute_options(g2p)
    g2p.add_argument("--plot", metavar="FILE.png", help="write the attention heatmap of each word")
    g2p.set_defaults(func=_cmd_g2p)

    cells = sub.add_parser("cells", help="list the registered recurrent cells with their parameter counts")
    cells.add_argument("--input-size", type=_positive_int, default=128, help="input features I (default: 128)")
    cells.add_argument("--hidden-size", type=_positive_int, default=256, help="hidden units H (default: 256)")
    cells.set_defaults(func=_cmd_cells)

    train = sub.add_parser(
        "train",
        help="train a recipe (resumes an interrupted run in the same folder)",
        description="Train a recipe. Settings come from the recipe's defaults, then --config, then key=value "
        "overrides; unknown keys are an error that lists the valid ones. Rerunning the same command "
        "resumes from the run folder's last checkpoint.",
    )
    train.add_argument("task", choices=list(RECIPES), metavar="RECIPE",
                       help="the recipe: " + "; ".join(f"{k} ({r.summary})" for k, r in RECIPES.items()))
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=5 cell=gru")
    train.add_argument("--config", help="YAML config file (e.g. configs/g2p.yaml)")
    train.add_argument("--run-dir", help="output folder (default: runs/TASK)")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue from the run folder's last checkpoint (the default; starts afresh if there is none)")
    start.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in the run folder")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser(
        "eval",
        help="WER/PER of a model on the dev or test split",
        description="Score a model on a split of CMUdict. Evaluating the shipped model on test from the "
        "repository root also writes docs/results/g2p.json.",
    )
    evaluate.add_argument("task", choices=list(TASKS))
    _add_model_options(evaluate, beam=False)
    evaluate.add_argument("--split", choices=("dev", "test"), default="test")
    evaluate.add_argument("--beam", type=_positive_int, nargs="+", default=[1],
                          help="beam size(s) (default: 1, greedy); e.g. --beam 1 5")
    evaluate.add_argument("--results", metavar="FILE.json", help="also write the numbers to this JSON file")
    _add_compute_options(evaluate)
    evaluate.set_defaults(func=_cmd_eval)

    predict = sub.add_parser(
        "predict",
        help="pronounce a word list file",
        description="Read one word per line, write word<TAB>phones per line.",
    )
    predict.add_argument("task", choices=list(TASKS))
    predict.add_argument("--input", required=True, help="word list, one word per line (UTF-8)")
    predict.add_argument("--output", required=True, help="where to write word<TAB>phone phone ...")
    _add_model_options(predict)
    _add_compute_options(predict)
    predict.set_defaults(func=_cmd_predict)

    ensemble = sub.add_parser(
        "ensemble",
        help="combine trained models into one ensemble checkpoint",
        description="Combine checkpoints trained on the same data into one checkpoint folder that decodes "
        "with the average of the members' probabilities at every step. Members trained with "
        "reverse_target=true (right to left) instead rescore the n-best lists of beam search. eval, "
        "predict, g2p and serve load it like a single model.",
    )
    ensemble.add_argument("task", choices=list(TASKS))
    ensemble.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="two or more checkpoint folders")
    ensemble.add_argument("--output", required=True, help="the ensemble's checkpoint folder")
    precision = ensemble.add_mutually_exclusive_group()
    precision.add_argument("--float16", action="store_true", help="store weights in float16 (half the size)")
    precision.add_argument("--int8", action="store_true",
                           help="store weight matrices in int8 with a scale per row (a quarter of the size); "
                           "the model still computes in float32")
    ensemble.add_argument("--rescore-weight", type=float, metavar="W",
                          help="weight of right-to-left members (reverse_target=true) when they rescore the "
                          "n-best lists of beam search (default: tune it with the length penalty: the pair "
                          "in weights 0, 0.1, ..., 1 x penalties 0.6, 0.8, ..., 1.4 with the lowest dev WER)")
    ensemble.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                          help="with --rescore-weight: alpha of the |Y|^alpha length normalisation of the "
                          "rescored candidates (default: 1.0)")
    ensemble.add_argument("--tune-beam", type=_positive_int, default=5,
                          help="beam size for tuning the rescoring weight (default: 5)")
    ensemble.set_defaults(func=_cmd_ensemble)

    serve = sub.add_parser(
        "serve",
        help="a web page and JSON API for the G2P model (FastAPI + uvicorn)",
        description="Serve the G2P model: a page at / to type words and see their phones with an attention "
        "heatmap, and POST /api/g2p {\"words\": [...]} returning phones, scores and attention weights. "
        "Listens on 127.0.0.1 (this machine only) unless --host says otherwise.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    _add_model_options(serve)
    _add_compute_options(serve)
    serve.add_argument("--max-words", type=_positive_int, default=64, help="most words per request (default: 64)")
    serve.set_defaults(func=_cmd_serve)

    bench = sub.add_parser(
        "bench",
        help="speed benchmarks against torch's own modules (tables in docs/results)",
        description="Run a benchmark of the repository's benchmarks/ folder. It times seqlab and its baseline "
        "in the same process and writes a Markdown table and a JSON record.",
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    bench_cells = targets.add_parser(
        "cells",
        help="every registered cell against torch.nn.LSTM, inference and training",
        description="Time every registered cell (through seqlab.nn.Recurrent) and torch.nn.LSTM/GRU/RNN at the "
        "three shapes of issue 4, inference and forward+backward, and write docs/results/cells_cpu.md "
        "(cells_gpu.md with --device cuda) and .json with ratios to torch.nn.LSTM and achieved GFLOP/s. "
        "The page checks issue 4's targets; each check's ratio comes with a 95% interval for its median over "
        "the rounds. Takes a few minutes on 2 cores; run it on a quiet machine.",
    )
    bench_g2p = targets.add_parser(
        "g2p",
        help="G2P decoding speed and WER next to Phonetisaurus, in one run",
        description="Train Phonetisaurus on the G2P train split (about 3 minutes), decode the test split with it "
        "and with seqlab (greedy and beam 5; float32, int8 and bf16 compute; optionally a single model beside the "
        "ensemble) on one thread, and write docs/results/g2p_vs_phonetisaurus.md and .json and the README table. "
        "Takes about half an hour; run it on a quiet machine.",
    )
    for name, target in (("cells", bench_cells), ("g2p", bench_g2p)):
        module = _bench_module(name)
        if module is not None:  # without the source tree, _cmd_bench says what is missing
            module.add_arguments(target)
        target.set_defaults(func=_cmd_bench)

    if REPORTS:
        report = sub.add_parser(
            "report",
            help="write a recipe family's results page (docs/results/NAME.md and plots) from its run folders",
            description="Collect the finished runs of a recipe family from the runs folder and write its "
            "results page with tables and PNG plots.",
        )
        report.add_argument("name", choices=list(REPORTS))
        report.add_argument("--runs", default="runs", help="folder holding the run folders (default: runs)")
        report.add_argument("--out", default="docs/results", help="where to write (default: docs/results)")
        report.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come after options (train g2p --config X epochs=5), which
    # argparse cannot match to a positional once an option has been seen.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    keep_freed_memory()  # torch's CPU tensors reuse freed memory instead of faulting pages in again
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that left shows here, inside the handler below
        return status
    except SeqlabError as err:
        print(f"seqlab: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (seqlab cells | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush cannot fail
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
