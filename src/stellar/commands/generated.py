"""``stellar generated check``: match a folder of generated images to the jobs and report."""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands._common import positive_int, print_json, print_problems, split_list
from stellar.data.problems import count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generated", help="inspect a generated-image set")
    gsub = p.add_subparsers(dest="generated_command", metavar="ACTION")
    gsub.required = True
    c = gsub.add_parser("check", help="match images to jobs; report unmatched, missing, duplicate, undecodable")
    c.add_argument("--dataset", type=Path, required=True)
    c.add_argument("--generated", type=Path, required=True, help="flat folder of NAME.png (+ NAME.json sidecars)")
    c.add_argument("--split", default="test", choices=["test", "val", "all"])
    c.add_argument("--kinds", default="T,H")
    c.add_argument("--seeds", type=positive_int, default=None, help="seeds per job (default: inferred from -sK names)")
    c.add_argument("--partial", action="store_true", help="jobs without an image are warnings, not errors")
    c.add_argument("--no-decode", action="store_true", help="do not decode every image")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from stellar.data.dataset import StellarDataset
    from stellar.data.generated import GeneratedSet

    ds = StellarDataset(args.dataset)
    gs = GeneratedSet(args.generated, ds, split=args.split, kinds=split_list(args.kinds), seeds=args.seeds)
    problems = gs.problems(decode_images=not args.no_decode, allow_missing=args.partial, progress=not args.json)
    summary = gs.summary()
    if args.json:
        print_json({"summary": summary, "problems": [p.to_dict() for p in problems]})
    else:
        print(f"generated set {summary['folder']}")
        print(f"matched {summary['matched']}/{summary['expected']}")
        print(
            f"  unmatched files {summary['unmatched']}, jobs without image {summary['missing']}, "
            f"duplicated jobs {summary['duplicates']}, seeds {summary['seeds']}"
        )
        print_problems(problems)
    return 1 if count(problems, "error") else 0
