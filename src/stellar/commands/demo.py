"""``stellar demo``: the whole pipeline on the real-photo demo dataset, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build the demo dataset from public-domain photos, run the sanity methods, check, summarise")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default ./demo-out)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from stellar.demo import run_demo

    return run_demo(args.out)
