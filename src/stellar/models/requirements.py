"""What each metric and face preset needs to run: model cards and pip extras — in one place.

``stellar models fetch --for …``, ``stellar doctor`` and the pre-flight check of ``stellar evaluate``
all read this table. A metric's needs come from its metadata (:data:`stellar.metrics.base.METRICS`,
field ``models``: model *roles*) and the options of the run (face preset, ``--clip``, ``--detector``,
``--relation-scorer``); a role maps to cards here. A new metric with a new model role adds one entry
to :func:`_role_cards` (and :data:`ROLE_EXTRAS`); a role without an entry is not checked (its scorer
still resolves its weights itself and fails with the fetch command).

Choices: metrics to which the exclusion rule applies (IPS/SIS/APS, DESIGN §6.5) also need the run's
CLIP, because the paper's protocol applies the rule; ``--clip none`` drops it (the rule is then
reported as not applied). The words of ``--for`` (metric groups, face presets) are expanded by
:func:`stellar.commands.doctor.expand_for`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from stellar.errors import StellarError

#: pip extra -> the modules it provides (checked with importlib.util.find_spec, nothing imported).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "faces": ("torch", "scipy"),
    "dlib": ("dlib",),
    "onnx": ("onnxruntime",),
    "clip": ("torch", "transformers", "huggingface_hub", "safetensors"),
    "hps": ("torch", "open_clip"),
}

#: face detector / embedder component -> extra (the cards come from the component table of the analyzer).
COMPONENT_EXTRAS: dict[str, str] = {
    "mtcnn": "faces",
    "facenet-vggface2": "faces",
    "scrfd": "onnx",
    "arcface": "onnx",
    "arcface-buffalo-l": "onnx",
    "dlib-hog": "dlib",
    "dlib-cnn": "dlib",
    "dlib-resnet-v1": "dlib",
}

#: model role (MetricInfo.models) -> extra it needs.
ROLE_EXTRAS: dict[str, str] = {
    "clip": "clip", "detector": "clip", "relation": "clip", "dino": "clip", "clip-l14": "clip",
    "aesthetic": "clip", "pickscore": "clip", "hpsv2": "hps", "hpsv1": "hps", "image_reward": "clip",
    "dreamsim": "clip",
}  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    """The options of a run that change which cards a metric needs (as ``stellar evaluate`` takes them)."""

    faces: str = "paper"
    clip: str = "clip-vit-bigg-14-laion2b"
    detector: str | None = None
    relation_scorer: str | None = None
    scorer_options: Mapping[str, str] = field(default_factory=dict)


def _role_cards(role: str, options: RunOptions) -> list[str]:
    """Card specs (names, hub ids or folders) a model role needs under ``options``."""
    from stellar.models import standard
    from stellar.models.detectors import DEFAULT_DETECTOR
    from stellar.models.relations import DEFAULT_VQA

    opt = options.scorer_options
    if role == "clip":
        return [] if options.clip.lower() == "none" else [options.clip]
    if role == "detector":
        return [options.detector or opt.get("detector") or DEFAULT_DETECTOR]
    if role == "relation":
        if (options.relation_scorer or opt.get("relation_scorer") or "clip") == "vqa":
            return [opt.get("relation_model") or DEFAULT_VQA]
        return [options.clip if options.clip.lower() != "none" else "clip-vit-bigg-14-laion2b"]
    table = {
        "dino": [opt.get("dino") or standard.DEFAULT_DINO_CARD],
        "clip-l14": [opt.get("aesthetic_clip") or standard.AESTHETIC_CLIP_CARD],
        "aesthetic": [opt.get("aesthetic") or standard.DEFAULT_AESTHETIC_CARD],
        "pickscore": [opt.get("pickscore") or standard.DEFAULT_PICKSCORE_CARD, opt.get("pickscore_processor") or standard.PICKSCORE_PROCESSOR_CARD],
        "hpsv2": [opt.get("hpsv2") or standard.HPS_CARD],
        "hpsv1": [opt.get("hpsv1") or standard.HPS_V1_CARD],
        "image_reward": _image_reward_cards(opt),
        "dreamsim": [opt.get("dreamsim") or "dreamsim-ensemble"],
    }
    # a role not listed here (a metric added without an entry) is not checked: its scorer still resolves its
    # own weights and fails with the fetch command, as before this check existed
    return table.get(role, [])


def _image_reward_cards(opt: Mapping[str, str]) -> list[str]:
    # the bert-base-uncased vocabulary comes from its own card unless the model folder carries a vocab.txt
    from stellar.models.image_reward import IMAGE_REWARD_CARD, IMAGE_REWARD_TOKENIZER_CARD

    model = opt.get("image_reward") or IMAGE_REWARD_CARD
    tokenizer = opt.get("image_reward_tokenizer")
    if tokenizer is None and not (Path(model).expanduser() / "vocab.txt").is_file():
        tokenizer = IMAGE_REWARD_TOKENIZER_CARD
    return [model] + ([tokenizer] if tokenizer else [])


@dataclass(frozen=True)
class Need:
    """What one metric or face preset needs: card specs (cards, hub ids or local folders) and extras."""

    subject: str  # "ips", "preset offline", ...
    cards: tuple[str, ...]
    extras: tuple[str, ...]


def preset_need(preset: str) -> Need:
    """Cards and extras of face preset ``preset``."""
    from stellar.models.faces.analyzer import DETECTORS, EMBEDDERS, PRESETS, UnknownFaceModelError

    if preset not in PRESETS:
        raise UnknownFaceModelError("preset", preset, list(PRESETS))
    p = PRESETS[preset]
    cards = [*DETECTORS[p.detector].cards, *EMBEDDERS[p.embedder].cards]
    extras = [COMPONENT_EXTRAS[p.detector], COMPONENT_EXTRAS[p.embedder]]
    return Need(f"face preset {preset}", tuple(dict.fromkeys(cards)), tuple(dict.fromkeys(extras)))


def metric_need(metric: str, options: RunOptions) -> Need:
    """Cards and extras of ``metric`` under ``options`` (roles from the metric's metadata)."""
    from stellar.metrics.base import get_metric

    try:
        info = get_metric(metric)
    except KeyError as exc:
        raise StellarError(str(exc.args[0])) from None
    cards: list[str] = []
    extras: list[str] = []
    for role in info.models:
        if role == "faces":  # --faces paper,arcface: every preset of the list (issue 12)
            for preset in [f.strip() for f in options.faces.split(",") if f.strip()] or [options.faces]:
                need = preset_need(preset)
                cards += need.cards
                extras += need.extras
            continue
        cards += _role_cards(role, options)
        if role in ROLE_EXTRAS:
            extras.append(ROLE_EXTRAS[role])
    if info.exclusion_applies and options.clip.lower() != "none":
        cards.append(options.clip)
        extras.append("clip")
    return Need(metric, tuple(dict.fromkeys(cards)), tuple(dict.fromkeys(extras)))


def needs_for(metrics: Sequence[str], options: RunOptions) -> list[Need]:
    """One :class:`Need` per metric (in order)."""
    return [metric_need(m, options) for m in metrics]


def card_names(specs: Sequence[str]) -> list[str]:
    """The registry cards behind ``specs`` (card names, declared hub ids), with their ``requires``;
    local folders / files and undeclared hub ids are not cards and are left out."""
    out: list[str] = []
    todo = list(specs)
    while todo:
        card = spec_card(todo.pop(0))
        if card is not None and card.name not in out:
            out.append(card.name)
            todo += list(card.requires)
    return out


def spec_card(spec: str):
    """The card a spec names (a card name / alias or a hub id a card declares), None for anything else."""
    from stellar.models import registry

    if Path(spec).expanduser().exists():
        return None
    try:
        return registry.get_card(spec)
    except registry.UnknownModelError:
        return next((c for c in registry.list_cards() if any(getattr(s, "repo_id", None) == spec for s in c.sources)), None)


def missing_extras(extras: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``[(extra, [missing modules])]`` for the extras whose modules cannot be found."""
    out = []
    for extra in extras:
        gone = [m for m in EXTRA_MODULES.get(extra, ()) if importlib.util.find_spec(m) is None]
        if gone:
            out.append((extra, gone))
    return out
