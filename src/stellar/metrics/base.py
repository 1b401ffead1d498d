"""Metric metadata (DESIGN §6.8): what each metric is, needs and how to read it.

Metrics are pure functions over *features* (embeddings, detections, text-image similarities) —
this package never loads a model or touches the disk. Each metric also has a :class:`MetricInfo`
record in :data:`METRICS`; reports read ``higher_is_better`` from here instead of hard-coding
directions, and the engine plans feature extraction from ``needs`` and ``models``.

Failure values (DESIGN §6.10, ``MetricInfo.failure_value``): what a job scores when it should have
an image and has none that decodes (status ``missing`` / ``decode_error``), or when an input the
metric needs cannot be decoded (``reference_decode_error`` for metrics that need the input photo).
Each is the worst value a real image can reach in practice, so a failure never scores better:

- IPS, SIS, CLIP-T, CLIP-I, DINO, PickScore-cos, HPSv2: **0** — cosine similarities; 0 is what "no
  face" gives IPS/SIS and lies below what any real image-text or image-image pair of these models
  scores (CLIP-family cosines of real pairs are > 0.1).
- GOA, RFS: **0** — a detection / triplet confidence is a probability; 0 = nothing found.
- PickScore: **0** — the logit-scaled cosine (scale 100) of a zero similarity; real pairs score ≈ 15–25.
- Aesthetic: **0** — below the predictor's 1–10 scale.
- HPSv1: **0** — 100 · a zero cosine; real image-prompt pairs score ≈ 15–30.
- ImageReward: **−3** (:data:`IMAGE_REWARD_FAILURE`) — the reward is normalised to mean 0 / std 1 over
  ImageReward's training comparisons and is unbounded; −3 (three standard deviations below that mean)
  is our choice of a value below what real generations score in practice. A deliberate choice, not a
  property of the model (README, standard metrics).
- DreamSim (lower is better): **2** (:data:`DREAMSIM_FAILURE`) — the distance's bound: 1 − cos of
  centred, L2-normalised embeddings lies in [0, 2]. Unlike the similarities above (whose 0 floor is
  below every real pair), DreamSim centres its embeddings, so a real pair can land beyond 1 (a
  negative centred cosine); we have not measured its practical range on real weights, so only the
  bound guarantees a failure never scores better than an image (README, standard metrics).
- APS (dataset level, no value): the failed job's prediction is the wrong class for every attribute.
- FDFR: **1** — a job without a decodable image is a detection failure (DESIGN §6.10).
- CPS (lower is better): **1** — IPS(g, x) at its maximum 1 and the other photos at the 0 floor that
  "no face" gives IPS; real images score ≈ 0–0.4 (see :func:`stellar.metrics.identity.copy_paste_score`).

Face-preset variants (issue 12): a run with several face presets (``--faces paper,arcface``) names its
face columns ``METRIC@PRESET`` (``ips@paper``, ``fdfr@arcface``, …). :data:`METRICS` resolves such a
name to the base metric's record renamed (``METRICS["ips@paper"].display_name == "IPS@paper"``), so
every reader (aggregation, failure rule, reports, statistics) handles them with no special case;
iterating :data:`METRICS` lists the base metrics only. :func:`split_variant` parses the names.

A metric defined only on some prompt kinds (``splits``: GOA/RFS on Stellar-T) stays NaN on the others,
failure or not. ``--partial`` (mean over what exists) leaves failures NaN instead.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Literal

#: ImageReward's failure value (module docstring): 3 standard deviations below its normalised mean.
IMAGE_REWARD_FAILURE = -3.0
#: DreamSim distance of a failed job: the bound of 1 − cos (see the module docstring).
DREAMSIM_FAILURE = 2.0

Need = Literal["generated", "reference", "references", "prompt", "detectables", "triplets", "attributes"]


@dataclass(frozen=True)
class MetricInfo:
    name: str  # key used on the CLI and as the results column
    display_name: str
    higher_is_better: bool
    needs: tuple[Need, ...]
    models: tuple[str, ...]  # model roles: "faces", "clip", "detector", ...
    level: Literal["image", "dataset"]
    exclusion_applies: bool
    description: str
    splits: tuple[str, ...] = ("T", "H")  # prompt kinds the metric is defined on
    #: DESIGN §6.10: the value a job scores when it should have an image and has no decodable one
    #: (missing, undecodable, or its reference photo undecodable for a metric that needs it) — the
    #: worst value of the metric, so a failure never makes a method score better. ``None`` for
    #: dataset-level metrics, whose failure rule is their own (APS: the wrong prediction).
    failure_value: float | None = None


VARIANT_SEP = "@"


def split_variant(name: str) -> tuple[str, str | None]:
    """``"ips@paper"`` -> ``("ips", "paper")``; ``"ips"`` -> ``("ips", None)``."""
    base, sep, variant = str(name).partition(VARIANT_SEP)
    return (base, variant) if sep and variant else (str(name), None)


def variant_name(metric: str, variant: str | None) -> str:
    """The column of ``metric`` for face preset ``variant`` (``None``: the plain name)."""
    return metric if not variant else f"{metric}{VARIANT_SEP}{variant}"


class _MetricTable(dict):
    """The metric records; a ``METRIC@VARIANT`` key resolves to the base record renamed (module docstring)."""

    def _variant(self, key):
        base, variant = split_variant(key) if isinstance(key, str) else (key, None)
        if variant is None or not dict.__contains__(self, base):
            return None
        info = dict.__getitem__(self, base)
        return replace(info, name=key, display_name=f"{info.display_name}{VARIANT_SEP}{variant}")

    def __missing__(self, key):
        info = self._variant(key)
        if info is None:
            raise KeyError(key)
        return info

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or self._variant(key) is not None

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


METRICS: dict[str, MetricInfo] = _MetricTable({
    m.name: m
    for m in (
        MetricInfo(
            "ips", "IPS", True, ("generated", "reference"), ("faces",), "image", True,
            "Identity Preservation Score: max cosine between face embeddings of the generated image and its input photo.",
            failure_value=0.0,
        ),
        MetricInfo(
            "sis", "SIS", True, ("generated", "references"), ("faces",), "image", True,
            "Stability of Identity Score: min over the subject's photos of IPS(generated, photo).",
            failure_value=0.0,
        ),
        MetricInfo(
            "aps", "APS", True, ("generated", "reference", "attributes"), ("faces",), "dataset", True,
            "Attribute Preservation Score: mean ROC-AUC over 8 CelebA attributes of linear probes on face embeddings.",
        ),
        MetricInfo(
            "clip_t", "CLIP-T", True, ("generated", "prompt"), ("clip",), "image", False,
            "Cosine between the CLIP embeddings of the filled prompt and the generated image.",
            failure_value=0.0,
        ),
        MetricInfo(
            "clip_i", "CLIP-I", True, ("generated", "reference"), ("clip",), "image", False,
            "Cosine between the CLIP image embeddings of the input photo and the generated image.",
            failure_value=0.0,
        ),
        MetricInfo(
            "goa", "GOA", True, ("generated", "detectables"), ("detector",), "image", False,
            "Grounding Objects Accuracy: mean over the prompt's objects of the best open-vocabulary detection score.",
            ("T",),
            failure_value=0.0,
        ),
        MetricInfo(
            "rfs", "RFS", True, ("generated", "triplets"), ("detector", "relation"), "image", False,
            "Relation Fidelity Score: mean over (person, predicate, object) triplets of p_person * p_object * p_predicate.",
            ("T",),
            failure_value=0.0,
        ),
        MetricInfo(
            "dino", "DINO", True, ("generated", "reference"), ("dino",), "image", False,
            "Cosine between DINO ViT-S/16 CLS tokens of the input photo and the generated image.",
            failure_value=0.0,
        ),
        MetricInfo(
            "aesthetic", "Aesthetic", True, ("generated",), ("clip-l14", "aesthetic"), "image", False,
            "LAION improved aesthetic predictor (MLP on normalised CLIP ViT-L/14 image embeddings), 1-10 scale.",
            failure_value=0.0,
        ),
        MetricInfo(
            "pick_score", "PickScore", True, ("generated", "prompt"), ("pickscore",), "image", False,
            "PickScore v1: logit-scaled cosine of the prompt and the generated image (the canonical score).",
            failure_value=0.0,
        ),
        MetricInfo(
            "pick_score_raw", "PickScore-cos", True, ("generated", "prompt"), ("pickscore",), "image", False,
            "PickScore v1 raw cosine, as the official Stellar code reports it.",
            failure_value=0.0,
        ),
        MetricInfo(
            "hpsv2", "HPSv2", True, ("generated", "prompt"), ("hpsv2",), "image", False,
            "Human Preference Score v2: cosine of open_clip ViT-H-14 (HPS v2 weights) text and image embeddings.",
            failure_value=0.0,
        ),
        MetricInfo(
            "hpsv1", "HPSv1", True, ("generated", "prompt"), ("hpsv1",), "image", False,
            "Human Preference Score v1: 100 x cosine of OpenAI CLIP ViT-L/14 (HPS v1 weights) text and image embeddings.",
            failure_value=0.0,
        ),
        MetricInfo(
            "image_reward", "ImageReward", True, ("generated", "prompt"), ("image_reward",), "image", False,
            "ImageReward v1.0: BLIP ViT-L + cross-attending BERT + MLP reward of (prompt, image), normalised by the published mean/std.",
            failure_value=IMAGE_REWARD_FAILURE,
        ),
        MetricInfo(
            "dreamsim", "DreamSim", False, ("generated", "reference"), ("dreamsim",), "image", False,
            "DreamSim distance (ensemble: DINO ViT-B/16 + CLIP ViT-B/16 + OpenCLIP ViT-B/16 with LoRA) between the input photo and the generated image: 1 - cosine of centred, normalised embeddings, in [0, 2].",
            failure_value=DREAMSIM_FAILURE,
        ),
        MetricInfo(
            "fdfr", "FDFR", False, ("generated",), ("faces",), "image", False,
            "Face-detection failure rate: per image 1 when the face analyzer finds no face in the generated image (or it has no decodable image), else 0; the mean is the rate.",
            failure_value=1.0,
        ),
        MetricInfo(
            "cps", "CPS", False, ("generated", "references"), ("faces",), "image", False,
            "Copy-paste score: IPS(generated, input photo) - mean IPS(generated, the subject's other photos); high = the input photo was reproduced rather than the person. Needs >= 2 photos per subject.",
            failure_value=1.0,
        ),
    )  # fmt: skip
})


def register_metric(info: MetricInfo) -> None:
    """Add a plug-in metric's metadata (its scorer goes to :func:`stellar.engine.scorers.register_scorer`)."""
    if info.name in METRICS and METRICS[info.name] != info:
        raise ValueError(f"metric {info.name!r} is already registered")
    if info.level == "image" and info.failure_value is None:
        raise ValueError(f"metric {info.name!r}: a per-image metric must declare its failure_value (DESIGN §6.10)")
    METRICS[info.name] = info


def failure_value(name: str, kind: str) -> float:
    """The value a failed job of prompt kind ``kind`` scores for metric ``name`` (NaN where undefined)."""
    info = METRICS.get(name)
    if info is None or info.failure_value is None or kind not in info.splits:
        return float("nan")
    return float(info.failure_value)


def get_metric(name: str) -> MetricInfo:
    """The metadata of ``name``; an unknown name lists the close matches."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METRICS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown metric {name!r}.{hint} Known: {', '.join(METRICS)}") from None
