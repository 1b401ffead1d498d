"""``stellar study create | serve | raters add|list | export | status`` — a blinded human study."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("study", help="create, run and export a blinded side-by-side human study")
    ss = s.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    ss.required = True

    c = ss.add_parser("create", help="sample the study's items from run directories and write STUDY/study.json")
    c.add_argument("--dataset", required=True, type=Path, help="the dataset the runs were evaluated on")
    c.add_argument("--runs", required=True, nargs="+", help="run directories (RUN=NAME to rename); at least two")
    c.add_argument("--out", required=True, type=Path, help="study folder (study.json, later judgements.db)")
    c.add_argument("--pairs", type=int, default=600, help="number of (job, run pair) items (default 600)")
    c.add_argument("--aspects", default=None, help="comma-separated aspects (default overall,identity,attributes,context,quality; also relations)")
    c.add_argument("--question", action="append", default=[], metavar="ASPECT=TEXT", help="question text of a custom aspect (repeatable)")
    c.add_argument("--raters-per-pair", type=int, default=3, help="distinct raters per pair (default 3)")
    c.add_argument("--gold", type=float, default=0.05, help="fraction of gold attention-check items (default 0.05; 0 = none)")
    c.add_argument("--repeat", type=float, default=0.05, help="fraction of pairs shown twice to the same raters (default 0.05)")
    c.add_argument("--repeat-gap", type=int, default=5, help="answers between a pair and its repeat (default 5)")
    c.add_argument("--gold-threshold", type=float, default=0.8, help="raters below this gold accuracy are flagged (default 0.8)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_create)

    v = ss.add_parser("serve", help="run the local web app (rater page /, admin page /admin)")
    v.add_argument("study", type=Path)
    v.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--links-only", action="store_true", help="raters must use a personal link (`stellar study raters add`)")
    v.add_argument("--lease-minutes", type=float, default=30.0, help="an idle rater's pending pair is given to another rater after this (default 30)")
    v.add_argument("--no-verify", action="store_true", help="skip the sha256 check of every image at start")
    v.set_defaults(func=cmd_serve)

    r = ss.add_parser("raters", help="personal rater links")
    rs = r.add_subparsers(dest="raters_command", metavar="ACTION")
    rs.required = True
    ra = rs.add_parser("add", help="register raters and print their personal links (the token is shown once)")
    ra.add_argument("study", type=Path)
    ra.add_argument("names", nargs="+")
    ra.add_argument("--url", default="http://127.0.0.1:8000", help="base URL the raters will open")
    ra.set_defaults(func=cmd_raters_add)
    rl = rs.add_parser("list", help="list the raters")
    rl.add_argument("study", type=Path)
    rl.set_defaults(func=cmd_raters_list)

    e = ss.add_parser("export", help="the judgements as the JSONL of `stellar agreement`")
    e.add_argument("study", type=Path)
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--drop-flagged", action="store_true", help="leave out raters below the gold threshold")
    e.add_argument("--gold-threshold", type=float, default=None, help="override the study's threshold")
    e.add_argument("--no-gold", action="store_true", help="leave out the attention-check records")
    e.add_argument("--no-repeats", action="store_true", help="leave out the planned repeats")
    e.set_defaults(func=cmd_export)

    t = ss.add_parser("status", help="progress per rater and aspect, gold accuracy, flags")
    t.add_argument("study", type=Path)
    t.add_argument("--gold-threshold", type=float, default=None)
    t.set_defaults(func=cmd_status)


def _store(study: Path):
    from stellar.study.manifest import StudyError
    from stellar.study.store import open_store

    if not (Path(study) / "study.json").is_file():
        raise StudyError(f"{study}: no study.json here", fix_hint="create the study with `stellar study create`")
    return open_store(study)


def _questions(specs: list[str]) -> dict[str, str]:
    from stellar.study.manifest import StudyError

    out = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise StudyError(f"--question {spec!r}: use ASPECT='question text'")
        out[name.strip()] = text.strip()
    return out


def cmd_create(args: argparse.Namespace) -> int:
    from stellar.study.manifest import create_study

    m = create_study(args.dataset, args.runs, args.out, pairs=args.pairs, aspects=args.aspects, questions=_questions(args.question),
                     raters_per_pair=args.raters_per_pair, gold=args.gold, repeat=args.repeat, repeat_gap=args.repeat_gap,
                     gold_threshold=args.gold_threshold, seed=args.seed, progress=not args.quiet)  # fmt: skip
    kinds: dict[str, int] = {}
    types: dict[str, int] = {}
    for it in m.items:
        types[it["type"]] = types.get(it["type"], 0) + 1
        if it["type"] == "pair":
            kinds[it["kind"]] = kinds.get(it["kind"], 0) + 1
    runs = ", ".join(r["name"] for r in m.data["runs"])
    print(f"wrote {m.path}: {types.get('pair', 0)} pairs ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) of runs {runs}, "
          f"{types.get('repeat', 0)} repeats, {types.get('gold', 0)} gold items, {len(m.images)} images; aspects {', '.join(m.aspect_ids)}")  # fmt: skip
    print(f"next: stellar study serve {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from stellar.study.app import serve

    serve(args.study, host=args.host, port=args.port, open_registration=not args.links_only, lease_s=args.lease_minutes * 60, verify=not args.no_verify)
    return 0


def cmd_raters_add(args: argparse.Namespace) -> int:
    from stellar.study.store import RequestError
    from stellar.study.manifest import StudyError

    store = _store(args.study)
    for name in args.names:
        try:
            token = store.add_rater(name, "link")
        except RequestError as exc:
            raise StudyError(f"{args.study}: {exc.message}") from None
        print(f"{name}\t{args.url.rstrip('/')}/#token={token}")
    return 0


def cmd_raters_list(args: argparse.Namespace) -> int:
    import datetime as dt

    for rater, kind, created in _store(args.study).raters():
        print(f"{rater}\t{'personal link' if kind == 'link' else 'signed in by id'}\t{dt.datetime.fromtimestamp(created, dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from stellar.study.export import export_judgements

    n = export_judgements(_store(args.study), args.out, drop_flagged=args.drop_flagged, gold=not args.no_gold, repeats=not args.no_repeats, gold_threshold=args.gold_threshold)
    print(f"wrote {args.out}: {n} judgement records")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from stellar.study.export import status_text

    print(status_text(_store(args.study), args.gold_threshold), end="")
    return 0
