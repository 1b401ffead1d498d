"""Open-vocabulary detectors through ``transformers``: OWL-ViT, OWLv2, Grounding DINO (DESIGN §6.5).

``detector.detect(images, queries)`` takes HxWx3 uint8 RGB images and one list of text queries per
image (lists may differ in length, and may be empty) and returns, per image, a :class:`Detections`:
every box the model predicts — no threshold, no NMS — in pixels of the *original* image as
(x1, y1, x2, y2), with the score of every query for every box, ``S[n, q] = sigmoid(logit(n, q))``.
A box's label is its best query and its score ``sigmoid(max logit)`` (``Detections.labels`` /
``.scores``); the GOA/RFS arithmetic is in :mod:`stellar.metrics.context`.

Models (registry cards; also a local folder or a hub id):

- ``owlvit-large-patch14`` (default, as the paper): ``OwlViTForObjectDetection``; the image is resized
  to a square without keeping the aspect ratio, so normalised boxes scale by (W, H, W, H).
- ``owlv2-large-patch14-ensemble``: ``Owlv2ForObjectDetection``; the image is padded to a square at
  the bottom/right before resizing, so normalised boxes are relative to the padded S×S square,
  S = max(H, W), and scale by (S, S, S, S). Class logits only (the objectness head is not used).
- ``grounding-dino-base``: ``GroundingDinoForObjectDetection``; one caption per image,
  ``"q1 . q2 . … ."`` (lower case, BERT tokens); boxes are relative to the unpadded image.

Batching. OWL models take ``batch × Q_max`` queries: shorter lists are padded with empty queries and
their columns are dropped before anything else (padded queries never win a box). Grounding DINO
takes one caption per image; the caption is built from the per-query token ids, so the tokens of
each query are known exactly and the logit of query q for a box is the maximum over its tokens
(the special tokens ``[CLS]``, ``.``, ``[SEP]`` belong to no query). Grounding DINO's backbone sees
the zero padding of a batch of different-sized images, so its batches are formed from images of
the same size (generated sets are uniform in practice); batching then equals one-by-one.

Choices / deviations:

- Target sizes are (height, width) of each original image: the official Stellar code swapped them
  (DESIGN §6.9), which stretched boxes on non-square images — not reproduced.
- Grounding DINO's own COCO evaluation averages token probabilities over a phrase; we take the max
  logit over the phrase's tokens so every detector follows the same "sigmoid(max logit)" rule.
- fp16 on CUDA, fp32 elsewhere; the device is a parameter (``None``/``"auto"``: CUDA when available).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stellar.errors import MissingDependencyError, StellarError

DEFAULT_DETECTOR = "owlvit-large-patch14"
#: Version of the detection protocol below (box format, score rule); part of every cache key.
PROTOCOL_VERSION = "ovd-v1"


@dataclass(frozen=True)
class Detections:
    """All predicted boxes of one image with every query's score.

    ``boxes``: (N, 4) float32 (x1, y1, x2, y2) in pixels of the original image (not clipped);
    ``query_scores``: (N, Q) float32, ``sigmoid(logit)`` of each query for each box;
    ``queries``: the Q query texts, in column order.
    """

    boxes: np.ndarray
    query_scores: np.ndarray
    queries: tuple[str, ...]

    @property
    def labels(self) -> np.ndarray:
        """(N,) index of each box's best query (-1 when there is no query)."""
        if self.query_scores.shape[1] == 0:
            return np.full(len(self.boxes), -1, dtype=np.int64)
        return np.argmax(self.query_scores, axis=1).astype(np.int64)

    @property
    def scores(self) -> np.ndarray:
        """(N,) each box's score: sigmoid of its max logit over the queries."""
        if self.query_scores.shape[1] == 0:
            return np.zeros(len(self.boxes), dtype=np.float32)
        return self.query_scores.max(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for the feature cache (queries as a JSON string array, no pickle)."""
        return {
            "boxes": np.asarray(self.boxes, np.float32),
            "query_scores": np.asarray(self.query_scores, np.float32),
            "queries": np.asarray(json.dumps(list(self.queries))),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Detections:
        return cls(arrays["boxes"], arrays["query_scores"], tuple(json.loads(str(arrays["queries"]))))

    def subset(self, rows: Sequence[int]) -> Detections:
        rows = np.asarray(rows, dtype=np.int64)
        return Detections(self.boxes[rows], self.query_scores[rows], self.queries)


def empty_detections(queries: Sequence[str] = ()) -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros((0, len(queries)), np.float32), tuple(queries))


def cxcywh_to_pixels(boxes: np.ndarray, height: int, width: int, *, square_padding: bool = False) -> np.ndarray:
    """Normalised (cx, cy, w, h) boxes -> (x1, y1, x2, y2) pixels of an ``height`` × ``width`` image.

    ``square_padding``: the model saw the image padded to a max(H, W) square at the bottom/right
    (OWLv2), so both axes scale by the square's side.

    >>> cxcywh_to_pixels(np.array([[0.5, 0.5, 1.0, 1.0]]), 100, 200).tolist()
    [[0.0, 0.0, 200.0, 100.0]]
    >>> cxcywh_to_pixels(np.array([[0.5, 0.25, 1.0, 0.5]]), 100, 200, square_padding=True).tolist()
    [[0.0, 0.0, 200.0, 100.0]]
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = (max(height, width),) * 2 if square_padding else (width, height)
    cx, cy, w, h = b[:, 0] * sx, b[:, 1] * sy, b[:, 2] * sx, b[:, 3] * sy
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency of the model extras
        raise MissingDependencyError("torch", "clip", "open-vocabulary detection (GOA/RFS)") from None
    return torch


def _pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise StellarError(f"detector input must be an HxWx3 uint8 RGB image, got {arr.dtype} array of shape {arr.shape}")
    return Image.fromarray(arr)


class OpenVocabDetector:
    """Base of the transformers open-vocabulary detectors; subclasses implement :meth:`_run`.

    Args:
        model, tokenizer, image_processor: the transformers components.
        name: what results record (card@revision, or the folder / hub id).
        device: ``None``/``"auto"`` (CUDA when available) or a torch device string.
        batch_size: images per forward pass.
    """

    family: str = ""

    def __init__(self, model, tokenizer, image_processor, *, name: str, device: str | None = None, batch_size: int = 8):
        from stellar.device import resolve_device
        from stellar.models.loading import check_tokenizer

        torch = _torch()
        check_tokenizer(tokenizer, getattr(getattr(model.config, "text_config", None), "vocab_size", None), name)
        self.device = resolve_device(device)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        from stellar.models.loading import module_identity

        self.weights = module_identity(model)  # sha256 of the files loaded / hub commit (before the cast)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.batch_size = max(1, int(batch_size))
        self.passes = 0  # images sent through the model (tests and benchmarks read it)

    @property
    def protocol(self) -> str:
        """Model + detection rule: the feature-cache namespace and what ``run.json`` records."""
        from stellar.models.loading import dtype_tag, processor_settings

        rule = f"{self.family}|{PROTOCOL_VERSION}|sigmoid-max-logit,no-threshold,original-pixels-xyxy"
        return f"{self.name}|{rule}|weights={self.weights}|dtype={dtype_tag(self.dtype)}|pre={processor_settings(self.image_processor)}"

    def detect(self, images: Sequence, queries: Sequence[Sequence[str]]) -> list[Detections]:
        """Every predicted box of each image with its per-query scores (see the module docstring).

        Args:
            images: HxWx3 uint8 RGB arrays (or PIL images).
            queries: one list of query texts per image (lengths may differ; empty: no detection run).
        """
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images but {len(queries)} query lists")
        out: list[Detections | None] = [None] * len(images)
        todo = []
        for i, q in enumerate(queries):
            q = tuple(str(x) for x in q)
            if not q:
                out[i] = empty_detections()
            else:
                todo.append((i, q))
        for group in self._batches([(i, _pil(images[i]), q) for i, q in todo]):
            results = self._run([im for _, im, _ in group], [q for _, _, q in group])
            self.passes += len(group)
            for (i, _, q), det in zip(group, results):
                out[i] = det
        return out  # type: ignore[return-value]

    def _batches(self, work: list) -> list[list]:
        return [work[k : k + self.batch_size] for k in range(0, len(work), self.batch_size)]

    def _run(self, images: list, queries: list[tuple[str, ...]]) -> list[Detections]:  # pragma: no cover - abstract
        raise NotImplementedError


class OwlDetector(OpenVocabDetector):
    """OWL-ViT (``square_padding=False``) and OWLv2 (``square_padding=True``)."""

    def __init__(self, *args, square_padding: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.square_padding = square_padding
        self.family = "owlv2" if square_padding else "owlvit"

    def _run(self, images: list, queries: list[tuple[str, ...]]) -> list[Detections]:
        torch = _torch()
        q_max = max(len(q) for q in queries)
        flat = [t for q in queries for t in (*q, *[""] * (q_max - len(q)))]
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer(flat, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = self.model(
                input_ids=tok["input_ids"].to(self.device),
                attention_mask=tok["attention_mask"].to(self.device),
                pixel_values=pixels.to(self.device, dtype=self.dtype),
            )
        logits = out.logits.float().cpu().numpy()  # (B, P, q_max)
        boxes = out.pred_boxes.float().cpu().numpy()  # (B, P, 4) normalised cx, cy, w, h
        dets = []
        for b, (im, q) in enumerate(zip(images, queries)):
            scores = 1.0 / (1.0 + np.exp(-logits[b, :, : len(q)]))  # padded query columns dropped
            px = cxcywh_to_pixels(boxes[b], im.height, im.width, square_padding=self.square_padding)
            dets.append(Detections(px, scores.astype(np.float32), q))
        return dets


class GroundingDinoDetector(OpenVocabDetector):
    """Grounding DINO: one ``"q1 . q2 . … ."`` caption per image, token logits mapped back to queries."""

    family = "grounding-dino"

    def _batches(self, work: list) -> list[list]:
        # same-size images only: the backbone would see another image's zero padding otherwise
        by_size: dict[tuple[int, int], list] = {}
        for w in work:
            by_size.setdefault(w[1].size, []).append(w)
        return [g[k : k + self.batch_size] for g in by_size.values() for k in range(0, len(g), self.batch_size)]

    def caption(self, queries: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """Token ids of ``[CLS] q1 . q2 . … . [SEP]`` and the token positions of each query."""
        tk = self.tokenizer
        dot = tk.convert_tokens_to_ids(".")
        ids = [tk.cls_token_id]
        spans = []
        for q in queries:
            piece = tk(" ".join(q.lower().split()), add_special_tokens=False)["input_ids"]
            if not piece:
                raise StellarError(f"the query {q!r} has no tokens for {self.name!r}; remove it from the detectables")
            spans.append(list(range(len(ids), len(ids) + len(piece))))
            ids += piece + [dot]
        ids.append(tk.sep_token_id)
        limit = int(getattr(self.model.config, "max_text_len", 256))
        if len(ids) > limit:
            raise StellarError(
                f"{len(queries)} queries make a {len(ids)}-token caption; {self.name!r} reads at most {limit} tokens.\n"
                "  fix: use fewer or shorter detectables for this prompt, or an OWL detector (--detector owlvit-large-patch14)"
            )
        return ids, spans

    def _run(self, images: list, queries: list[tuple[str, ...]]) -> list[Detections]:
        torch = _torch()
        captions = [self.caption(q) for q in queries]
        n = max(len(ids) for ids, _ in captions)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([ids + [pad] * (n - len(ids)) for ids, _ in captions])
        mask = torch.tensor([[1] * len(ids) + [0] * (n - len(ids)) for ids, _ in captions])
        enc = self.image_processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            out = self.model(
                pixel_values=enc["pixel_values"].to(self.device, dtype=self.dtype),
                pixel_mask=enc["pixel_mask"].to(self.device) if "pixel_mask" in enc else None,
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                token_type_ids=torch.zeros_like(input_ids).to(self.device),
            )
        logits = out.logits.float().cpu().numpy()  # (B, num_queries, max_text_len) token logits
        boxes = out.pred_boxes.float().cpu().numpy()
        dets = []
        for b, (im, q, (_, spans)) in enumerate(zip(images, queries, captions)):
            per_query = np.stack([logits[b][:, span].max(axis=1) for span in spans], axis=1)
            scores = 1.0 / (1.0 + np.exp(-per_query))
            dets.append(Detections(cxcywh_to_pixels(boxes[b], im.height, im.width), scores.astype(np.float32), q))
        return dets


#: config ``model_type`` -> (transformers model class, detector class, keyword arguments). Data, not if/elif.
FAMILIES: dict[str, tuple[str, type[OpenVocabDetector], dict]] = {
    "owlvit": ("OwlViTForObjectDetection", OwlDetector, {"square_padding": False}),
    "owlv2": ("Owlv2ForObjectDetection", OwlDetector, {"square_padding": True}),
    "grounding-dino": ("GroundingDinoForObjectDetection", GroundingDinoDetector, {}),
}


def load_detector(spec: str | None = DEFAULT_DETECTOR, *, device: str | None = None, batch_size: int = 8) -> OpenVocabDetector:
    """An open-vocabulary detector from a registry card, a local folder or a hub id.

    The family (OWL-ViT, OWLv2, Grounding DINO) is read from the checkpoint's ``config.json``.

    Raises:
        StellarError: weights unavailable (with the fetch command), unknown family, broken tokenizer.
        MissingDependencyError: ``transformers`` is not installed.
    """
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("transformers", "clip", "open-vocabulary detection (GOA/RFS)") from None
    from stellar.models.loading import pretrained_source

    src = pretrained_source(spec or DEFAULT_DETECTOR)
    try:
        config = transformers.AutoConfig.from_pretrained(src.path)
        family = FAMILIES.get(config.model_type)
        if family is None:
            raise StellarError(
                f"{spec!r} is a {config.model_type!r} checkpoint, not an open-vocabulary detector; "
                f"supported: {', '.join(FAMILIES)} (cards owlvit-large-patch14, owlv2-large-patch14-ensemble, grounding-dino-base)"
            )
        model_cls, det_cls, kwargs = family
        model = getattr(transformers, model_cls).from_pretrained(src.path)
        tokenizer = transformers.AutoTokenizer.from_pretrained(src.path)
        processor = transformers.AutoImageProcessor.from_pretrained(src.path)
    except OSError as exc:
        raise StellarError(
            f"cannot load detector {spec!r}: {exc}\n"
            "  fix: fetch it once with network (stellar models fetch owlvit-large-patch14) or pass a local folder (--detector PATH)"
        ) from None
    return det_cls(model, tokenizer, processor, name=src.name, device=device, batch_size=batch_size, **kwargs)

