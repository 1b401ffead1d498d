"""The plan of a run (DESIGN §7.2): which scorers, which shared models, which features are cached,
which finalisers — built from the requested metrics before anything runs, printed at start
(``stellar evaluate --plan`` prints it and exits).

Sharing: one face analyzer pass per image serves IPS, SIS and APS (the face scorer); one CLIP serves
CLIP-T, CLIP-I, the exclusion rule and — when the CLI passes the loaded model — the RFS relation
scorer; one detector pass per image serves GOA and RFS (the context scorer). Every scorer is seen
through the phased protocol (:func:`stellar.engine.scorers.phased`), so plug-ins written with only a
``score`` method run unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from stellar.engine.builtin_scorers import CLIP_METRICS, FACE_METRICS, ClipScorer, FaceScorer, MultiFaceScorer
from stellar.engine.finalize import finalizers_for
from stellar.engine.scorers import SCORERS, PhasedScorer, build_scorers, phased
from stellar.errors import StellarError
from stellar.metrics.base import METRICS, variant_name


def face_presets(faces) -> dict | None:
    """``{preset: analyzer}`` when ``faces`` holds several analyzers (``--faces paper,arcface``), else None.

    A mapping with one entry is a single analyzer: its columns keep the plain names (``ips``, ...).
    """
    if isinstance(faces, dict) and len(faces) > 1:
        return dict(faces)
    return None


def single_faces(faces):
    """The analyzer of a one-entry mapping (or ``faces`` itself)."""
    return next(iter(faces.values())) if isinstance(faces, dict) and len(faces) == 1 else faces


@dataclass
class Plan:
    metrics: list[str]  # what the run computes
    skipped: dict[str, str]  # requested but not computed, with why
    scorers: list[PhasedScorer]
    failure_rule: str = "worst"
    shared: list[str] = field(default_factory=list)

    @property
    def plugins(self) -> list[PhasedScorer]:
        return [s for s in self.scorers if s.name not in ("faces", "clip")]

    def describe(self) -> str:
        """The plan as printed at the start of ``stellar evaluate`` (and by ``--plan``)."""
        lines = [f"plan: metrics {', '.join(self.metrics)}"]
        for m, why in self.skipped.items():
            lines.append(f"  skipped {m}: {why}")
        for s in self.scorers:
            inner = getattr(s, "inner", s)
            phases = [p for p in ("reference", "text") if hasattr(inner, p)] + ["generated"]
            lines.append(f"  scorer {s.name} -> {', '.join(s.metrics)}; phases: {', '.join(phases)}; cache: {s.protocol}")
        for line in self.shared:
            lines.append(f"  shared: {line}")
        lines.append("  finalisers: " + ", ".join(f.name for f in finalizers_for(self.metrics)))
        lines.append(f"  failure rule: {self.failure_rule}" + (" (mean over the jobs that have an image)" if self.failure_rule == "partial" else " (a failed job scores each metric's worst value)"))
        return "\n".join(lines)


def build_plan(
    metrics: Sequence[str],
    *,
    faces=None,
    clip=None,
    clip_unavailable: str | None = None,
    scorers: Sequence | None = None,
    scorer_options: dict | None = None,
    batch_size: int = 8,
    reuse: bool = True,
    failure_rule: str = "worst",
) -> Plan:
    """The scorers and shared models for ``metrics`` (unknown metrics, missing models refused here)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise StellarError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)} (stellar metrics list)")
    wants_faces = any(m in FACE_METRICS for m in metrics)
    if wants_faces and not faces:
        raise StellarError("IPS/SIS/APS/FDFR/CPS need a face analyzer (--faces paper|arcface|offline)")
    presets = face_presets(faces)
    faces = single_faces(faces)
    computed = [m for m in metrics if m not in CLIP_METRICS or clip is not None]
    base_computed = computed
    skipped = {m: clip_unavailable or "no CLIP model" for m in metrics if m not in computed}
    if presets is not None:  # several face presets: each face metric once per preset, side by side
        computed = [v for m in computed for v in ([variant_name(m, p) for p in presets] if m in FACE_METRICS else [m])]
    others = [m for m in computed if m not in FACE_METRICS and m not in CLIP_METRICS and "@" not in m]
    if scorers is None:
        scorers = build_scorers(others, scorer_options, device=getattr(clip, "device", None), batch_size=batch_size) if others else []
    plugins = [phased(s) for s in scorers]
    covered = {m for s in plugins for m in s.metrics}
    missing = [m for m in others if m not in covered]
    if missing:
        raise StellarError(f"no scorer computes metric(s) {missing}; known scorers: {sorted(SCORERS)}")
    built: list[PhasedScorer] = []
    shared = []
    if clip is not None:
        built.append(phased(ClipScorer(clip, [m for m in computed if m in CLIP_METRICS])))
        users = ["CLIP-T", "CLIP-I", "the exclusion rule"]
        if (scorer_options or {}).get("clip") is clip or any(getattr(getattr(p.inner, "relation_scorer", None), "clip", None) is clip for p in plugins):
            users.append("the RFS relation scorer")
        shared.append(f"one CLIP ({clip.name}) serves {', '.join(users)}")
    face_metrics = [m for m in base_computed if m in FACE_METRICS]
    if wants_faces and presets is None:
        built.append(phased(FaceScorer(faces, face_metrics, reuse=reuse)))
        shared.append("one face-analyzer pass per image serves " + ", ".join(m.upper() for m in face_metrics))
    elif wants_faces:
        multi = MultiFaceScorer(presets, face_metrics, reuse=reuse)
        multi.metrics = tuple(m for m in computed if "@" in m)
        built.append(phased(multi))
        by_detector: dict[int, list[str]] = {}
        for p, a in presets.items():
            by_detector.setdefault(id(a.detector), []).append(p)
        for names in by_detector.values():
            det = presets[names[0]].detector_name
            shared.append(f"one {det} detection per image serves face presets {', '.join(names)} (then one embedding pass each)" if len(names) > 1 else f"face preset {names[0]}: its own {det} detection")
        shared.append("one decode per image serves every face preset: " + ", ".join(presets))
    for p in plugins:
        if len(p.metrics) > 1:
            shared.append(f"one {p.name} pass per image serves {', '.join(p.metrics)}")
    return Plan(computed, skipped, built + plugins, failure_rule, shared)
