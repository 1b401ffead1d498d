"""``stellar doctor [--for …]``: can each metric and face preset run now, and what fixes the rest.

One screen: a line per metric and per face preset — weights cached and verified
(:func:`stellar.models.registry.card_status`), pip extras installed, device found, fp16 possible —
each missing piece followed by the exact command that fixes it, then every fix once more as a
short list. Exit status 0 only when everything asked for is ready.

``stellar evaluate`` runs the same check (:func:`preflight`) before it opens any image and stops
with the same text. There, online, weights that are only missing are fetched by the run itself (as
before), so only what a download cannot fix stops it: a missing extra, a corrupt file, a device
that is not there, or — offline — missing weights. The default CLIP is the exception it always
was: when it is unavailable, CLIP-T/CLIP-I are skipped and the exclusion rule is reported as not
applied (say ``--clip none`` to silence the warning).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Sequence

from stellar.errors import StellarError
from stellar.models.requirements import Need, RunOptions, card_names, missing_extras, needs_for, preset_need, spec_card


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``stellar evaluate`` that decide which weights a run needs."""
    parser.add_argument("--faces", default=None, help="face preset: paper (default), arcface, offline")
    parser.add_argument("--clip", default="clip-vit-bigg-14-laion2b", help="CLIP card, hub id or folder; 'none' for no CLIP")
    parser.add_argument("--detector", default=None, help="GOA/RFS detector card or folder (default owlvit-large-patch14)")
    parser.add_argument("--relation-scorer", default=None, choices=["clip", "vqa"], help="RFS predicate scorer (default clip)")
    parser.add_argument("--scorer-option", action="append", default=[], metavar="KEY=VALUE", help="as for stellar evaluate")


def run_options(args: argparse.Namespace, preset: str | None = None) -> RunOptions:
    options = {}
    for item in getattr(args, "scorer_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StellarError(f"--scorer-option {item!r}: expected KEY=VALUE")
        options[key] = value
    return RunOptions(
        faces=getattr(args, "faces", None) or preset or "paper",
        clip=getattr(args, "clip", None) or "clip-vit-bigg-14-laion2b",
        detector=getattr(args, "detector", None),
        relation_scorer=getattr(args, "relation_scorer", None),
        scorer_options=options,
    )


def expand_for(text: str) -> tuple[tuple[str, ...], str | None]:
    """``--for`` text -> (metric names, face preset it implies or None). Words: ``paper`` (every metric
    the paper reports), ``all``, ``default`` (what ``stellar evaluate`` computes by default), metric
    names, and the face presets ``arcface`` / ``offline`` (= IPS, SIS, APS with that preset; ``paper``
    is the metric group — the paper face preset is the default anyway). Unknown words are refused."""
    import difflib

    from stellar.commands._common import split_list
    from stellar.commands.evaluate import PAPER_METRICS
    from stellar.engine.evaluate import DEFAULT_METRICS
    from stellar.metrics.base import METRICS
    from stellar.models.faces.analyzer import PRESETS

    metrics: list[str] = []
    preset = None
    for word in split_list(text):
        if word == "paper":
            group: Sequence[str] = PAPER_METRICS
        elif word == "all":
            group = tuple(METRICS)
        elif word == "default":
            group = DEFAULT_METRICS
        elif word in PRESETS:
            group, preset = ("ips", "sis", "aps"), word
        elif word in METRICS:
            group = (word,)
        else:
            known = ["paper", "all", "default", *[p for p in PRESETS if p != "paper"], *METRICS]
            close = difflib.get_close_matches(word, known, n=3)
            raise StellarError(
                f"--for {word!r}: not a metric, metric group or face preset"
                + (f"; did you mean {', '.join(close)}?" if close else "")
                + f"\n  fix: one or more of {', '.join(known)} (comma separated)"
            )
        metrics += [m for m in group if m not in metrics]
    if not metrics:
        raise StellarError("--for: give metrics (e.g. ips,clip_t), 'paper', 'all', 'default' or a face preset")
    return tuple(metrics), preset


# ------------------------------------------------------------------------------------ the check
@dataclass
class Line:
    """One row of the report: a metric or a face preset."""

    subject: str
    problems: list[str] = field(default_factory=list)
    fetch: list[str] = field(default_factory=list)  # cards to fetch
    fixes: list[str] = field(default_factory=list)  # other commands
    notes: list[str] = field(default_factory=list)
    blocking: bool = False

    @property
    def ready(self) -> bool:
        return not self.problems

    def commands(self) -> list[str]:
        return ([f"stellar models fetch {' '.join(self.fetch)}"] if self.fetch else []) + self.fixes


@dataclass
class Diagnosis:
    header: str
    lines: list[Line]
    offline: bool = False

    @property
    def ready(self) -> bool:
        return all(line.ready for line in self.lines)

    def fixes(self) -> list[str]:
        """Every fix once, the fetches merged into one command."""
        fetch = list(dict.fromkeys(c for line in self.lines for c in line.fetch))
        other = list(dict.fromkeys(f for line in self.lines for f in line.fixes))
        return ([f"stellar models fetch {' '.join(fetch)}"] if fetch else []) + other

    def render(self) -> str:
        width = max([len(line.subject) for line in self.lines] + [14])
        out = [self.header, ""]
        for line in self.lines:
            state = "ready" if line.ready else "NOT READY"
            detail = "; ".join(line.problems) if line.problems else "weights: " + (", ".join(dict.fromkeys(line.notes)) or "none needed")
            out.append(f"{line.subject.ljust(width)}  {state:9s}  {detail}")
            out += [f"{'':{width}}  {'':9s}  fix: {c}" for c in line.commands()]
        ready = sum(line.ready for line in self.lines)
        out += ["", f"{ready} of {len(self.lines)} ready"]
        fixes = self.fixes()
        if fixes:
            out += ["to fix everything:"] + [f"  {f}" for f in fixes]
            if self.offline and any(line.fetch for line in self.lines):
                out.append(
                    "  (offline here: run the fetch where the network is reachable and copy $STELLAR_HOME/models/<card> "
                    "here, or pass --weights CARD=PATH)"
                )
        return "\n".join(out)


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def _weights_problems(need: Need, line: Line, offline: bool, allow_fetch: bool) -> None:
    from pathlib import Path

    from stellar.models import registry

    cards: list[str] = []
    for spec in need.cards:
        card = spec_card(spec)
        if card is not None:
            cards += [n for n in card_names([card.name]) if n not in cards]
        elif Path(spec).expanduser().exists():
            line.notes.append(f"{spec}: local")
        elif offline:
            line.problems.append(f"{spec}: neither a model card nor a local folder, and offline")
            line.fixes.append(f"pass a local folder instead of {spec}, or a card (stellar models list)")
            line.blocking = True
        else:
            line.notes.append(f"{spec}: hub id without a card (loaded by from_pretrained, not checked)")
    missing = []
    for name in cards:
        status = registry.card_status(name)
        if status.state == "ready":
            line.notes.append(f"{name} ({'installed package' if 'installed' in status.note else 'verified'})")
            continue
        if status.state == "corrupt":
            line.problems.append(f"{name}: sha256 mismatch ({', '.join(status.corrupt)})")
            line.fetch.append(name)
            line.blocking = True
            continue
        todo = [p.size for p in registry.fetch_plan([name]) if p.state == "to fetch"]
        size = _size(sum(todo)) if todo and all(s is not None for s in todo) else "size unknown"
        what = f"{name} ({'partly downloaded, ' if status.state == 'partial' else ''}{size})"
        if allow_fetch and not offline:
            line.notes.append(f"{what} fetched at start")
            continue
        missing.append(what)
        line.fetch.append(name)
        line.blocking = line.blocking or offline
    if missing:
        line.problems.append("weights not downloaded: " + ", ".join(missing))


def _extras_problems(need: Need, line: Line) -> None:
    for extra, modules in missing_extras(need.extras):
        line.problems.append(f"extra '{extra}' not installed (no module {', '.join(modules)})")
        line.fixes.append(f"pip install 'stellar-bench[{extra}]'")
        line.blocking = True


def diagnose(metrics: Sequence[str], options: RunOptions, device: str = "auto", allow_fetch: bool = False, presets: Sequence[str] = ()) -> Diagnosis:
    """Check every metric (and face preset) under ``options``; nothing is downloaded or loaded."""
    from stellar.device import resolve_device
    from stellar.models import registry

    offline = registry.is_offline()
    resolved = resolve_device(device)
    fp16 = "yes" if resolved.startswith("cuda") else f"no ({resolved}: fp32)"
    header = f"stellar doctor — STELLAR_HOME={registry.stellar_home()}  offline: {'yes' if offline else 'no'}  device: {resolved}  fp16: {fp16}"
    device_problem = None
    if resolved.startswith("cuda"):
        try:
            import torch

            if not torch.cuda.is_available():
                device_problem = f"device {resolved} asked for, but torch sees no CUDA GPU"
        except ImportError:
            device_problem = f"device {resolved} asked for, but torch is not installed"
    lines = []
    for need in [*(preset_need(p) for p in presets), *needs_for(metrics, options)]:
        line = Line(need.subject)
        _extras_problems(need, line)
        _weights_problems(need, line, offline, allow_fetch)
        if device_problem:
            line.problems.append(device_problem)
            line.fixes.append("use --device cpu (or --device auto)")
            line.blocking = True
        lines.append(line)
    return Diagnosis(header, lines, offline)


def preflight(metrics: Sequence[str], args: argparse.Namespace) -> Diagnosis:
    """The check ``stellar evaluate`` runs before opening any image; raises :class:`StellarError` with the
    doctor's text when something a download cannot fix (or, offline, missing weights) stops the run."""
    options = run_options(args)
    clip_optional = options.clip == "clip-vit-bigg-14-laion2b"  # the default CLIP is skipped with a warning when unavailable
    checked = RunOptions(options.faces, "none" if clip_optional else options.clip, options.detector, options.relation_scorer, options.scorer_options)
    clip_metrics = {"clip_t", "clip_i"}
    wanted = [m for m in metrics if not (clip_optional and m in clip_metrics)]
    diagnosis = diagnose(wanted, checked, device=getattr(args, "device", "auto") or "auto", allow_fetch=True)
    if any(line.blocking for line in diagnosis.lines):
        raise StellarError(
            "stellar evaluate: not everything this run needs is ready (nothing was evaluated)\n\n" + diagnosis.render()
        )
    return diagnosis


def register(sub: argparse._SubParsersAction) -> None:
    from stellar.commands.models import add_weights_argument

    d = sub.add_parser("doctor", help="can each metric and face preset run now? and the command that fixes what is missing")
    d.add_argument("--for", dest="for_", default="default", metavar="METRICS|PRESET",
                   help="paper, all, default (default), a face preset (offline, arcface) or comma-separated metric names")  # fmt: skip
    add_run_options(d)
    d.add_argument("--device", default="auto")
    add_weights_argument(d)
    d.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from stellar.commands.models import apply_weights_overrides

    apply_weights_overrides(args)
    metrics, preset = expand_for(args.for_)
    options = run_options(args, preset)
    from stellar.metrics.base import METRICS

    uses_faces = preset is not None or args.faces is not None or any("faces" in METRICS[m].models for m in metrics)
    diagnosis = diagnose(metrics, options, device=args.device, presets=tuple(f.strip() for f in options.faces.split(",") if f.strip()) if uses_faces else ())
    print(diagnosis.render())
    return 0 if diagnosis.ready else 1
