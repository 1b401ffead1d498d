"""Metric metadata (DESIGN §6.8): what each metric is, needs and how to read it.

Metrics are pure functions over *features* (embeddings, detections, text-image similarities) —
this package never loads a model or touches the disk. Each metric also has a :class:`MetricInfo`
record in :data:`METRICS`; reports read ``higher_is_better`` from here instead of hard-coding
directions, and the engine plans feature extraction from ``needs`` and ``models``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

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


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "ips", "IPS", True, ("generated", "reference"), ("faces",), "image", True,
            "Identity Preservation Score: max cosine between face embeddings of the generated image and its input photo.",
        ),
        MetricInfo(
            "sis", "SIS", True, ("generated", "references"), ("faces",), "image", True,
            "Stability of Identity Score: min over the subject's photos of IPS(generated, photo).",
        ),
        MetricInfo(
            "aps", "APS", True, ("generated", "reference", "attributes"), ("faces",), "dataset", True,
            "Attribute Preservation Score: mean ROC-AUC over 8 CelebA attributes of linear probes on face embeddings.",
        ),
        MetricInfo(
            "clip_t", "CLIP-T", True, ("generated", "prompt"), ("clip",), "image", False,
            "Cosine between the CLIP embeddings of the filled prompt and the generated image.",
        ),
        MetricInfo(
            "clip_i", "CLIP-I", True, ("generated", "reference"), ("clip",), "image", False,
            "Cosine between the CLIP image embeddings of the input photo and the generated image.",
        ),
        MetricInfo(
            "goa", "GOA", True, ("generated", "detectables"), ("detector",), "image", False,
            "Grounding Objects Accuracy: mean over the prompt's objects of the best open-vocabulary detection score.",
            ("T",),
        ),
        MetricInfo(
            "rfs", "RFS", True, ("generated", "triplets"), ("detector", "relation"), "image", False,
            "Relation Fidelity Score: mean over (person, predicate, object) triplets of p_person * p_object * p_predicate.",
            ("T",),
        ),
        MetricInfo(
            "dino", "DINO", True, ("generated", "reference"), ("dino",), "image", False,
            "Cosine between DINO ViT-S/16 CLS tokens of the input photo and the generated image.",
        ),
        MetricInfo(
            "aesthetic", "Aesthetic", True, ("generated",), ("clip-l14", "aesthetic"), "image", False,
            "LAION improved aesthetic predictor (MLP on normalised CLIP ViT-L/14 image embeddings), 1-10 scale.",
        ),
        MetricInfo(
            "pick_score", "PickScore", True, ("generated", "prompt"), ("pickscore",), "image", False,
            "PickScore v1: logit-scaled cosine of the prompt and the generated image (the canonical score).",
        ),
        MetricInfo(
            "pick_score_raw", "PickScore-cos", True, ("generated", "prompt"), ("pickscore",), "image", False,
            "PickScore v1 raw cosine, as the official Stellar code reports it.",
        ),
        MetricInfo(
            "hpsv2", "HPSv2", True, ("generated", "prompt"), ("hpsv2",), "image", False,
            "Human Preference Score v2: cosine of open_clip ViT-H-14 (HPS v2 weights) text and image embeddings.",
        ),
        MetricInfo(
            "hpsv1", "HPSv1", True, ("generated", "prompt"), ("hpsv1",), "image", False,
            "Human Preference Score v1: 100 x cosine of OpenAI CLIP ViT-L/14 (HPS v1 weights) text and image embeddings.",
        ),
        MetricInfo(
            "image_reward", "ImageReward", True, ("generated", "prompt"), ("image_reward",), "image", False,
            "ImageReward v1.0: BLIP ViT-L + cross-attending BERT + MLP reward of (prompt, image), normalised by the published mean/std.",
        ),
    )  # fmt: skip
}


def get_metric(name: str) -> MetricInfo:
    """The metadata of ``name``; an unknown name lists the close matches."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METRICS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown metric {name!r}.{hint} Known: {', '.join(METRICS)}") from None
