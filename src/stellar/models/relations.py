"""Relation scorers for RFS (DESIGN §6.6): p_pred of a (person, predicate, object) triplet on an image region.

A scorer takes :class:`RelationQuery` records — the image, the union box of the person's and the
object's groundings (pixels, x1 y1 x2 y2) and the triplet — and returns one probability per query.
The region is the union box clipped to the image (at least one pixel), **padded to a square** with the
processor's mean colour (:func:`square_crop`; it normalises to 0) before encoding: CLIP's centre crop
would otherwise cut the outer parts of a wide or tall box — exactly where the person and the object
are (issue 9.4). The crop rule is part of each scorer's ``protocol``.

- :class:`ClipRelationScorer` (default): the CLIP backbone of the evaluation embeds the crop and the
  texts ``"a person {p} {a} {object}"`` for every predicate p of the vocabulary (the triplet's own
  predicate added when it is missing); ``p_pred = softmax(s · cos(image, text_p))[pred]`` with s =
  CLIP's learned logit scale (exp(logit_scale), 100 for the released models) — CLIP's zero-shot
  classification over predicates, as in DESIGN §6.6. Article a/an from the object's first letter;
  none for an object that looks plural (ends in s, not ss/us/is) — a spelling rule, not a parser.
- :class:`VqaRelationScorer`: BLIP VQA (``Salesforce/blip-vqa-base`` through ``transformers``) asked
  ``"Is the person {p} the {object}?"`` on the crop; ``p_yes = softmax(l_yes, l_no)[yes]`` from the
  logits of the first answer token (the answer decoder started from its BOS token) — a yes/no
  probability normalised over the two answers, so the rest of the vocabulary does not dilute it.
  Questions are batched with questions of the same token length (no padding: batching equals one-by-one).

Predicate vocabulary: :data:`stellar.data.prompts.PREDICATES` (built in), plus any predicates the
caller passes (e.g. :func:`stellar.data.prompts.predicate_vocabulary` over a dataset's triplets).
The vocabulary is fixed when the scorer is built, so a triplet's p_pred never depends on which other
images were evaluated; its hash is part of :attr:`ClipRelationScorer.protocol`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stellar.errors import MissingDependencyError, StellarError

#: How a relation region is cut (part of the scorers' protocols): union box, padded to a square with the mean colour.
CROP_RULE = "union-box-pad-square-mean"

#: The BLIP VQA checkpoint used when no other is given (hub id; a registry card can replace it).
DEFAULT_VQA = "Salesforce/blip-vqa-base"


@dataclass(frozen=True)
class RelationQuery:
    """One triplet to score on the region ``box`` of ``image`` (HxWx3 uint8)."""

    image: np.ndarray
    box: tuple[float, float, float, float]
    subject: str
    predicate: str
    object: str


def crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``box`` (x1, y1, x2, y2; floor/ceil to whole pixels), clipped to the image, ≥ 1 pixel.

    >>> crop(np.zeros((10, 20, 3), np.uint8), (-5, 2.5, 7.2, 30)).shape
    (8, 8, 3)
    """
    h, w = image.shape[:2]
    x1 = int(np.clip(np.floor(box[0]), 0, w - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, h - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, w))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, h))
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def square_crop(image: np.ndarray, box: Sequence[float], fill: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """:func:`crop` of ``box``, padded with ``fill`` to a square (the crop centred), so that a model's
    resize + *centre crop* keeps every pixel of the box.

    CLIP's processor resizes the shorter side and centre-crops: on the union box of a person and an
    object side by side (often 3:1) it threw away the outer parts — the person and the object
    themselves — and the relation was scored on the background between them. Padding to a square
    first makes the centre crop a no-op (BLIP's resize-without-crop keeps the aspect ratio too).

    >>> square_crop(np.full((10, 30, 3), 255, np.uint8), (0, 0, 30, 10), fill=(1, 2, 3)).shape
    (30, 30, 3)
    >>> square_crop(np.full((10, 30, 3), 255, np.uint8), (0, 0, 30, 10), fill=(1, 2, 3))[:, :, 0][[0, 10, 19, 20], 0].tolist()
    [1, 255, 255, 1]
    """
    region = crop(image, box)
    h, w = region.shape[:2]
    side = max(h, w)
    if h == w:
        return region
    out = np.empty((side, side, 3), np.uint8)
    out[...] = np.asarray(fill, np.uint8).reshape(1, 1, 3)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = region[..., :3]
    return out


def processor_fill(image_processor) -> tuple[int, int, int]:
    """The padding colour that normalises to 0: the processor's ``image_mean`` in 0–255 (black if none)."""
    mean = getattr(image_processor, "image_mean", None)
    if mean is None or len(mean) != 3:
        return (0, 0, 0)
    return tuple(int(round(float(m) * 255)) for m in mean)  # type: ignore[return-value]


def with_article(noun: str) -> str:
    """``"a horse"``, ``"an umbrella"``, ``"glasses"`` (plural-looking: no article).

    >>> [with_article(n) for n in ("horse", "umbrella", "glasses", "bus", "Eiffel tower")]
    ['a horse', 'an umbrella', 'glasses', 'a bus', 'an Eiffel tower']
    """
    noun = " ".join(noun.split())
    low = noun.lower()
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return noun
    return ("an " if low[:1] in "aeiou" and low else "a ") + noun


def relation_text(subject: str, predicate: str, obj: str) -> str:
    """The CLIP text of a triplet: ``relation_text("person", "riding", "horse") == "a person riding a horse"``."""
    return f"{with_article(subject)} {' '.join(predicate.split())} {with_article(obj)}"


def _vocab_hash(words: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(words)).encode()).hexdigest()[:12]


def _builtin_predicates() -> tuple[str, ...]:
    from stellar.data.prompts import PREDICATES

    return tuple(PREDICATES)


class ClipRelationScorer:
    """p_pred by CLIP zero-shot classification of the union crop over the predicate vocabulary.

    Args:
        clip: a :class:`stellar.models.clip.ClipEncoder`.
        vocabulary: predicates contrasted with each triplet's predicate (default: the built-in list).
    """

    name = "clip"

    def __init__(self, clip, vocabulary: Sequence[str] | None = None):
        self.clip = clip
        words = _builtin_predicates() if vocabulary is None else tuple(vocabulary)
        self.vocabulary = tuple(dict.fromkeys(" ".join(w.lower().split()) for w in words if str(w).strip()))
        if not self.vocabulary:
            raise StellarError("the relation scorer needs at least one predicate in its vocabulary")
        self._texts: dict[str, np.ndarray] = {}

    @property
    def protocol(self) -> str:
        clip = getattr(self.clip, "protocol", None) or self.clip.name
        return f"clip-relation|{clip}|crop={CROP_RULE}|vocab:{len(self.vocabulary)}:{_vocab_hash(self.vocabulary)}|softmax(logit_scale*cos)"

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.clip.model, "logit_scale", None)
        return float(scale.detach().float().exp().item()) if scale is not None else 100.0

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            for t, e in zip(missing, self.clip.encode_texts(missing)):
                self._texts[t] = e
        return np.stack([self._texts[t] for t in texts])

    def score(self, queries: Sequence[RelationQuery]) -> list[float]:
        """p_pred of each query (see the module docstring)."""
        if not queries:
            return []
        fill = processor_fill(self.clip.image_processor)
        images = self.clip.encode_images([square_crop(q.image, q.box, fill) for q in queries]).astype(np.float64)
        scale = self.logit_scale
        out = []
        for q, emb in zip(queries, images):
            pred = " ".join(q.predicate.lower().split())
            preds = self.vocabulary if pred in self.vocabulary else (*self.vocabulary, pred)
            texts = self._embed([relation_text(q.subject, p, q.object) for p in preds]).astype(np.float64)
            logits = scale * texts @ emb
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            out.append(float(probs[preds.index(pred)]))
        return out


class VqaRelationScorer:
    """p_yes of BLIP VQA for "Is the person {p} the {object}?" on the union crop."""

    name = "vqa"

    def __init__(self, model, tokenizer, image_processor, *, name: str, device: str | None = None, batch_size: int = 8):
        import torch

        from stellar.device import resolve_device
        from stellar.models.loading import check_tokenizer

        check_tokenizer(tokenizer, getattr(model.config.text_config, "vocab_size", None), name)
        self.device = resolve_device(device)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        from stellar.models.loading import module_identity

        self.weights = module_identity(model)  # sha256 of the files loaded / hub commit (before the cast)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.tokenizer, self.image_processor, self.name_or_path = tokenizer, image_processor, name
        self.batch_size = max(1, int(batch_size))
        ids = [tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no")]
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise StellarError(f"the tokenizer of {name!r} has no 'yes'/'no' token; it is not a BLIP VQA checkpoint")
        self.yes_no = ids
        self.fill = processor_fill(image_processor)

    @classmethod
    def from_pretrained(cls, spec: str = DEFAULT_VQA, *, device: str | None = None, batch_size: int = 8) -> VqaRelationScorer:
        try:
            import transformers
        except ImportError:
            raise MissingDependencyError("transformers", "clip", "the VQA relation scorer (RFS)") from None
        from stellar.models.loading import pretrained_source

        src = pretrained_source(spec)
        try:
            model = transformers.BlipForQuestionAnswering.from_pretrained(src.path)
            tokenizer = transformers.AutoTokenizer.from_pretrained(src.path)
            processor = transformers.AutoImageProcessor.from_pretrained(src.path)
        except OSError as exc:
            raise StellarError(
                f"cannot load the VQA model {spec!r}: {exc}\n"
                "  fix: download it once with network (or pass a local folder: --relation-scorer vqa with relation_model=PATH)"
            ) from None
        return cls(model, tokenizer, processor, name=src.name, device=device, batch_size=batch_size)

    @property
    def protocol(self) -> str:
        from stellar.models.loading import dtype_tag, processor_settings

        return (
            f"vqa-relation|{self.name_or_path}|weights={self.weights}|dtype={dtype_tag(self.dtype)}|pre={processor_settings(self.image_processor)}"
            f"|crop={CROP_RULE}|Is the person {{p}} the {{o}}?|softmax(yes,no) first answer token"
        )

    @staticmethod
    def question(predicate: str, obj: str) -> str:
        return f"Is the person {' '.join(predicate.split())} the {' '.join(obj.split())}?"

    def score(self, queries: Sequence[RelationQuery]) -> list[float]:
        """p_yes of each query (see the module docstring)."""
        import torch

        cfg = self.model.config.text_config
        ids = [self.tokenizer(self.question(q.predicate, q.object))["input_ids"] for q in queries]
        # questions of equal token length share a batch: no padding, so batching equals one-by-one
        # (BLIP's answer decoder in transformers 5 lets padded question tokens shift its logits)
        by_len: dict[int, list[int]] = {}
        for i, t in enumerate(ids):
            by_len.setdefault(len(t), []).append(i)
        out = [math.nan] * len(queries)
        for group in by_len.values():
            for k in range(0, len(group), self.batch_size):
                chunk = group[k : k + self.batch_size]
                input_ids = torch.tensor([ids[i] for i in chunk], device=self.device)
                crops = [square_crop(queries[i].image, queries[i].box, self.fill) for i in chunk]
                pixels = self.image_processor(images=crops, return_tensors="pt")["pixel_values"]
                with torch.inference_mode():
                    image_embeds = self.model.vision_model(pixel_values=pixels.to(self.device, dtype=self.dtype))[0]
                    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
                    question = self.model.text_encoder(
                        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                        encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask, return_dict=False,
                    )[0]  # fmt: skip
                    bos = torch.full((len(chunk), 1), cfg.bos_token_id, dtype=torch.long, device=self.device)
                    logits = self.model.text_decoder(input_ids=bos, encoder_hidden_states=question).logits
                pair = torch.softmax(logits[:, -1, self.yes_no].float(), dim=-1)[:, 0].cpu().tolist()
                for i, p in zip(chunk, pair):
                    out[i] = float(p)
        return out
