"""``stellar jobs export``: the benchmark's jobs, for any external method to run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stellar.commands._common import positive_int, split_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list the benchmark's jobs")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    jsub.required = True
    e = jsub.add_parser("export", help="one record per job (name, input photo, filled prompt, ...) as JSONL or CSV")
    e.add_argument("--dataset", type=Path, required=True, help="Stellar-layout dataset folder")
    e.add_argument("--split", default="test", choices=["test", "val", "all"], help="default: test")
    e.add_argument("--kinds", default="T,H", help="prompt kinds, comma separated: T, H or T,H (default)")
    e.add_argument("--seeds", type=positive_int, default=1, help="seeds per job; >1 adds -sK to names (default 1)")
    e.add_argument("--subject-token", default="a person", help="text that replaces {} in 'prompt' (default 'a person')")
    e.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])
    e.add_argument("--out", type=Path, default=None, help="output file (default: stdout)")
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from stellar.data.dataset import StellarDataset
    from stellar.data.export import job_records, write_records

    ds = StellarDataset(args.dataset)
    jobs = ds.jobs(args.split, split_list(args.kinds), args.seeds)
    records = job_records(jobs, args.subject_token)
    if args.out is None:
        write_records(records, sys.stdout, args.format)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        n = write_records(records, f, args.format)
    tmp.replace(args.out)
    print(f"wrote {n} jobs to {args.out}", file=sys.stderr)
    return 0
