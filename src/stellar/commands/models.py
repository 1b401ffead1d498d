"""``stellar models list | fetch | verify | where``: the model cards and the weights cache (DESIGN §4).

Other command groups accept ``--weights NAME=PATH`` the same way: call
:func:`add_weights_argument` on their parser and :func:`apply_weights_overrides` first thing in
their handler; the override then holds for every :func:`stellar.models.registry.resolve_file` of
that process. PATH is the weights file of the card, or a folder holding its files.
"""

from __future__ import annotations

import argparse
import re

from stellar.commands._common import print_json
from stellar.errors import StellarError


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--weights NAME=PATH`` option (local weights for model card NAME)."""
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use local weights for model card NAME: its file, or a folder holding its files (repeatable)",
    )


def parse_weights_override(text: str) -> tuple[str, str]:
    """``"mtcnn=/w/mtcnn"`` -> ``("mtcnn", "/w/mtcnn")``; a malformed value is a :class:`StellarError`."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise StellarError(f"--weights {text!r}: expected NAME=PATH, e.g. --weights mtcnn=/data/weights/mtcnn")
    return name.strip(), path.strip()


def apply_weights_overrides(args: argparse.Namespace) -> None:
    """Register every ``--weights NAME=PATH`` of ``args`` with the registry (validates names and paths)."""
    from stellar.models import registry

    for text in getattr(args, "weights", None) or []:
        registry.set_local_override(*parse_weights_override(text))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model cards: list, fetch, verify and locate pretrained weights")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True

    c = msub.add_parser("list", help="every model card: task, sources, files, sha256, licence, cached")
    c.add_argument("--task", default=None, help="only cards of this task (e.g. face-detection, clip)")
    c.add_argument("--json", action="store_true", help="full card data as JSON")
    c.set_defaults(func=cmd_list)

    c = msub.add_parser("fetch", help="download (or copy) and verify the weights of model cards or of metrics (--for)")
    c.add_argument("names", nargs="*", metavar="NAME")
    c.add_argument("--for", dest="for_", default=None, metavar="METRICS|PRESET",
                   help="the cards these metrics need: paper, all, default, a face preset (offline, arcface) or metric names")  # fmt: skip
    c.add_argument("--dry-run", action="store_true", help="print the plan (cards, files, sizes, licences) and stop")
    from stellar.commands.doctor import add_run_options

    add_run_options(c)
    add_weights_argument(c)
    c.set_defaults(func=cmd_fetch)

    c = msub.add_parser("verify", help="re-hash cached/local weights (default: every card with cached files)")
    c.add_argument("names", nargs="*", metavar="NAME")
    add_weights_argument(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_verify)

    c = msub.add_parser("where", help="print the cache folder of a card and the path of each of its files")
    c.add_argument("name", metavar="NAME")
    add_weights_argument(c)
    c.set_defaults(func=cmd_where)


def _sha_column(summary: dict) -> str:
    files = summary["files"]
    if not files:
        return "recorded on first download"
    pinned = [f for f in files if f["trust"] == "pinned"]
    if len(files) == 1 and pinned:
        return pinned[0]["sha256"][:12]
    if len(pinned) == len(files):
        return f"{len(files)} pinned"
    if not pinned:
        return "recorded on first download"
    return f"{len(pinned)} pinned, {len(files) - len(pinned)} recorded on first download"


def cmd_list(args: argparse.Namespace) -> int:
    from stellar.models import registry

    cards = registry.list_cards(args.task)
    if args.task and not cards:
        tasks = sorted({c.task for c in registry.CARDS})
        raise StellarError(f"no model card has task '{args.task}'\n  fix: one of {', '.join(tasks)}")
    summaries = [registry.card_summary(c) for c in cards]
    if args.json:
        print_json(summaries)
        return 0
    rows = [("NAME", "TASK", "SOURCES", "FILES", "SHA256", "LICENCE", "CACHED")]
    for s in summaries:
        n_files = str(len(s["files"])) if not s["discovered_files"] or s["files"] else "repo"
        rows.append(
            (
                s["name"],
                s["task"],
                ",".join(dict.fromkeys(src.split()[0] for src in s["sources"])),
                n_files,
                _sha_column(s),
                re.split(r"[;:(]", s["licence"])[0].strip()[:40],
                "yes" if s["cached"] else "no",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"\ncache: {registry.stellar_home() / 'models'}   offline: {'yes' if registry.is_offline() else 'no'}")
    print("details: stellar models list --json; sources and licences are full there")
    return 0


def fetch_targets(args: argparse.Namespace) -> list[str]:
    """The card names of ``stellar models fetch``: the NAMEs plus what ``--for`` needs (with ``requires``)."""
    from stellar.models import registry
    from stellar.models.requirements import card_names, needs_for, preset_need

    names = [registry.get_card(n).name for n in args.names]  # every name checked before any download
    if args.for_:
        from stellar.commands.doctor import expand_for, run_options

        metrics, preset = expand_for(args.for_)
        options = run_options(args, preset)
        specs = [c for need in [preset_need(options.faces), *needs_for(metrics, options)] for c in need.cards]
        if preset is None and not any(m in ("ips", "sis", "aps") for m in metrics):
            specs = [c for need in needs_for(metrics, options) for c in need.cards]
        names += card_names(specs)
    else:
        names = card_names(names)
    if not names:
        raise StellarError("stellar models fetch: give card NAMEs or --for METRICS|PRESET (e.g. --for paper)")
    return list(dict.fromkeys(names))


def print_plan(names: list[str]) -> tuple[int, int]:
    """Print what a fetch of ``names`` transfers; returns (bytes known to download, files of unknown size)."""
    from stellar.commands.doctor import _size
    from stellar.models import registry

    plan = registry.fetch_plan(names, remote=True)
    width = max(len(p.file) for p in plan)
    for name in names:
        print(f"{name} — licence: {registry.get_card(name).licence}")
        for p in (p for p in plan if p.card == name):
            label = "(every file of the repo, listed at fetch)" if p.file == "*" else p.file
            print(f"  {label.ljust(width)}  {_size(p.size):>12s}  {p.state:8s}  {p.source}")
    todo = [p for p in plan if p.state == "to fetch"]
    known = sum(p.size or 0 for p in todo)
    unknown = sum(p.size is None for p in todo)
    cards = len({p.card for p in todo})
    print(
        f"\ntotal to download: {_size(known)} in {len(todo)} file(s) of {cards} card(s)"
        + (f" (+ {unknown} file(s) of unknown size)" if unknown else "")
        + f"; already here: {len(plan) - len(todo)} file(s)"
    )
    return known, unknown


def cmd_fetch(args: argparse.Namespace) -> int:
    from stellar.models import registry

    apply_weights_overrides(args)
    names = fetch_targets(args)
    print_plan(names)
    if args.dry_run:
        return 0
    failed = 0
    for name in names:
        try:
            paths = registry.fetch(name)
        except StellarError as exc:
            failed += 1
            print(f"error: {exc}")
            continue
        print(f"{name}: {len(paths)} file(s) ready in {registry.where(name)}")
        for f, path in paths.items():
            print(f"  {f} -> {path}")
    if failed:
        print(f"{failed} of {len(names)} card(s) failed; run the same command again to continue (finished files are kept)")
    return 1 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from stellar.models import registry

    apply_weights_overrides(args)
    if args.names:
        names = [registry.get_card(n).name for n in args.names]
    else:  # only cards with something cached or local: the rest are simply not fetched yet
        names = [c.name for c in registry.CARDS if _has_any(registry, c)]
    results = registry.verify(names)
    revisions = {n: registry.revision_status(n) for n in dict.fromkeys(r.card for r in results)}
    if args.json:
        print_json(
            [{**r.__dict__, "path": str(r.path) if r.path else None, "ok": r.ok} for r in results]
            + [{"card": n, "repo": repo, "revision": rev, "pinning": how} for n, revs in revisions.items() for repo, rev, how in revs]
        )
    else:
        for r in results:
            print(r)
        for n, revs in revisions.items():
            for repo, rev, how in revs:
                print(f"{n}: revision of {repo}: {rev or '-'} ({how})")
        if not args.names:
            print(f"verified {len(names)} card(s) with cached or local files; others are not fetched (stellar models list)")
    bad = [r for r in results if not r.ok]
    if not args.json:
        print(f"{len(results) - len(bad)} ok, {len(bad)} problem(s)")
    return 1 if bad else 0


def _has_any(registry, card) -> bool:
    folder = registry.where(card.name)
    if folder.is_dir() and any(p.is_file() and not p.name.startswith(".") and p.name != registry.HASHES_FILE for p in folder.rglob("*")):
        return True
    return registry.local_override(card.name) is not None or registry._local_folder(card) is not None


def cmd_where(args: argparse.Namespace) -> int:
    from stellar.models import registry

    apply_weights_overrides(args)
    card = registry.get_card(args.name)
    print(registry.where(card.name))
    for f in registry.card_summary(card)["files"]:
        if f["local"]:
            print(f"  {f['name']}: {f['local']} (local)")
        elif f["cached"]:
            print(f"  {f['name']}: {registry.where(card.name) / f['name']}")
        else:
            print(f"  {f['name']}: not cached (stellar models fetch {card.name})")
    if card.discovered and not registry.card_summary(card)["files"]:
        print(f"  files are listed from the hub at first fetch (stellar models fetch {card.name})")
    return 0
