"""The ``beamattn`` command line. Subcommands are added by later modules."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beamattn",
        description="Attention for wireless beam selection, on one shared attention core.",
    )
    parser.add_argument("--version", action="version", version=f"beamattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the attention-core demo: softmax vs sparsemax vs top-k, with plots",
                          description="Retrieval among distractors and score scaling, on beamattn.core. "
                                      "Writes demo.json and figures/ under --out.")
    demo.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
    demo.add_argument("--seed", type=_positive_int, default=0, help="seed that fixes every number (default: 0)")
    demo.add_argument("--trials", type=_positive_int, default=400, help="random trials per point (default: 400)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, seed=args.seed, trials=args.trials)
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
