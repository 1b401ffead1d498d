"""``stellar dataset check | build | import``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stellar.commands._common import print_json, print_problems
from stellar.data.problems import count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="check, build or import a Stellar-layout dataset")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    dsub.required = True

    c = dsub.add_parser("check", help="validate a dataset and print a summary and every problem")
    c.add_argument("root", type=Path, help="dataset folder (the one holding 000/, 001/, ...)")
    c.add_argument("--no-decode", action="store_true", help="skip decoding photos and masks (faster, less thorough)")
    c.add_argument("--json", action="store_true", help="print the summary and problems as JSON")
    c.set_defaults(func=cmd_check)

    b = dsub.add_parser(
        "build",
        help="build the official Stellar layout from CelebAMask-HQ (or CelebA-Dialog) + the gated Stellar files",
    )
    b.add_argument("--celebahq", type=Path, required=True, help="CelebAMask-HQ or CelebA-Dialog (HQ) folder (read only)")
    b.add_argument(
        "--stellar-files",
        type=Path,
        required=True,
        help="folder with the gated Stellar files: celebahq_ids.txt, stellar_t.json, stellar_h.json, objects.txt",
    )
    b.add_argument("--celeba-identity", type=Path, default=None, help="CelebA identity_CelebA.txt (original CelebAMask-HQ layout only)")
    b.add_argument("--out", type=Path, required=True, help="output folder (the new STELLAR/)")
    b.add_argument("--link", action="store_true", help="hard-link photos instead of copying them")
    b.set_defaults(func=cmd_build)

    i = dsub.add_parser("import", help="bring your own subjects: folders of photos + prompts -> a Stellar-layout dataset")
    i.add_argument("--subjects", type=Path, required=True, help="folder with one sub-folder of photos per person")
    i.add_argument("--prompts", type=Path, required=True, help="prompts file: JSON, CSV or one prompt per line, {} = the subject")
    i.add_argument("--attributes", type=Path, default=None, help="optional CSV: subject,photo,<CelebA attribute>... (±1)")
    i.add_argument("--out", type=Path, required=True, help="output folder for the new dataset")
    i.add_argument("--split", default="test", choices=["test", "val"], help="split of the imported subjects (default test)")
    i.add_argument("--link", action="store_true", help="hard-link photos instead of re-encoding them")
    i.set_defaults(func=cmd_import)


def cmd_check(args: argparse.Namespace) -> int:
    from stellar.data.dataset import StellarDataset

    t0 = time.perf_counter()
    ds = StellarDataset(args.root, strict=False)
    problems = ds.check(decode_images=not args.no_decode, progress=not args.json)
    summary = ds.summary()
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print_json({"summary": summary, "problems": [p.to_dict() for p in problems]})
    else:
        _print_summary(summary)
        print_problems(problems)
    return 1 if count(problems, "error") else 0


def _print_summary(s: dict) -> None:
    print(f"dataset {s['root']}")
    print(f"  subjects {s['subjects']}, photos {s['photos']}, prompts T {s['prompts_T']}, H {s['prompts_H']}")
    for split, v in s["splits"].items():
        print(f"  {split:5s}: {v['subjects']} subjects, jobs T {v['jobs_T']}, H {v['jobs_H']}, total {v['jobs_T'] + v['jobs_H']}")
    print(f"  checked in {s['seconds']:.2f} s")


def cmd_build(args: argparse.Namespace) -> int:
    from stellar.data.build import build_dataset

    report = build_dataset(
        args.celebahq, args.stellar_files, args.out, celeba_identity=args.celeba_identity, link=args.link, progress=True
    )
    print(report)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from stellar.data.importer import import_subjects

    report = import_subjects(
        args.subjects, args.prompts, args.out, attributes_csv=args.attributes, split=args.split, link=args.link, progress=True
    )
    print(report)
    return 0
