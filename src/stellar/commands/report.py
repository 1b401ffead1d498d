"""``stellar report RUN… [--format md|csv|latex|html] [--by split|category]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="leaderboard tables from one or more run directories")
    r.add_argument("runs", nargs="+", help="run directories; RUN=NAME overrides the method name")
    r.add_argument("--format", default="md", choices=["md", "csv", "latex", "html"])
    r.add_argument("--by", default=None, choices=["split", "category"], help="one table per prompt kind or per category")
    r.add_argument("--out", type=Path, default=None, help="write to a file instead of stdout")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from stellar.fileio import atomic_write_text
    from stellar.report.leaderboard import leaderboard, load_run, render

    from stellar.commands._common import check_run_files

    runs = []
    for spec in args.runs:
        path, _, name = spec.partition("=")
        check_run_files(path, need=("run.json", "summary.json", "per_image.parquet"))
        runs.append(load_run(path, name or None))
    text = render(leaderboard(runs, by=args.by), args.format)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
