"""ImageReward v1.0 (Xu et al., NeurIPS 2023, arXiv 2304.05977) on ``transformers``' BLIP modules.

ImageReward scores how well an image answers a prompt, trained on 137k expert comparisons. The model:

- **image**: BLIP's ViT-L/16 at 224 px (24 blocks, width 1024, 16 heads, LayerNorm eps 1e-6) → the
  patch tokens ``E`` (last hidden state after the final LayerNorm);
- **text**: BLIP's BERT-base text encoder with cross-attention into ``E`` (``med_config.json``:
  12 layers, width 768, vocabulary 30524 = bert-base-uncased + ``[DEC]`` + ``[ENC]``), run on the
  prompt tokenised by bert-base-uncased — ``[CLS] prompt [SEP]``, padded and **truncated to 35
  tokens** (the length the official ``ImageReward.score`` uses; longer prompts are cut, and we flag
  them) — its ``[CLS]`` output ``t`` (768-d);
- **head**: an MLP 768→1024→128→64→16→1 (dropouts in training only, no non-linearity — the same
  shape as the LAION aesthetic head, :func:`stellar.models.standard.aesthetic_head`);
- **score** = (MLP(t) − μ) / σ with the published normalisation μ = 0.16717362830052426,
  σ = 1.0333394966054072 (ImageReward's ``ImageReward.py``), so scores are roughly standard-normal
  over its training distribution (higher is better).

Preprocessing (the official ``_transform``): resize the shorter side to 224 (bicubic, PIL), centre
crop 224 (torchvision's rounding), RGB, /255, normalise with OpenAI CLIP's mean/std.
:func:`preprocess` implements it on PIL + numpy; tests check it against torchvision's transforms.

**Deviation (documented, issue 12):** the maintained package ``image-reward`` 1.5 does not run here —
its BLIP copy imports ``apply_chunking_to_forward`` from ``transformers.modeling_utils``, removed in
transformers 5, it pins ``timm==0.6.13`` (we have 1.x) and needs OpenAI's ``clip`` package. We load
the official checkpoint ``ImageReward.pt`` (hub ``THUDM/ImageReward``) into ``transformers``'
``BlipVisionModel`` and ``BlipTextModel`` (which are ports of the same BLIP code) by renaming the state
dict keys (:data:`VISION_KEYS`); the text keys already have BLIP's names. Every checkpoint tensor must
be used and every model tensor filled — a mismatch is an error, not a silent partial load (the
official loader uses ``strict=False``). The vision architecture is read from the checkpoint's shapes
(width, depth, patch, image size; heads = width / 64 as in BLIP's ViT-B and ViT-L), the text
architecture from ``med_config.json``; so tiny random checkpoints in the same format load through the
same code in tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.device import resolve_device
from stellar.errors import MissingDependencyError, StellarError

IMAGE_REWARD_CARD = "imagereward-v1"
IMAGE_REWARD_TOKENIZER_CARD = "bert-base-uncased-tokenizer"
CHECKPOINT_FILE = "ImageReward.pt"
MED_CONFIG_FILE = "med_config.json"
#: The published normalisation of the reward head's output (ImageReward.py).
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
#: The text length of ImageReward.score (padding="max_length", truncation=True, max_length=35).
TEXT_LENGTH = 35
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_DIMS = (768, 1024, 128, 64, 16, 1)

#: BLIP ViT (timm-style) key -> transformers ``BlipVisionModel`` key; ``{i}`` = block index.
VISION_KEYS: dict[str, str] = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "blocks.{i}.norm1.weight": "encoder.layers.{i}.layer_norm1.weight",
    "blocks.{i}.norm1.bias": "encoder.layers.{i}.layer_norm1.bias",
    "blocks.{i}.attn.qkv.weight": "encoder.layers.{i}.self_attn.qkv.weight",
    "blocks.{i}.attn.qkv.bias": "encoder.layers.{i}.self_attn.qkv.bias",
    "blocks.{i}.attn.proj.weight": "encoder.layers.{i}.self_attn.projection.weight",
    "blocks.{i}.attn.proj.bias": "encoder.layers.{i}.self_attn.projection.bias",
    "blocks.{i}.norm2.weight": "encoder.layers.{i}.layer_norm2.weight",
    "blocks.{i}.norm2.bias": "encoder.layers.{i}.layer_norm2.bias",
    "blocks.{i}.mlp.fc1.weight": "encoder.layers.{i}.mlp.fc1.weight",
    "blocks.{i}.mlp.fc1.bias": "encoder.layers.{i}.mlp.fc1.bias",
    "blocks.{i}.mlp.fc2.weight": "encoder.layers.{i}.mlp.fc2.weight",
    "blocks.{i}.mlp.fc2.bias": "encoder.layers.{i}.mlp.fc2.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
_VISION_PREFIX = "blip.visual_encoder."
_TEXT_PREFIX = "blip.text_encoder."
_HEAD_PREFIX = "mlp.layers."
# parts of the BLIP pre-training model that ImageReward's checkpoint may carry but never uses
_UNUSED = ("blip.text_decoder.", "blip.vision_proj.", "blip.text_proj.", "blip.itm_head.", "blip.visual_encoder_m.", "blip.text_encoder_m.")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover
        raise MissingDependencyError("torch", "clip", "ImageReward") from None
    return torch


def _patterns() -> list[tuple[re.Pattern, str]]:
    out = []
    for src, dst in VISION_KEYS.items():
        out.append((re.compile("^" + re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)") + "$"), dst))
    return out


def vision_key(key: str) -> str | None:
    """The ``BlipVisionModel`` name of a BLIP ViT key (without ``blip.visual_encoder.``), None if unknown.

    >>> vision_key("blocks.3.attn.qkv.weight"), vision_key("cls_token"), vision_key("head.weight")
    ('encoder.layers.3.self_attn.qkv.weight', 'embeddings.class_embedding', None)
    """
    for pattern, dst in _patterns():
        m = pattern.match(key)
        if m:
            return dst.replace("{i}", m.group("i")) if "i" in m.groupdict() else dst
    return None


def official_vision_key(key: str) -> str | None:
    """The inverse of :func:`vision_key` (``BlipVisionModel`` name -> BLIP ViT name)."""
    for src, dst in VISION_KEYS.items():
        pattern = re.compile("^" + re.escape(dst).replace(r"\{i\}", r"(?P<i>\d+)") + "$")
        m = pattern.match(key)
        if m:
            return src.replace("{i}", m.group("i")) if "i" in m.groupdict() else src
    return None


def preprocess(image, size: int = IMAGE_SIZE) -> np.ndarray:
    """ImageReward's image transform as a (3, size, size) float32 array (module docstring).

    Resize the shorter side to ``size`` (PIL bicubic; the longer side ``int(size * long / short)``, as
    torchvision computes it), centre crop ``size`` (offsets ``round((H - size) / 2)``), /255, normalise.
    """
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    im = im.convert("RGB")
    w, h = im.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    im = im.crop((left, top, left + size, top + size))
    x = np.asarray(im, np.float32) / 255.0
    x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass
class ImageRewardModel:
    """ImageReward v1.0: BLIP ViT + cross-attending BERT + MLP head; ``score`` = (MLP(t) − μ) / σ."""

    vision: object  # transformers.BlipVisionModel
    text: object  # transformers BlipTextModel (cross-attention into the image tokens)
    head: object  # torch.nn.Sequential (aesthetic_head shape), fp32
    tokenizer: object  # BertTokenizer (bert-base-uncased + [DEC] + [ENC])
    name: str
    weights: str
    device: str | None = None
    batch_size: int = 8
    text_length: int = TEXT_LENGTH
    passes: dict = field(default_factory=lambda: {"image": 0, "pair": 0})

    def __post_init__(self):
        torch = _torch()
        from stellar.models.loading import check_tokenizer

        check_tokenizer(self.tokenizer, int(self.text.config.vocab_size), self.name)
        self.device = resolve_device(self.device)
        self.image_size = int(self.vision.config.image_size)  # 224 for ImageReward v1.0 (from the checkpoint)
        self._dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.vision = self.vision.to(self.device, dtype=self._dtype).eval()
        self.text = self.text.to(self.device, dtype=self._dtype).eval()
        self.head = self.head.float().to(self.device).eval()

    @property
    def protocol(self) -> str:
        from stellar.models.loading import dtype_tag, model_protocol

        pre = (
            f"resize-short-{self.image_size}-bicubic-centercrop-openai-norm|bert-uncased-max{self.text_length}-truncate"
            f"|cls->mlp|(x-{REWARD_MEAN})/{REWARD_STD}"
        )
        return model_protocol("imagereward", self.name, weights=self.weights, dtype=dtype_tag(self._dtype), preprocessing=pre)

    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """Per text: does it exceed the 35-token text length (and so get cut)?"""
        full = self.tokenizer(list(texts), truncation=False)["input_ids"]
        return np.asarray([len(ids) > self.text_length for ids in full], dtype=bool)

    def encode_images(self, images: Sequence) -> np.ndarray:
        """(n, tokens, width) image token embeddings (the cross-attention memory), float32."""
        torch = _torch()
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(np.stack([preprocess(im, self.image_size) for im in images[i : i + self.batch_size]]))
                hidden = self.vision(pixel_values=x.to(self.device, dtype=self._dtype)).last_hidden_state
                out.append(hidden.float().cpu().numpy())
                self.passes["image"] += len(x)
        width = int(self.vision.config.hidden_size)
        return np.concatenate(out) if out else np.zeros((0, 0, width), np.float32)

    def score_embeddings(self, texts: Sequence[str], image_tokens: Sequence[np.ndarray]) -> np.ndarray:
        """(n,) rewards of (prompt, image tokens) pairs; batching equals one-by-one (no padding reaches the
        image side; the text side is padded to 35 with its attention mask, as in the official scorer)."""
        torch = _torch()
        if len(texts) != len(image_tokens):
            raise ValueError(f"{len(texts)} texts for {len(image_tokens)} images")
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                chunk = list(texts[i : i + self.batch_size])
                tok = self.tokenizer(chunk, padding="max_length", truncation=True, max_length=self.text_length, return_tensors="pt")
                memory = torch.from_numpy(np.stack([np.asarray(e, np.float32) for e in image_tokens[i : i + self.batch_size]]))
                memory = memory.to(self.device, dtype=self._dtype)
                hidden = self.text(
                    input_ids=tok["input_ids"].to(self.device),
                    attention_mask=tok["attention_mask"].to(self.device),
                    encoder_hidden_states=memory,
                    encoder_attention_mask=torch.ones(memory.shape[:-1], dtype=torch.long, device=self.device),
                    return_dict=True,
                ).last_hidden_state
                reward = self.head(hidden[:, 0, :].float()).reshape(-1)
                out.append(((reward - REWARD_MEAN) / REWARD_STD).cpu().numpy().astype(np.float64))
                self.passes["pair"] += len(chunk)
        return np.concatenate(out) if out else np.zeros(0)

    def score(self, texts: Sequence[str], images: Sequence) -> np.ndarray:
        """(n,) ImageReward of each (prompt, image) pair."""
        return self.score_embeddings(texts, list(self.encode_images(images)))


# ------------------------------------------------------------------------------------------ loading
def _text_config(med: dict, vision_width: int, tokenizer):
    from transformers import BlipTextConfig

    return BlipTextConfig(
        vocab_size=int(med["vocab_size"]),
        hidden_size=int(med["hidden_size"]),
        encoder_hidden_size=int(vision_width),
        intermediate_size=int(med["intermediate_size"]),
        num_hidden_layers=int(med["num_hidden_layers"]),
        num_attention_heads=int(med["num_attention_heads"]),
        max_position_embeddings=int(med.get("max_position_embeddings", 512)),
        layer_norm_eps=float(med.get("layer_norm_eps", 1e-12)),
        hidden_act=med.get("hidden_act", "gelu"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
    )


def _vision_config(vision_state: dict):
    from transformers import BlipVisionConfig

    width = int(vision_state["cls_token"].shape[-1])
    patch = int(vision_state["patch_embed.proj.weight"].shape[-1])
    n_pos = int(vision_state["pos_embed"].shape[1]) - 1
    side = int(round(n_pos**0.5))
    if side * side != n_pos:
        raise StellarError(f"ImageReward checkpoint: {n_pos} position embeddings is not a square grid of patches")
    depth = 1 + max(int(k.split(".")[1]) for k in vision_state if k.startswith("blocks."))
    mlp = int(vision_state["blocks.0.mlp.fc1.weight"].shape[0])
    return BlipVisionConfig(
        hidden_size=width, intermediate_size=mlp, num_hidden_layers=depth, num_attention_heads=max(1, width // 64),
        image_size=side * patch, patch_size=patch, layer_norm_eps=1e-6, hidden_act="gelu", attention_dropout=0.0,
    )  # fmt: skip


def build_image_reward(state: dict, med: dict, tokenizer, *, name: str, weights: str, device: str | None = None, batch_size: int = 8) -> ImageRewardModel:
    """An :class:`ImageRewardModel` from an ``ImageReward.pt`` state dict and its ``med_config.json`` (exact load)."""
    _torch()
    try:
        from transformers import BlipVisionModel
        from transformers.models.blip.modeling_blip_text import BlipTextModel
    except ImportError:
        raise MissingDependencyError("transformers", "clip", "ImageReward") from None
    from stellar.models.standard import aesthetic_head

    state = {k.removeprefix("module."): v for k, v in state.items()}
    vision_state = {k[len(_VISION_PREFIX) :]: v for k, v in state.items() if k.startswith(_VISION_PREFIX)}
    text_state = {k[len(_TEXT_PREFIX) :]: v for k, v in state.items() if k.startswith(_TEXT_PREFIX)}
    head_state = {k[len(_HEAD_PREFIX) :]: v for k, v in state.items() if k.startswith(_HEAD_PREFIX)}
    other = [k for k in state if not k.startswith((_VISION_PREFIX, _TEXT_PREFIX, _HEAD_PREFIX, *_UNUSED))]
    if not vision_state or not text_state or not head_state or other:
        raise StellarError(
            f"{name}: not an ImageReward checkpoint (expected blip.visual_encoder.*, blip.text_encoder.*, mlp.layers.*; "
            f"found {len(vision_state)}/{len(text_state)}/{len(head_state)} of them and unexpected {other[:6]})"
        )
    vision = BlipVisionModel(_vision_config(vision_state))
    renamed = {}
    for k, v in vision_state.items():
        new = vision_key(k)
        if new is None:
            raise StellarError(f"{name}: unknown vision key blip.visual_encoder.{k}")
        renamed[new] = v.reshape(vision.state_dict()[new].shape) if new in vision.state_dict() else v
    _load_exact(vision, renamed, name, "vision")
    text = BlipTextModel(_text_config(med, vision.config.hidden_size, tokenizer), add_pooling_layer=False)
    text_state = {k: v for k, v in text_state.items() if not k.endswith("position_ids")}
    _load_exact(text, text_state, name, "text")
    dims = [int(head_state["0.weight"].shape[1])] + [int(head_state[f"{i}.weight"].shape[0]) for i in (0, 2, 4, 6, 7)]
    head = aesthetic_head(dims)
    _load_exact(head, head_state, name, "head")
    return ImageRewardModel(vision, text, head, tokenizer, name=name, weights=weights, device=device, batch_size=batch_size)


def _load_exact(module, state: dict, name: str, part: str) -> None:
    own = {k for k in module.state_dict() if not k.endswith("position_ids")}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise StellarError(f"{name}: the ImageReward {part} weights do not fit: missing {missing[:6]}, unexpected {unexpected[:6]}")
    module.load_state_dict(state, strict=False)


def _tokenizer(folder: Path):
    from transformers import BertTokenizer

    vocab = folder / "vocab.txt"
    if not vocab.is_file():
        raise StellarError(f"ImageReward tokenizer: {folder} has no vocab.txt (bert-base-uncased).\n  fix: stellar models fetch {IMAGE_REWARD_TOKENIZER_CARD}")
    tok = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    # BLIP's init_tokenizer: [DEC] as the BOS token and [ENC] as an extra special token (ids 30522, 30523)
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tok


def load_image_reward(spec: str | None = None, tokenizer: str | None = None, *, device: str | None = None, batch_size: int = 8) -> ImageRewardModel:
    """ImageReward v1.0 from the card ``imagereward-v1`` (or a folder holding ``ImageReward.pt`` and
    ``med_config.json``), its bert-base-uncased ``vocab.txt`` from ``tokenizer`` (card
    ``bert-base-uncased-tokenizer`` by default, or the model folder when it holds a ``vocab.txt``)."""
    torch = _torch()
    from stellar.models.loading import weights_identity
    from stellar.models.standard import _find_card, _card_revision

    spec = spec or IMAGE_REWARD_CARD
    folder = Path(spec).expanduser()
    if folder.is_dir():
        ckpt, med_file, name = folder / CHECKPOINT_FILE, folder / MED_CONFIG_FILE, f"local:{folder.resolve()}"
        for f in (ckpt, med_file):
            if not f.is_file():
                raise StellarError(f"ImageReward: {folder} has no {f.name}.\n  fix: pass a folder with {CHECKPOINT_FILE} and {MED_CONFIG_FILE}, or the card {IMAGE_REWARD_CARD!r}")
    else:
        from stellar.models import registry

        card = _find_card(spec)
        if card is None:
            raise StellarError(f"ImageReward: {spec!r} is neither a folder nor a model card.\n  fix: pass {IMAGE_REWARD_CARD!r} or a folder")
        ckpt, med_file = registry.resolve_file(card.name, CHECKPOINT_FILE), registry.resolve_file(card.name, MED_CONFIG_FILE)
        name = f"{card.name}@{_card_revision(card)}"
    if tokenizer is None:
        tokenizer = str(folder) if folder.is_dir() and (folder / "vocab.txt").is_file() else IMAGE_REWARD_TOKENIZER_CARD
    tok_folder = Path(tokenizer).expanduser()
    if not tok_folder.is_dir():
        from stellar.models import registry

        tok_folder = registry.resolve_file(tokenizer, "vocab.txt").parent
    tok = _tokenizer(tok_folder)
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
        med = json.loads(Path(med_file).read_text())
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one actionable error
        raise StellarError(f"cannot read ImageReward files {ckpt} / {med_file}: {exc}\n  fix: stellar models fetch {IMAGE_REWARD_CARD}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise StellarError(f"{ckpt} holds no state dict")
    weights = weights_identity(ckpt, med_file, tok_folder / "vocab.txt")
    return build_image_reward(state, med, tok, name=name, weights=weights, device=device, batch_size=batch_size)
