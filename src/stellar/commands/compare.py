"""``stellar compare RUN_A RUN_B [RUN_C…] [--metrics …] [--format md|csv|json]`` (DESIGN §6.12)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands._common import non_negative_int, positive_int


def add_bootstrap_options(p: argparse.ArgumentParser) -> None:
    """``--bootstrap N --seed S --resample subject|job``, shared by report, compare and agreement."""
    p.add_argument("--bootstrap", type=positive_int, default=1000, metavar="N", help="bootstrap replicates (default 1000)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the resampling (same seed → same table)")
    p.add_argument("--resample", default="subject", choices=["subject", "job"], help="resampling unit (default: subject, a cluster bootstrap)")


def parse_ci(text: str, *, allow_none: bool) -> float | None:
    from stellar.errors import StellarError

    if allow_none and text.lower() == "none":
        return None
    try:
        level = float(text)
    except ValueError:
        raise StellarError(f"--ci {text!r}: a level such as 0.95{' or none' if allow_none else ''}") from None
    if not 0.0 < level < 1.0:
        raise StellarError(f"--ci {text!r}: the level must lie between 0 and 1, e.g. 0.95")
    return level


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="paired comparison of runs on the same jobs: differences, CIs, p-values, probability of being best")
    c.add_argument("runs", nargs="+", help="two or more run directories; RUN=NAME overrides the method name")
    c.add_argument("--metrics", default=None, help="comma-separated metrics (default: every metric all runs have; 'aps' included)")
    c.add_argument("--format", default="md", choices=["md", "csv", "json"])
    c.add_argument("--ci", default="0.95", help="interval level; also the significance level 1 − ci of the verdicts (default 0.95)")
    add_bootstrap_options(c)
    c.add_argument("--permutations", type=positive_int, default=10000, help="Monte-Carlo sign flips when there are more than 16 units (default 10000)")
    c.add_argument("--out", type=Path, default=None, help="write to a file instead of stdout")
    c.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from stellar.commands._common import split_list, write_text_output
    from stellar.errors import StellarError
    from stellar.report.leaderboard import load_run
    from stellar.report.stats import compare_runs

    if len(args.runs) < 2:
        raise StellarError("compare needs at least two run directories")
    runs = []
    for spec in args.runs:
        path, _, name = spec.partition("=")
        runs.append(load_run(path, name or None))
    result = compare_runs(
        runs,
        split_list(args.metrics) or None,
        n_boot=args.bootstrap,
        seed=args.seed,
        ci=parse_ci(args.ci, allow_none=False),
        resample=args.resample,
        permutations=args.permutations,
    )
    text = result.render(args.format)
    write_text_output(text, args.out)
    return 0
