"""The one Scorer protocol of the engine: every metric family — faces and CLIP included — is a scorer
(DESIGN §7.2, issue 10).

A scorer has up to four phases; the engine calls the ones it defines, in this order:

1. ``reference(photos, cache) -> list[dict] | None`` — once per input photo of the involved subjects
   (:class:`ReferencePhoto`: decoded once by the engine, with its sha256; ``image is None`` when it
   cannot be decoded). Returned dicts (one per photo) become columns of ``reference.parquet``.
2. ``text(prompts, cache) -> None`` — once per unique filled prompt of the jobs to evaluate.
3. ``score(items, cache) -> list[dict]`` — **the generated phase** (required): once per generated image,
   batched and streamed; one dict of result columns per :class:`ScoringItem` (its metric values plus
   diagnostics). A scorer with ``needs_reference = True`` only sees jobs whose input photo decodes (the
   others are ``reference_decode_error`` rows and score the failure value).
4. dataset-level finalisers are **pure functions of the per-image table** registered in
   :mod:`stellar.engine.finalize` (exclusion rule, IPS/SIS after exclusion, APS probes, the failure
   rule); a plug-in may add its own with :func:`stellar.engine.finalize.register_finalizer`.

A scorer also names the model ``protocol`` it uses (model card + revision + preprocessing: recorded in
``run.json``, part of every row key, and its feature-cache namespace) and the ``metrics`` it fills.
Scorers written before the phases existed (``name``, ``protocol``, ``metrics``, ``score``) are
scorers of this protocol with only the generated phase: :func:`phased` adapts them (no-op reference /
text phases, ``needs_reference`` from their metrics' metadata), so they run unchanged.

Conventions for the generated phase:

- cache what is expensive through the :class:`~stellar.engine.cache.FeatureCache` it is given
  (keys: ``item.image_key`` / ``item.reference_key`` content hashes, plus the prompt text when the
  feature depends on it), so reference photos are encoded once per photo and reruns are cheap;
- decode the reference photo only when needed and not cached (``item.load_reference()``);
- return ``float('nan')`` where a metric is undefined for an item (e.g. GOA without detectables),
  never a silent 0; the engine counts NaNs per metric in the summary.

Scorers are built by name through :data:`SCORERS` (metric -> lazy ``"module:factory"`` string); a
factory takes ``(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...])`` and
returns a scorer computing those metrics. ``options`` holds the CLI's scorer settings (``detector``,
``relation_scorer``, ``goa_empty`` ...). Faces and CLIP are built by the plan
(:mod:`stellar.engine.plan`) from the loaded models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from stellar.data.dataset import Job, Photo
from stellar.engine.cache import FeatureCache
from stellar.errors import StellarError


@dataclass(frozen=True)
class ScoringItem:
    """One generated image to score, with what any metric may need about its job."""

    job: Job
    image: np.ndarray  # HxWx3 uint8 RGB, the decoded generated image
    image_key: str  # sha256 of the generated file
    reference_key: str  # sha256 of the job's input photo
    prompt: str  # the prompt filled with "a person"
    triplets: tuple[tuple[str, str, str], ...] | None = None  # annotated in the dataset, else None
    _loader: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def reference_path(self) -> Path:
        return self.job.photo.path

    def load_reference(self) -> np.ndarray:
        """Decode the job's input photo (HxWx3 uint8); call only on a cache miss."""
        if self._loader is not None:
            return self._loader()
        from stellar.images import load_image

        return np.array(load_image(self.job.photo.path))


@dataclass(frozen=True)
class ReferencePhoto:
    """One input photo, decoded and hashed once per run by the engine."""

    photo: Photo
    sha256: str | None  # None: the file cannot be read
    image: np.ndarray | None  # HxWx3 uint8 RGB; None when it cannot be decoded
    error: str = ""  # why it cannot be decoded

    @property
    def path(self) -> Path:
        return self.photo.path


@runtime_checkable
class Scorer(Protocol):
    """The generated phase every scorer has (the other phases are optional: module docstring)."""

    name: str  # e.g. "goa", "dino"
    protocol: str  # model + revision + preprocessing: cache namespace, recorded in run.json
    metrics: tuple[str, ...]  # the METRICS it fills (each a column of per_image.parquet)

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]: ...


class PhasedScorer:
    """Any scorer seen through all four phases (missing ones are no-ops) — the adapter of the old protocol."""

    def __init__(self, scorer):
        for attr in ("name", "protocol", "metrics", "score"):
            if not hasattr(scorer, attr):
                raise StellarError(f"scorer {scorer!r} lacks {attr!r} (see stellar.engine.scorers: name, protocol, metrics, score)")
        self.inner = scorer
        self.name, self.protocol, self.metrics = scorer.name, scorer.protocol, tuple(scorer.metrics)
        declared = getattr(scorer, "needs_reference", None)
        if declared is None:
            from stellar.metrics.base import METRICS

            declared = any({"reference", "references"} & set(METRICS[m].needs) for m in self.metrics if m in METRICS)
        self.needs_reference = bool(declared)

    def reference(self, photos: Sequence[ReferencePhoto], cache: FeatureCache) -> list[dict] | None:
        fn = getattr(self.inner, "reference", None)
        return fn(photos, cache) if fn is not None else None

    def text(self, prompts: Sequence[str], cache: FeatureCache) -> None:
        fn = getattr(self.inner, "text", None)
        if fn is not None:
            fn(prompts, cache)

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        return self.inner.score(items, cache) if items else []

    def counters(self) -> dict:
        fn = getattr(self.inner, "counters", None)
        return dict(fn()) if fn is not None else {}


def phased(scorer) -> PhasedScorer:
    """``scorer`` as a :class:`PhasedScorer` (idempotent)."""
    return scorer if isinstance(scorer, PhasedScorer) else PhasedScorer(scorer)


#: metric name -> factory building the scorer that computes it (several metrics may share one).
SCORERS: dict[str, str] = {
    "goa": "stellar.engine.context_scorer:build_context_scorer",
    "rfs": "stellar.engine.context_scorer:build_context_scorer",
    "dino": "stellar.engine.standard_scorers:build_dino_scorer",
    "aesthetic": "stellar.engine.standard_scorers:build_aesthetic_scorer",
    "pick_score": "stellar.engine.standard_scorers:build_pickscore_scorer",
    "pick_score_raw": "stellar.engine.standard_scorers:build_pickscore_scorer",
    "hpsv2": "stellar.engine.standard_scorers:build_hpsv2_scorer",
    "hpsv1": "stellar.engine.standard_scorers:build_hpsv1_scorer",
    "image_reward": "stellar.engine.standard_scorers:build_image_reward_scorer",
    "dreamsim": "stellar.engine.standard_scorers:build_dreamsim_scorer",
}


def register_scorer(metric: str, target: str) -> None:
    """Declare that ``metric`` is computed by the scorer ``"module:factory"`` (no duplicates)."""
    if metric in SCORERS and SCORERS[metric] != target:
        raise ValueError(f"metric {metric!r} already has a scorer ({SCORERS[metric]})")
    SCORERS[metric] = target


def build_scorers(metrics: Sequence[str], options: dict | None = None, device: str | None = None, batch_size: int = 8) -> list[Scorer]:
    """One scorer per distinct factory among ``metrics`` (e.g. goa + rfs share the detector scorer)."""
    targets: dict[str, list[str]] = {}
    for m in metrics:
        if m in SCORERS:
            targets.setdefault(SCORERS[m], []).append(m)
    out = []
    for target, names in targets.items():
        module, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise StellarError(f"metric(s) {', '.join(names)} need an optional package: {exc}") from None
        out.append(factory(dict(options or {}), device, batch_size, tuple(names)))
    return out
