"""Engine scorers of the standard comparison metrics (DESIGN §6.7): DINO, PickScore, Aesthetic, HPSv2,
HPSv1, ImageReward, DreamSim.

Each factory has the :data:`~stellar.engine.scorers.SCORERS` signature
``(options, device, batch_size, metrics) -> Scorer`` and loads its model through
:mod:`stellar.models.standard`. Options read (all optional; the CLI's ``scorer_options``):

- ``dino``: card or local folder of the DINO ViT (default ``dino-vits16``);
- ``pickscore``: card or folder of PickScore (default ``pickscore-v1``);
  ``pickscore_processor``: card or folder of its tokenizer + image processor
  (default: the model folder when it has one, else ``clip-vit-h-14-laion2b-processor``);
- ``aesthetic``: card, folder or ``.pth`` of the aesthetic head (default ``laion-aesthetic-v2``);
  ``aesthetic_clip``: card or folder of its CLIP backbone (default ``clip-vit-l-14-openai``);
- ``hpsv2``: card, folder or checkpoint file (default card ``hpsv2``);
  ``hpsv2_version``: ``"v2.0"`` (default) | ``"v2.1"``;
- ``hpsv1``: card, folder or ``hpc.pt`` (default card ``hpsv1``);
- ``dreamsim``: card or folder of the DreamSim ensemble (default ``dreamsim-ensemble``);
- ``image_reward``: card or folder with ``ImageReward.pt`` + ``med_config.json`` (default ``imagereward-v1``);
  ``image_reward_tokenizer``: card or folder with bert-base-uncased's ``vocab.txt`` (default: the model
  folder when it has one, else ``bert-base-uncased-tokenizer``).

Caching (:class:`~stellar.engine.cache.FeatureCache`, namespace = the scorer's ``protocol``): image
embeddings under the image's content hash — ``item.image_key`` for generated images,
``item.reference_key`` for input photos, so each reference photo is encoded once per photo and
model, whatever the number of its jobs — and text embeddings under ``"text:" + sha256(prompt)``
with the prompt's truncation flag. Scores are recomputed from cached embeddings (cheap).

Result columns per item: ``dino``; ``pick_score`` and/or ``pick_score_raw`` (whichever were asked,
from one model pass) + ``pick_score_prompt_truncated``; ``aesthetic``; ``hpsv2`` +
``hpsv2_prompt_truncated`` (the prompt exceeded the 77-token context and was cut); ``hpsv1`` +
``hpsv1_prompt_truncated``; ``image_reward`` + ``image_reward_prompt_truncated`` (over ImageReward's
35 tokens). ImageReward caches its final score per (image content hash, prompt) — the text encoder
cross-attends to the image, so there is no separable text or image feature worth caching.
``dreamsim`` = 1 − cos of the DreamSim embeddings of the input photo and the generated image (both cached).

Each scorer counts model work in ``encoded`` (``{"generated", "reference", "text"}``: items that went
through the model, cache hits excluded) — reported by tests and useful for benchmarks.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from stellar.engine.cache import FeatureCache
from stellar.engine.scorers import ScoringItem


def text_key(text: str) -> str:
    """Cache key of a prompt's text embedding."""
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cached_images(
    cache: FeatureCache,
    protocol: str,
    keys: Sequence[str],
    load: Callable[[str], object],
    encode: Callable[[list], np.ndarray],
    batch_size: int,
) -> tuple[list[np.ndarray], int]:
    """Embeddings for content ``keys`` (duplicates encoded once): cache first, then ``encode`` in batches.

    ``load(key)`` returns the image of a key that missed. Returns (embeddings in ``keys`` order, number encoded).
    """
    found: dict[str, np.ndarray] = {}
    missing = []
    for k in dict.fromkeys(keys):
        hit = cache.get(protocol, k)
        if hit is not None and "embedding" in hit:
            found[k] = hit["embedding"]
        else:
            missing.append(k)
    for start in range(0, len(missing), max(1, batch_size)):
        chunk = missing[start : start + max(1, batch_size)]
        for k, e in zip(chunk, encode([load(k) for k in chunk])):
            e = np.asarray(e, np.float32)
            cache.put(protocol, k, {"embedding": e})
            found[k] = e
    return [found[k] for k in keys], len(missing)


def _cached_texts(
    cache: FeatureCache, protocol: str, texts: Sequence[str], encode: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]
) -> tuple[list[np.ndarray], list[bool], int]:
    """Text embeddings + truncation flags for ``texts`` (each unique text encoded once, then cached)."""
    found: dict[str, tuple[np.ndarray, bool]] = {}
    missing = []
    for t in dict.fromkeys(texts):
        hit = cache.get(protocol, text_key(t))
        if hit is not None and "embedding" in hit and "truncated" in hit:
            found[t] = (hit["embedding"], bool(hit["truncated"]))
        else:
            missing.append(t)
    if missing:
        emb, truncated = encode(missing)
        for t, e, tr in zip(missing, emb, truncated):
            e = np.asarray(e, np.float32)
            cache.put(protocol, text_key(t), {"embedding": e, "truncated": np.asarray(bool(tr))})
            found[t] = (e, bool(tr))
    return [found[t][0] for t in texts], [found[t][1] for t in texts], len(missing)


def _generated(cache, protocol, items, encode, batch_size) -> tuple[list[np.ndarray], int]:
    images = {it.image_key: it.image for it in items}
    return _cached_images(cache, protocol, [it.image_key for it in items], images.__getitem__, encode, batch_size)


def _references(cache, protocol, items, encode, batch_size) -> tuple[list[np.ndarray], int]:
    # decode an input photo only when its embedding is not cached (memory stays flat)
    by_key = {it.reference_key: it for it in items}
    return _cached_images(cache, protocol, [it.reference_key for it in items], lambda k: by_key[k].load_reference(), encode, batch_size)


class _PhotoPairScorer:
    """A metric of the cosine between an encoder's embeddings of the input photo and of the generated
    image (both cached per content hash); subclasses name the metric and map the cosine to its value."""

    name = ""
    metrics: tuple[str, ...] = ()

    def __init__(self, encoder, batch_size: int = 8):
        self.encoder = encoder  # anything with encode_images(images) -> unit vectors, and protocol
        self.protocol = encoder.protocol
        self.batch_size = batch_size
        self.encoded: Counter = Counter()

    @staticmethod
    def value(cosine: float) -> float:
        raise NotImplementedError

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        if not items:
            return []
        gen, n_gen = _generated(cache, self.protocol, items, self.encoder.encode_images, self.batch_size)
        ref, n_ref = _references(cache, self.protocol, items, self.encoder.encode_images, self.batch_size)
        self.encoded.update(generated=n_gen, reference=n_ref)
        return [{self.name: self.value(float(np.dot(g.astype(np.float64), r.astype(np.float64))))} for g, r in zip(gen, ref)]


class DinoScorer(_PhotoPairScorer):
    """``dino`` = cos(DINO CLS(input photo), DINO CLS(generated image)) (stellar.models.standard.DinoEncoder)."""

    name = "dino"
    metrics = ("dino",)

    @staticmethod
    def value(cosine: float) -> float:
        return cosine


class PickScoreScorer:
    """``pick_score`` = logit_scale.exp() · cos(text, image); ``pick_score_raw`` = cos — one model pass."""

    name = "pick_score"

    def __init__(self, model, metrics: Sequence[str] = ("pick_score", "pick_score_raw"), batch_size: int = 8):
        unknown = [m for m in metrics if m not in ("pick_score", "pick_score_raw")]
        if unknown or not metrics:
            raise ValueError(f"PickScore computes pick_score and/or pick_score_raw, not {list(metrics)}")
        self.model = model  # stellar.models.standard.PickScoreModel
        self.metrics = tuple(metrics)
        self.protocol = model.protocol
        self.batch_size = batch_size
        self.encoded: Counter = Counter()

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        if not items:
            return []
        img, n_img = _generated(cache, self.protocol, items, self.model.encode_images, self.batch_size)
        txt, truncated, n_txt = _cached_texts(cache, self.protocol, [it.prompt for it in items], self.model.encode_texts)
        self.encoded.update(generated=n_img, text=n_txt)
        canonical, raw = self.model.scores(np.stack(txt), np.stack(img))
        rows = []
        for c, r, tr in zip(canonical, raw, truncated):
            row: dict[str, object] = {"pick_score_prompt_truncated": tr}
            if "pick_score" in self.metrics:
                row["pick_score"] = float(c)
            if "pick_score_raw" in self.metrics:
                row["pick_score_raw"] = float(r)
            rows.append(row)
        return rows


class AestheticScorer:
    """``aesthetic`` = LAION improved-aesthetic-predictor MLP on the normalised CLIP ViT-L/14 image embedding."""

    name = "aesthetic"
    metrics = ("aesthetic",)

    def __init__(self, predictor, batch_size: int = 8):
        self.predictor = predictor  # stellar.models.standard.AestheticPredictor
        self.protocol = predictor.protocol
        self.batch_size = batch_size
        self.encoded: Counter = Counter()

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        if not items:
            return []
        emb, n = _generated(cache, self.protocol, items, self.predictor.encode_images, self.batch_size)
        self.encoded.update(generated=n)
        return [{"aesthetic": float(s)} for s in self.predictor.score_embeddings(np.stack(emb))]


class HpsScorer:
    """``hpsv2`` = cos(text, image) of HPS v2 / v2.1 (open_clip ViT-H-14); ``hpsv1`` = 100 · cos of HPS v1
    (OpenAI CLIP ViT-L/14) — one class, the model carries the version's preprocessing and scale."""

    name = "hpsv2"
    metrics = ("hpsv2",)

    def __init__(self, model, batch_size: int = 8, metric: str = "hpsv2"):
        self.model = model  # stellar.models.standard.HpsModel
        self.name = metric
        self.metrics = (metric,)
        self.protocol = model.protocol
        self.batch_size = batch_size
        self.encoded: Counter = Counter()

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        if not items:
            return []
        img, n_img = _generated(cache, self.protocol, items, self.model.encode_images, self.batch_size)
        txt, truncated, n_txt = _cached_texts(cache, self.protocol, [it.prompt for it in items], self.model.encode_texts)
        self.encoded.update(generated=n_img, text=n_txt)
        values = self.model.scores(np.stack(txt), np.stack(img))
        metric = self.metrics[0]
        return [{metric: float(v), f"{metric}_prompt_truncated": tr} for v, tr in zip(values, truncated)]


#: The HPSv2 scorer under its former name (same class).
Hpsv2Scorer = HpsScorer


class ImageRewardScorer:
    """``image_reward`` = ImageReward v1.0 of (prompt, generated image) (:mod:`stellar.models.image_reward`).

    The reward depends on the pair (the text encoder cross-attends to the image tokens), so the cache
    holds the final score per (image content hash, prompt): a second run makes no model pass.
    """

    name = "image_reward"
    metrics = ("image_reward",)

    def __init__(self, model, batch_size: int = 8):
        self.model = model  # stellar.models.image_reward.ImageRewardModel
        self.protocol = model.protocol
        self.batch_size = batch_size
        self.encoded: Counter = Counter()

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        if not items:
            return []
        keys = [f"{it.image_key}:{text_key(it.prompt)}" for it in items]
        found: dict[str, tuple[float, bool]] = {}
        todo: dict[str, ScoringItem] = {}
        for key, it in zip(keys, items):
            hit = cache.get(self.protocol, key)
            if hit is not None and "reward" in hit and "truncated" in hit:
                found[key] = (float(hit["reward"]), bool(hit["truncated"]))
            else:
                todo.setdefault(key, it)
        pending = list(todo.items())
        for start in range(0, len(pending), max(1, self.batch_size)):
            chunk = pending[start : start + max(1, self.batch_size)]
            prompts = [it.prompt for _, it in chunk]
            rewards = self.model.score(prompts, [it.image for _, it in chunk])
            for (key, _), r, tr in zip(chunk, rewards, self.model.truncated(prompts)):
                cache.put(self.protocol, key, {"reward": np.asarray(float(r)), "truncated": np.asarray(bool(tr))})
                found[key] = (float(r), bool(tr))
        self.encoded.update(generated=len(pending))
        return [{"image_reward": found[k][0], "image_reward_prompt_truncated": found[k][1]} for k in keys]


class DreamSimScorer(_PhotoPairScorer):
    """``dreamsim`` = 1 − cos(DreamSim(input photo), DreamSim(generated image)) (:mod:`stellar.models.dreamsim`;
    the embeddings are centred and L2-normalised, cached per image content hash)."""

    name = "dreamsim"
    metrics = ("dreamsim",)

    @staticmethod
    def value(cosine: float) -> float:
        return 1.0 - cosine

    @property
    def model(self):  # stellar.models.dreamsim.DreamSimModel
        return self.encoder


# ------------------------------------------------------------------------------- factories (SCORERS)
def build_dino_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> DinoScorer:
    from stellar.models.standard import load_dino

    return DinoScorer(load_dino(options.get("dino"), device=device, batch_size=batch_size), batch_size=batch_size)


def build_pickscore_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> PickScoreScorer:
    from stellar.models.standard import load_pickscore

    model = load_pickscore(options.get("pickscore"), options.get("pickscore_processor"), device=device, batch_size=batch_size)
    return PickScoreScorer(model, metrics=metrics or ("pick_score", "pick_score_raw"), batch_size=batch_size)


def build_aesthetic_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> AestheticScorer:
    from stellar.models.standard import load_aesthetic

    predictor = load_aesthetic(options.get("aesthetic"), options.get("aesthetic_clip"), device=device, batch_size=batch_size)
    return AestheticScorer(predictor, batch_size=batch_size)


def build_hpsv2_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> HpsScorer:
    from stellar.models.standard import DEFAULT_HPS_VERSION, load_hps

    model = load_hps(options.get("hpsv2_version") or DEFAULT_HPS_VERSION, options.get("hpsv2"), device=device, batch_size=batch_size)
    return HpsScorer(model, batch_size=batch_size)


def build_hpsv1_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> HpsScorer:
    from stellar.models.standard import load_hps

    model = load_hps("v1", options.get("hpsv1"), device=device, batch_size=batch_size)
    return HpsScorer(model, batch_size=batch_size, metric="hpsv1")


def build_image_reward_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> ImageRewardScorer:
    from stellar.models.image_reward import load_image_reward

    model = load_image_reward(options.get("image_reward"), options.get("image_reward_tokenizer"), device=device, batch_size=batch_size)
    return ImageRewardScorer(model, batch_size=batch_size)


def build_dreamsim_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> DreamSimScorer:
    from stellar.models.dreamsim import load_dreamsim

    return DreamSimScorer(load_dreamsim(options.get("dreamsim"), device=device, batch_size=batch_size), batch_size=batch_size)
