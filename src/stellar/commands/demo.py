"""``stellar demo``: the whole pipeline on the real-photo demo dataset, offline once the sdist is cached."""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands._common import add_threads_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build the demo dataset from public-domain photos, run the sanity methods, check, summarise")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default ./demo-out)")
    p.add_argument("--size", type=int, default=512, help="side of the generated square images (default 512)")
    p.add_argument("--offline", action="store_true", help="never fetch the face_recognition sdist (it must be cached)")
    p.add_argument(
        "--skip-face-recognition",
        action="store_true",
        help="leave out the Obama/Biden photos of the face_recognition sdist (no download; 4 subjects)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-evaluate", action="store_true", help="stop after the checks (no face models)")
    add_threads_option(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from stellar.demo import run_demo

    return run_demo(
        args.out,
        size=args.size,
        offline=True if args.offline else None,
        include_face_recognition=not args.skip_face_recognition,
        progress=not args.quiet,
        evaluate=not args.no_evaluate,
    )
