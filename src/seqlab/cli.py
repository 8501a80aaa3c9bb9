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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
