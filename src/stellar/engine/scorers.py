"""Pluggable per-image scorers: how context and standard metrics join the engine (DESIGN §6.5–6.7).

Face metrics (IPS, SIS, APS) and CLIP metrics are built into :mod:`stellar.engine.evaluate` because
the exclusion rule and APS tie them together. Every other per-image metric is a :class:`Scorer`:
the engine decodes each generated image once and hands a batch of :class:`ScoringItem` to every
scorer; a scorer returns one dict of result columns per item (its metric values plus diagnostics).

A scorer:

- names the model protocol it uses (``protocol``: model card + revision + preprocessing), recorded
  in ``run.json`` and used as its feature-cache namespace;
- caches what is expensive through the :class:`~stellar.engine.cache.FeatureCache` it is given
  (keys: ``item.image_key`` / ``item.reference_key`` content hashes, plus the prompt text when the
  feature depends on it), so reference photos are encoded once per photo and reruns are cheap;
- decodes the reference photo only when it needs it and has no cached feature
  (``item.load_reference()``), so memory stays flat;
- returns ``float('nan')`` where a metric is undefined for an item (e.g. GOA without detectables),
  never a silent 0; the engine counts NaNs per metric in the summary.

Scorers are built by name through :data:`SCORERS` (metric -> lazy ``"module:factory"`` string, like
the face tables); a factory takes ``(options: dict, device: str | None, batch_size: int,
metrics: tuple[str, ...])`` and returns a :class:`Scorer` computing those metrics. ``options`` holds
the CLI's scorer settings (``detector``, ``relation_scorer``, ``goa_empty`` ...).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from stellar.data.dataset import Job
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


@runtime_checkable
class Scorer(Protocol):
    name: str  # e.g. "goa", "dino"
    protocol: str  # model + revision + preprocessing: cache namespace, recorded in run.json
    metrics: tuple[str, ...]  # the METRICS it fills (each a column of per_image.parquet)

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]: ...


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
