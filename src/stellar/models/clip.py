"""CLIP image/text embeddings through ``transformers`` (CLIP-T, CLIP-I, CLIP_N of the exclusion rule).

:class:`ClipEncoder` wraps a ``CLIPModel`` + tokenizer + image processor:

- ``encode_images(images)`` -> (n, D) L2-normalised image embeddings (the projection head's output);
- ``encode_texts(texts)`` -> (n, D) L2-normalised text embeddings. Prompts longer than the text
  encoder's context (77 tokens for CLIP) are truncated *explicitly*; ``last_truncated`` counts them
  so results can report it — never a crash, never silent.

Default backbone: ``laion/CLIP-ViT-bigG-14-laion2B-39B-b160k`` (DESIGN §6.4), loaded by
:meth:`ClipEncoder.from_pretrained` from a hub id or a local folder. Offline, a tokenizer loaded from a
hub id can come back broken (2 tokens) without an error; we compare the tokenizer's vocabulary with the
model's ``vocab_size`` and refuse a mismatch.

transformers ≥ 5 returns an output object from ``get_image_features``/``get_text_features``; both
shapes are handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from stellar.device import resolve_device
from stellar.errors import MissingDependencyError, StellarError

DEFAULT_CLIP = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised only without torch
        raise MissingDependencyError("torch", "clip", "CLIP metrics") from None
    return torch


def _features(out) -> "object":
    # transformers 5: BaseModelOutputWithPooling (pooler_output = projected embeds); 4.x: a tensor
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    if hasattr(out, "image_embeds"):
        return out.image_embeds
    if hasattr(out, "text_embeds"):
        return out.text_embeds
    return out


@dataclass
class ClipEncoder:
    """A CLIP model ready to embed images and texts; ``name`` identifies it in caches and results."""

    model: object  # transformers.CLIPModel
    tokenizer: object
    image_processor: object
    name: str
    device: str = "cpu"
    batch_size: int = 32
    last_truncated: int = 0
    last_truncated_mask: tuple[bool, ...] = ()  # per text of the last encode_texts call
    weights: str = ""  # identity of the weights (stellar.models.loading.module_identity); computed when empty

    def __post_init__(self):
        torch = _torch()
        self.device = resolve_device(self.device)
        from stellar.models.loading import check_tokenizer

        check_tokenizer(self.tokenizer, getattr(getattr(self.model.config, "text_config", None), "vocab_size", None), self.name)
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        if not self.weights:  # before the dtype cast: an in-memory model is identified by its stored weights
            from stellar.models.loading import module_identity

            self.weights = module_identity(self.model)
        self.model = self.model.to(self.device, dtype=dtype).eval()
        self._dtype = dtype

    @property
    def protocol(self) -> str:
        """Feature-cache namespace and what results record: name, weights identity, dtype, preprocessing.

        The weights identity (sha256 of the files loaded, or the hub commit) makes a folder whose
        weights were replaced in place a different protocol, so no old feature is reused (issue 9.8);
        fp16 and fp32 features, and different image processors, never share cache entries.
        """
        from stellar.models.loading import dtype_tag, model_protocol, processor_settings

        pre = f"{processor_settings(self.image_processor)}|ctx{self.context_length}|vocab{len(self.tokenizer)}"
        return model_protocol("clip", self.name, weights=self.weights, dtype=dtype_tag(self._dtype), preprocessing=pre)

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_CLIP, *, revision: str | None = None, device: str | None = None, batch_size: int = 32) -> "ClipEncoder":
        try:
            from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel
        except ImportError:
            raise MissingDependencyError("transformers", "clip", "CLIP metrics") from None
        kwargs = {"revision": revision} if revision else {}
        try:
            model = CLIPModel.from_pretrained(name_or_path, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
            processor = CLIPImageProcessor.from_pretrained(name_or_path, **kwargs)
        except OSError as exc:
            raise StellarError(
                f"cannot load CLIP model {name_or_path!r}: {exc}\n"
                f"  fix: run with network once (stellar models fetch) or pass a local folder; "
                "without CLIP, identity metrics still run and the exclusion rule is reported as not applied"
            ) from None
        return cls(model, tokenizer, processor, name=f"{name_or_path}@{revision or 'default'}", device=device or "auto", batch_size=batch_size)

    @property
    def context_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def _normalise(self, x) -> np.ndarray:
        x = x.float()
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return x.cpu().numpy().astype(np.float32)

    def encode_images(self, images: Sequence) -> np.ndarray:
        """(n, D) L2-normalised image embeddings of PIL images / HxWx3 uint8 arrays."""
        torch = _torch()
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                batch = self.image_processor(images=list(images[i : i + self.batch_size]), return_tensors="pt")
                pixels = batch["pixel_values"].to(self.device, dtype=self._dtype)
                out.append(self._normalise(_features(self.model.get_image_features(pixel_values=pixels))))
        return np.concatenate(out) if out else np.zeros((0, self.model.config.projection_dim), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) L2-normalised text embeddings; prompts over the context are truncated (counted in ``last_truncated``)."""
        torch = _torch()
        n_ctx = self.context_length
        full = self.tokenizer(list(texts), truncation=False)["input_ids"]
        self.last_truncated_mask = tuple(len(ids) > n_ctx for ids in full)
        self.last_truncated = sum(self.last_truncated_mask)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                tok = self.tokenizer(
                    list(texts[i : i + self.batch_size]), padding="max_length", truncation=True, max_length=n_ctx, return_tensors="pt"
                )
                feats = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device))
                out.append(self._normalise(_features(feats)))
        return np.concatenate(out) if out else np.zeros((0, self.model.config.projection_dim), np.float32)


#: Registry card of the default CLIP backbone (DESIGN §6.4).
DEFAULT_CLIP_CARD = "clip-vit-bigg-14-laion2b"


def load_clip(spec: str | None = DEFAULT_CLIP_CARD, *, device: str | None = None, batch_size: int = 32) -> ClipEncoder:
    """A :class:`ClipEncoder` from a registry card name, a local folder, or a hub id.

    A hub id that a card declares (``laion/CLIP-ViT-bigG-14-laion2B-39B-b160k``) goes through the card
    (pinned revision, verified cache); another hub id loads directly through ``from_pretrained``
    (:func:`stellar.models.loading.pretrained_source`).

    Raises:
        StellarError: the weights are not available (offline and not cached, ...), with the fix.
    """
    from stellar.models.loading import pretrained_source

    src = pretrained_source(spec or DEFAULT_CLIP_CARD)
    encoder = ClipEncoder.from_pretrained(src.path, device=device, batch_size=batch_size)
    encoder.name = src.name
    return encoder
