"""The ``stellar`` command.

Each command group lives in its own module under :mod:`stellar.commands` exposing
``register(subparsers)``; this file only assembles them, so adding a group is one module plus one
line in ``_GROUPS``. User errors (:class:`~stellar.errors.StellarError`) are printed without a
traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stellar import __version__
from stellar.errors import StellarError

#: Command groups, in the order ``stellar --help`` lists them.
_GROUPS = (
    "stellar.commands.dataset",
    "stellar.commands.jobs",
    "stellar.commands.generated",
    "stellar.commands.demo",
    "stellar.commands.models",
    "stellar.commands.faces",
    "stellar.commands.evaluate",
    "stellar.commands.report",
    "stellar.commands.generate",
    "stellar.commands.train",
    "stellar.commands.prompts",
    "stellar.commands.study",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stellar",
        description="Stellar-Bench: evaluate human-centric personalized text-to-image methods (Stellar, arXiv 2312.06116).",
    )
    parser.add_argument("--version", action="version", version=f"stellar-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _GROUPS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StellarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`stellar jobs export | head`): stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
