"""The ``seqlab`` command.

Each subcommand is a small function that parses nothing itself: argparse
fills the arguments, the function calls importable library code.  Errors a
user can cause are :class:`seqlab.errors.SeqlabError`; they are printed as
one line (plus a hint) on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import SeqlabError

__all__ = ["main", "build_parser"]


def _cmd_cells(args: argparse.Namespace) -> int:
    from .nn import CELLS

    rows = []
    for name, cls in CELLS.items():
        cell = cls(args.input_size, args.hidden_size)
        params = sum(p.numel() for p in cell.parameters())
        state = ("h", "h, c", "h, c, c_inner")[cell.state_size - 1]
        kernel = "torch fused" if cls.native else "seqlab"
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append((name, f"{params:,}", state, kernel, summary))
    header = ("cell", "params", "state", "kernel", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(f"cells at input_size={args.input_size}, hidden_size={args.hidden_size} (one layer, one direction):")
    for row in [header, *rows]:
        print("  " + "  ".join(f"{v:<{w}}" if i != 1 else f"{v:>{w}}" for i, (v, w) in enumerate(zip(row, widths))) + "  " + row[4])
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .tasks import TASKS

    recipe = TASKS[args.task]
    config = load_config(recipe.G2PConfig, args.config, args.overrides)
    run_dir = args.run_dir or f"runs/{args.task}"
    result = recipe.train_g2p(config, run_dir, resume=not args.restart)
    best = "  ".join(f"{k} {v:.4g}" for k, v in result.best_metrics.items())
    print(f"done after {result.epochs} epochs ({result.stopped}, {result.seconds / 60:.1f} min); best: {best}")
    print(f"best model: {result.run_dir / 'best'}   log: {result.run_dir / 'log.csv'}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="Recurrent and attention sequence models on PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cells = sub.add_parser("cells", help="list the registered recurrent cells with their parameter counts")
    cells.add_argument("--input-size", type=_positive_int, default=128, help="input features I (default: 128)")
    cells.add_argument("--hidden-size", type=_positive_int, default=256, help="hidden units H (default: 256)")
    cells.set_defaults(func=_cmd_cells)

    from .tasks import TASKS

    train = sub.add_parser(
        "train",
        help="train a recipe (resumes an interrupted run in the same folder)",
        description="Train a recipe. Settings come from the recipe's defaults, then --config, then key=value "
        "overrides; unknown keys are an error that lists the valid ones.",
    )
    train.add_argument("task", choices=list(TASKS), help="the recipe")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=5 cell=gru")
    train.add_argument("--config", help="YAML config file (e.g. configs/g2p.yaml)")
    train.add_argument("--run-dir", help="output folder (default: runs/TASK)")
    train.add_argument("--restart", action="store_true", help="start from scratch even if the run folder has a checkpoint")
    train.set_defaults(func=_cmd_train)
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
    try:
        return args.func(args)
    except SeqlabError as err:
        print(f"seqlab: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
