"""``stellar agreement --judgments FILE --runs RUN… [--aspects …] [--format md|csv|latex]`` (DESIGN §6.13)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands._common import non_negative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("agreement", help="agreement of the metrics with human judgements (τ-like, tie-calibrated accuracy, τ-b, Krippendorff's α)")
    a.add_argument("--judgments", type=Path, required=True, help="judgments JSONL file (format in the README: 'Agreement with human judgement')")
    a.add_argument("--runs", nargs="+", required=True, help="run directories the judged images come from; RUN=NAME names a run as in the judgments")
    a.add_argument("--aspects", default=None, help="comma-separated aspects to analyse (default: every aspect in the file)")
    a.add_argument("--metrics", default=None, help="comma-separated metrics (default: every per-image metric all runs have, and aps_image)")
    a.add_argument("--format", default="md", choices=["md", "csv", "latex"])
    a.add_argument("--ci", default="0.95", help="bootstrap interval level (default 0.95)")
    a.add_argument("--bootstrap", type=positive_int, default=1000, metavar="N", help="bootstrap replicates over judged items (default 1000)")
    a.add_argument("--seed", type=non_negative_int, default=0, help="seed of the resampling (same seed → same table)")
    a.add_argument("--out", type=Path, default=None, help="write to a file instead of stdout")
    a.set_defaults(func=cmd_agreement)


def cmd_agreement(args: argparse.Namespace) -> int:
    from stellar.commands._common import split_list, write_text_output
    from stellar.commands.compare import parse_ci
    from stellar.report.agreement import agreement, read_judgments
    from stellar.report.leaderboard import load_run

    judgments = read_judgments(args.judgments)
    runs = []
    for spec in args.runs:
        path, _, name = spec.partition("=")
        runs.append(load_run(path, name or None))
    result = agreement(
        judgments,
        runs,
        aspects=split_list(args.aspects) or None,
        metrics=split_list(args.metrics) or None,
        n_boot=args.bootstrap,
        seed=args.seed,
        ci=parse_ci(args.ci, allow_none=False),
    )
    text = result.render(args.format)
    write_text_output(text, args.out)
    return 0
