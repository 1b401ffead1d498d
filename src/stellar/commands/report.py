"""``stellar report RUN… [--format md|csv|latex|html] [--by split|category] [--ci 0.95|none] [--bootstrap N] [--seed S] [--resample subject|job]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands.compare import add_bootstrap_options


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="leaderboard tables from one or more run directories")
    r.add_argument("runs", nargs="+", help="run directories; RUN=NAME overrides the method name")
    r.add_argument("--format", default="md", choices=["md", "csv", "latex", "html"])
    r.add_argument("--by", default=None, choices=["split", "category"], help="one table per prompt kind or per category")
    r.add_argument("--ci", default="0.95", help="show mean ± half-width of this bootstrap interval (default 0.95; 'none' hides it)")
    add_bootstrap_options(r)
    r.add_argument("--out", type=Path, default=None, help="write to a file instead of stdout (html: the report folder, default RUN/report/)")
    r.add_argument("--thumb-size", type=int, default=256, help="html: longest side of the gallery thumbnails in pixels (default 256)")
    r.add_argument("--max-gallery", type=int, default=None, help="html: at most N jobs in the gallery, failures first (default: all)")
    r.add_argument("--quiet", action="store_true", help="html: no progress bars")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from stellar.commands.compare import parse_ci
    from stellar.report.leaderboard import leaderboard, load_run, render

    from stellar.commands._common import check_run_files, write_text_output

    runs = []
    for spec in args.runs:
        path, _, name = spec.partition("=")
        check_run_files(path, need=("run.json", "summary.json", "per_image.parquet"))
        runs.append(load_run(path, name or None))
    if args.format == "html":
        return _html(args, runs)
    ci = parse_ci(args.ci, allow_none=True)
    text = render(leaderboard(runs, by=args.by, ci=ci, n_boot=args.bootstrap, seed=args.seed, resample=args.resample), args.format)
    write_text_output(text, args.out)
    return 0


def _html(args: argparse.Namespace, runs: list) -> int:
    """``--format html``: the browsable report folder (stellar.report.html), default ``RUN/report/``."""
    from stellar.report.html import build_html_report

    out = args.out if args.out is not None else runs[0].path / "report"
    from stellar.commands.compare import parse_ci

    report = build_html_report(
        runs, out, thumb_size=args.thumb_size, max_gallery=args.max_gallery, ci=parse_ci(args.ci, allow_none=True),
        n_boot=args.bootstrap, seed=args.seed, resample=args.resample, progress=not args.quiet,
    )  # fmt: skip
    for w in report.warnings:
        print(f"WARNING {w}")
    for m in report.missing_images[:20]:
        print(f"  {m}")
    if len(report.missing_images) > 20:
        print(f"  … {len(report.missing_images) - 20} more in {report.out / 'warnings.txt'}")
    print(f"wrote {report.index} ({report.n_gallery} jobs in the gallery, {report.thumbnails} thumbnails, {report.seconds:.1f} s)")
    return 0
