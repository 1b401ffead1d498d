"""Backbones of the standard comparison metrics (DESIGN §6.7): DINO, PickScore, LAION Aesthetic, HPSv2.

Each loader takes a registry card name (default: the card the paper's metric uses), a local folder
laid out like the real checkpoint, or — for single-file weights — the file itself; weights come from
:func:`stellar.models.registry.resolve` (pinned revision, verified cache, offline errors that name
the fetch command). Heavy stacks (``torch``, ``transformers``, ``open_clip``) are imported lazily.
The device is a parameter (``None``/``"auto"``: cuda when available, else cpu); on GPU the models
run in fp16. Every wrapper has a ``protocol`` string (card + revision + preprocessing + dtype): the
feature-cache namespace and what ``run.json`` records.

- :class:`DinoEncoder` (card ``dino-vits16``, ``facebook/dino-vits16``): ``transformers`` ``ViTModel``
  + the checkpoint's own ``ViTImageProcessor``; embedding = CLS token of the last hidden state
  (``last_hidden_state[:, 0]``), L2-normalised. The DINO metric is cos(input photo, generated image)
  (Ruiz et al., DreamBooth, CVPR 2023). *Preprocessing*: the hub checkpoint's processor config
  (``size 224``, ``resample 2`` = bilinear, no centre crop, mean = std = 0.5) is used as shipped —
  it is what ``ViTImageProcessor.from_pretrained("facebook/dino-vits16")`` does, hence what code built on
  transformers reports; it is **not** the original DINO repo's eval transform (resize 256, crop 224,
  ImageNet mean/std). The protocol string records the processor settings in use.
- :class:`PickScoreModel` (card ``pickscore-v1`` + processor card ``clip-vit-h-14-laion2b-processor``):
  the fine-tuned ``CLIPModel`` wrapped in a :class:`~stellar.models.clip.ClipEncoder` (same
  tokenizer-vocab sanity check, explicit 77-token truncation, fp16 on GPU). Canonical score
  (PickScore README / Kirstain et al., NeurIPS 2023):
  ``pick_score = logit_scale.exp() · cos(text, image)`` (``logit_scale.exp()`` ≈ 100 for PickScore_v1);
  ``pick_score_raw = cos(text, image)`` is what the official Stellar code reports.
- :class:`AestheticPredictor` (card ``laion-aesthetic-v2``, backbone card ``clip-vit-l-14-openai``):
  the LAION improved-aesthetic-predictor head — 5 linear layers 768→1024→128→64→16→1 with dropouts
  0.2/0.2/0.1 after the first three (identity at inference) and **no** non-linearity, as in
  christophschuhmann/improved-aesthetic-predictor — on the L2-normalised CLIP ViT-L/14 image
  embedding. The ``.pth`` state dict loads unchanged (keys ``layers.{0,2,4,6,7}.{weight,bias}``).
  The head runs in fp32 (it is tiny); the score is roughly a 1–10 mean opinion score.
- :class:`HpsModel` (card ``hpsv2``, files ``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt``):
  ``open_clip`` ViT-H-14 (extra ``hps``) loaded with the HPS checkpoint's ``state_dict``. Score =
  cos(text, image) — what ``hpsv2.score()`` returns per image (``diag(image_features @ text_features.T)``
  of normalised features); HPSv2's *benchmark tables* show 100× averages. Preprocessing as HPSv2's
  ``preprocess_val``: resize the longest side to 224 (bicubic), pad to a square with black, OpenAI
  CLIP mean/std (open_clip ``resize_mode="longest"``). Text: open_clip's packaged BPE tokenizer,
  77 tokens, truncation counted. On GPU the model runs under fp16 autocast (HPSv2's ``precision="amp"``).
  A folder may carry an ``open_clip_config.json`` (``{"model_cfg": {...}}``, the open_clip hub
  format) to declare another architecture — tests use it for a tiny model; without it: ViT-H-14.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.device import resolve_device
from stellar.errors import MissingDependencyError, StellarError
from stellar.models.clip import ClipEncoder, load_clip
from stellar.models.loading import model_protocol, module_identity, weights_identity
from stellar.models.loading import processor_settings as _processor_settings

DEFAULT_DINO_CARD = "dino-vits16"
DEFAULT_PICKSCORE_CARD = "pickscore-v1"
PICKSCORE_PROCESSOR_CARD = "clip-vit-h-14-laion2b-processor"
DEFAULT_AESTHETIC_CARD = "laion-aesthetic-v2"
AESTHETIC_WEIGHTS_FILE = "sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_CLIP_CARD = "clip-vit-l-14-openai"
HPS_CARD = "hpsv2"
HPS_V1_CARD = "hpsv1"
#: HPS version -> checkpoint file of its card (v2: the names of the xswu/HPSv2 hub repo; v1: align_sd's hpc.pt).
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt", "v1": "hpc.pt"}
DEFAULT_HPS_VERSION = "v2.0"  # the version the Stellar paper could use (v2.1 was released later)
HPS_ARCHITECTURE = "ViT-H-14"


@dataclass(frozen=True)
class HpsVariant:
    """What differs between HPS v1 and v2: card, open_clip architecture, resize rule, score scale."""

    card: str
    architecture: str  # open_clip model config name
    resize_mode: str  # open_clip image_transform: "longest" (letterbox, v2) | "shortest" (+ centre crop, v1)
    scale: float  # score = scale · cos(text, image)


HPS_VARIANTS: dict[str, HpsVariant] = {
    # HPSv2 (Wu et al. 2023, arXiv 2306.09341): hpsv2.score() returns the cosine; preprocess_val letterboxes
    "v2.0": HpsVariant(HPS_CARD, "ViT-H-14", "longest", 1.0),
    "v2.1": HpsVariant(HPS_CARD, "ViT-H-14", "longest", 1.0),
    # HPS v1 (Wu et al. 2023, "Better Aligning Text-to-Image Models with Human Preference", arXiv 2303.14420):
    # OpenAI CLIP ViT-L/14 (QuickGELU) fine-tuned; clip.load's preprocessing (resize 224 bicubic, centre crop);
    # HPS = 100 · cos(image, text)
    "v1": HpsVariant(HPS_V1_CARD, "ViT-L-14-quickgelu", "shortest", 100.0),
}
_OPEN_CLIP_CONFIG = "open_clip_config.json"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised only without torch
        raise MissingDependencyError("torch", "clip", "standard metrics (DINO, PickScore, Aesthetic, HPSv2)") from None
    return torch


def _transformers():
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("transformers", "clip", "DINO / PickScore / Aesthetic") from None
    return transformers


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise MissingDependencyError("open_clip_torch", "hps", "HPSv2") from None
    return open_clip


def _card_revision(card) -> str:
    return next((getattr(s, "revision", None) for s in card.sources if getattr(s, "revision", None)), "unpinned")


def _find_card(spec: str):
    """The card named ``spec``, or declaring the hub id ``spec``; ``None`` when there is none."""
    from stellar.models import registry

    try:
        return registry.get_card(spec)
    except registry.UnknownModelError:
        return next((c for c in registry.list_cards() if any(getattr(s, "repo_id", None) == spec for s in c.sources)), None)


def resolve_folder(spec: str, anchor: str, what: str) -> tuple[Path, str]:
    """(local folder, name) of a model given as a local folder or a registry card / declared hub id.

    ``anchor`` is a file the folder must hold (``config.json`` ...); ``name`` is ``card@revision`` or
    ``local:PATH`` — it goes into protocols and results.
    """
    from stellar.models import registry

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / anchor).is_file():
            raise StellarError(f"{what}: folder {path} has no {anchor}.\n  fix: pass the folder of a saved checkpoint or a card name (stellar models list)")
        return path, f"local:{path.resolve()}"
    card = _find_card(spec)
    if card is None:
        raise StellarError(f"{what}: {spec!r} is neither a local folder nor a model card.\n  fix: pass a card name (stellar models list) or a folder")
    files = registry.resolve(card.name)
    if anchor not in files:
        raise StellarError(f"{what}: model card {card.name!r} provides no {anchor}; it is not the expected kind of checkpoint")
    return files[anchor].parent, f"{card.name}@{_card_revision(card)}"


def _l2(x) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def _dtype_tag(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "fp32"


# ---------------------------------------------------------------------------------------------- DINO
@dataclass
class DinoEncoder:
    """DINO ViT image embeddings: L2-normalised CLS token of the last hidden state."""

    model: object  # transformers.ViTModel
    processor: object  # transformers.ViTImageProcessor
    name: str
    device: str | None = None
    batch_size: int = 32

    def __post_init__(self):
        torch = _torch()
        self.device = resolve_device(self.device)
        self._dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.weights = module_identity(self.model)  # before the cast: the stored weights
        self.model = self.model.to(self.device, dtype=self._dtype).eval()

    @property
    def protocol(self) -> str:
        pre = f"cls-l2|{_processor_settings(self.processor)}"
        return model_protocol("dino", self.name, weights=self.weights, dtype=_dtype_tag(self.device), preprocessing=pre)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode_images(self, images: Sequence) -> np.ndarray:
        """(n, hidden) L2-normalised CLS embeddings of PIL images / HxWx3 uint8 arrays."""
        torch = _torch()
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                pixels = self.processor(images=list(images[i : i + self.batch_size]), return_tensors="pt")["pixel_values"]
                hidden = self.model(pixel_values=pixels.to(self.device, dtype=self._dtype)).last_hidden_state
                out.append(_l2(hidden[:, 0]))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def load_dino(spec: str | None = None, *, device: str | None = None, batch_size: int = 32) -> DinoEncoder:
    """A :class:`DinoEncoder` from a card name (default ``dino-vits16``) or a local transformers folder."""
    tf = _transformers()
    folder, name = resolve_folder(spec or DEFAULT_DINO_CARD, "config.json", "DINO")
    if not (folder / "preprocessor_config.json").is_file():
        raise StellarError(f"DINO: {folder} has no preprocessor_config.json (the checkpoint's image processor).\n  fix: save the ViTImageProcessor next to the model")
    model = tf.ViTModel.from_pretrained(str(folder), add_pooling_layer=False)
    processor = tf.ViTImageProcessor.from_pretrained(str(folder))
    return DinoEncoder(model, processor, name=name, device=device, batch_size=batch_size)


# ----------------------------------------------------------------------------------------- PickScore
@dataclass
class PickScoreModel:
    """PickScore v1: a CLIP encoder plus its learned temperature (``logit_scale.exp()``)."""

    encoder: ClipEncoder
    logit_scale: float  # exp of the model's logit_scale parameter: the canonical score's factor

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def protocol(self) -> str:
        pre = f"ctx{self.encoder.context_length}|{_processor_settings(self.encoder.image_processor)}"
        return model_protocol("pickscore", self.encoder.name, weights=self.encoder.weights, dtype=_dtype_tag(self.encoder.device), preprocessing=pre)

    def encode_images(self, images: Sequence) -> np.ndarray:
        return self.encoder.encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised embeddings, per-text bool: was truncated to the context)."""
        emb = self.encoder.encode_texts(texts)
        return emb, np.asarray(self.encoder.last_truncated_mask, dtype=bool).reshape(len(texts))

    def scores(self, text_emb: np.ndarray, image_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row-wise (canonical, raw): ``logit_scale.exp() · cos`` and ``cos`` of paired embeddings."""
        raw = np.sum(np.asarray(text_emb, np.float64) * np.asarray(image_emb, np.float64), axis=-1)
        return self.logit_scale * raw, raw


def load_pickscore(spec: str | None = None, processor: str | None = None, *, device: str | None = None, batch_size: int = 32) -> PickScoreModel:
    """PickScore from a card (default ``pickscore-v1``) or a folder, with its tokenizer/image processor.

    ``processor``: a card or folder with the tokenizer and ``preprocessor_config.json``; default: the
    model folder when it holds a tokenizer, else the card ``clip-vit-h-14-laion2b-processor`` (PickScore's
    hub repo ships no processor; its README loads the one of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``).
    """
    tf = _transformers()
    folder, name = resolve_folder(spec or DEFAULT_PICKSCORE_CARD, "config.json", "PickScore")
    if processor is None:
        has_tok = any((folder / f).is_file() for f in _TOKENIZER_FILES) and (folder / "preprocessor_config.json").is_file()
        processor = str(folder) if has_tok else PICKSCORE_PROCESSOR_CARD
    proc_folder, proc_name = resolve_folder(processor, "preprocessor_config.json", "PickScore processor")
    try:
        model = tf.CLIPModel.from_pretrained(str(folder))
        tokenizer = tf.AutoTokenizer.from_pretrained(str(proc_folder))
        image_processor = tf.CLIPImageProcessor.from_pretrained(str(proc_folder))
    except OSError as exc:
        raise StellarError(f"cannot load PickScore from {folder} / {proc_folder}: {exc}") from None
    logit_scale = float(model.logit_scale.detach().float().exp())
    full_name = name if proc_folder == folder else f"{name}+{proc_name}"
    weights = weights_identity(folder) if proc_folder == folder else f"{weights_identity(folder)}+{weights_identity(proc_folder)}"
    encoder = ClipEncoder(model, tokenizer, image_processor, name=full_name, device=device or "auto", batch_size=batch_size, weights=weights)
    return PickScoreModel(encoder, logit_scale)


# ----------------------------------------------------------------------------------------- Aesthetic
_AESTHETIC_LINEAR = (0, 2, 4, 6, 7)  # Sequential indices of the Linear layers (dropouts at 1, 3, 5)
_AESTHETIC_DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}


def aesthetic_head(dims: Sequence[int] = (768, 1024, 128, 64, 16, 1)):
    """The improved-aesthetic-predictor MLP as ``torch.nn.Sequential`` (state-dict keys ``{0,2,4,6,7}.*``)."""
    torch = _torch()
    nn = torch.nn
    if len(dims) != 6:
        raise ValueError(f"the aesthetic head has 5 linear layers (6 sizes), got {list(dims)}")
    layers = []
    for k in range(5):
        layers.append(nn.Linear(dims[k], dims[k + 1]))
        if len(layers) in _AESTHETIC_DROPOUT:
            layers.append(nn.Dropout(_AESTHETIC_DROPOUT[len(layers)]))
    return nn.Sequential(*layers)


@dataclass
class AestheticPredictor:
    """LAION aesthetic score = MLP(normalised CLIP ViT-L/14 image embedding)."""

    clip: ClipEncoder
    head: object  # torch.nn.Sequential from aesthetic_head, fp32, eval mode
    name: str
    weights: str = ""  # identity of the head's weights file (stellar.models.loading); computed when empty

    def __post_init__(self):
        if not self.weights:
            self.weights = module_identity(self.head)

    @property
    def protocol(self) -> str:
        # the head runs in fp32; the backbone's protocol carries its own weights, dtype and preprocessing
        return model_protocol("aesthetic", self.name, weights=self.weights, dtype="head-fp32", preprocessing=f"backbone=({self.clip.protocol})")

    def encode_images(self, images: Sequence) -> np.ndarray:
        return self.clip.encode_images(images)

    def score_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """(n,) aesthetic scores of (n, D) L2-normalised CLIP image embeddings."""
        torch = _torch()
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(embeddings, np.float32))
            return self.head(x).reshape(-1).numpy().astype(np.float64)

    def score_images(self, images: Sequence) -> np.ndarray:
        return self.score_embeddings(self.encode_images(images))


def _aesthetic_weights(spec: str) -> tuple[Path, str]:
    from stellar.models import registry

    path = Path(spec).expanduser()
    if path.is_file():
        return path, f"local:{path.resolve()}"
    if path.is_dir():
        if (path / AESTHETIC_WEIGHTS_FILE).is_file():
            return path / AESTHETIC_WEIGHTS_FILE, f"local:{(path / AESTHETIC_WEIGHTS_FILE).resolve()}"
        found = sorted(path.glob("*.pth"))
        if len(found) != 1:
            raise StellarError(f"aesthetic: {path} should hold {AESTHETIC_WEIGHTS_FILE} (or exactly one .pth), found {len(found)}")
        return found[0], f"local:{found[0].resolve()}"
    card = _find_card(spec)
    if card is None:
        raise StellarError(f"aesthetic: {spec!r} is neither a weights file, a folder nor a model card.\n  fix: pass {DEFAULT_AESTHETIC_CARD!r} or a .pth path")
    files = registry.resolve(card.name)
    if len(files) != 1:
        raise StellarError(f"aesthetic: model card {card.name!r} should provide one .pth file, it provides {sorted(files)}")
    return next(iter(files.values())), f"{card.name}@{_card_revision(card)}"


def load_aesthetic_head(path: str | Path):
    """Load an improved-aesthetic-predictor ``.pth`` (its state dict, unchanged) into :func:`aesthetic_head`."""
    torch = _torch()
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same actionable error
        raise StellarError(f"cannot read aesthetic weights {path}: {exc}\n  fix: stellar models fetch {DEFAULT_AESTHETIC_CARD}") from None
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint instead of a bare state dict
        state = state["state_dict"]
    expected = {f"layers.{i}.{p}" for i in _AESTHETIC_LINEAR for p in ("weight", "bias")}
    if not isinstance(state, dict) or set(state) != expected:
        got = sorted(state)[:12] if isinstance(state, dict) else type(state).__name__
        raise StellarError(f"{path} is not an improved-aesthetic-predictor state dict: expected keys {sorted(expected)}, got {got}")
    dims = [int(state["layers.0.weight"].shape[1])] + [int(state[f"layers.{i}.weight"].shape[0]) for i in _AESTHETIC_LINEAR]
    head = aesthetic_head(dims)
    head.load_state_dict({k[len("layers.") :]: v.float() for k, v in state.items()})
    return head.float().eval()


def load_aesthetic(
    spec: str | None = None, clip: str | ClipEncoder | None = None, *, device: str | None = None, batch_size: int = 32
) -> AestheticPredictor:
    """The LAION aesthetic predictor: head weights (card ``laion-aesthetic-v2``, a folder or a ``.pth``)
    on a CLIP backbone (card ``clip-vit-l-14-openai``, a folder, or a :class:`ClipEncoder`)."""
    path, name = _aesthetic_weights(spec or DEFAULT_AESTHETIC_CARD)
    head = load_aesthetic_head(path)
    encoder = clip if isinstance(clip, ClipEncoder) else load_clip(clip or AESTHETIC_CLIP_CARD, device=device, batch_size=batch_size)
    dim = int(encoder.model.config.projection_dim)
    if head[0].in_features != dim:
        raise StellarError(
            f"aesthetic head {path} expects {head[0].in_features}-d CLIP embeddings but {encoder.name} gives {dim}-d.\n"
            f"  fix: use the backbone the head was trained on ({AESTHETIC_CLIP_CARD} for {AESTHETIC_WEIGHTS_FILE})"
        )
    return AestheticPredictor(encoder, head, name, weights=weights_identity(path))


# --------------------------------------------------------------------------------------------- HPSv2
@dataclass
class HpsModel:
    """HPS v2 / v2.1: an open_clip CLIP with the HPS weights; score = cos(text, image)."""

    model: object  # open_clip.CLIP
    tokenizer: object  # open_clip SimpleTokenizer
    preprocess: object  # PIL image -> normalised tensor
    name: str
    version: str
    preprocess_tag: str = "resize-longest-224-bicubic-pad0-openai-norm"
    device: str | None = None
    batch_size: int = 32
    last_truncated: int = 0
    last_truncated_mask: tuple[bool, ...] = field(default=())
    weights: str = ""  # identity of the checkpoint file(s) (stellar.models.loading); computed when empty
    scale: float = 1.0  # score = scale · cos (100 for HPS v1)

    def __post_init__(self):
        self.device = resolve_device(self.device)
        if not self.weights:
            self.weights = module_identity(self.model)
        vocab = int(getattr(self.model, "vocab_size", 0) or 0)
        n_tok = len(getattr(self.tokenizer, "encoder", {}))
        if vocab and n_tok and n_tok != vocab:
            raise StellarError(f"HPS tokenizer has {n_tok} tokens but the model {self.name!r} expects {vocab}: wrong architecture config for this checkpoint")
        self.model = self.model.to(self.device).eval()

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def protocol(self) -> str:
        dtype = "amp-fp16" if self.device.startswith("cuda") else "fp32"
        kind = "hpsv1" if self.version == "v1" else f"hpsv2-{self.version}"
        return model_protocol(kind, self.name, weights=self.weights, dtype=dtype, preprocessing=f"{self.preprocess_tag}|ctx{self.context_length}|score={self.scale:g}*cos")

    def _autocast(self):
        torch = _torch()
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        import contextlib

        return contextlib.nullcontext()

    def encode_images(self, images: Sequence) -> np.ndarray:
        """(n, D) L2-normalised image embeddings of PIL images / HxWx3 uint8 arrays."""
        from PIL import Image

        torch = _torch()
        out = []
        with torch.inference_mode(), self._autocast():
            for i in range(0, len(images), self.batch_size):
                chunk = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8)) for im in images[i : i + self.batch_size]]
                x = torch.stack([self.preprocess(im.convert("RGB")) for im in chunk]).to(self.device)
                out.append(_l2(self.model.encode_image(x)))
        return np.concatenate(out) if out else np.zeros((0, int(self.model.text_projection.shape[1])), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised embeddings, per-text bool truncated): texts over the context (77) are cut explicitly."""
        torch = _torch()
        n_ctx = self.context_length
        # +2: the start and end tokens the tokenizer adds around the BPE tokens
        self.last_truncated_mask = tuple(len(self.tokenizer.encode(t)) + 2 > n_ctx for t in texts)
        self.last_truncated = sum(self.last_truncated_mask)
        out = []
        with torch.inference_mode(), self._autocast():
            for i in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[i : i + self.batch_size]), context_length=n_ctx).to(self.device)
                out.append(_l2(self.model.encode_text(tokens)))
        emb = np.concatenate(out) if out else np.zeros((0, int(self.model.text_projection.shape[1])), np.float32)
        return emb, np.asarray(self.last_truncated_mask, dtype=bool).reshape(len(texts))

    def scores(self, text_emb: np.ndarray, image_emb: np.ndarray) -> np.ndarray:
        """Row-wise HPS = scale · cos(text, image): the cosine for HPSv2 (its benchmark tables show 100×),
        100 · cos for HPS v1."""
        return self.scale * np.sum(np.asarray(text_emb, np.float64) * np.asarray(image_emb, np.float64), axis=-1)


def _hps_checkpoint(spec: str | None, version: str) -> tuple[Path, str]:
    from stellar.models import registry

    filename = HPS_FILES[version]
    default_card = HPS_VARIANTS[version].card
    if spec is None or _find_card(spec) is not None:
        card = _find_card(spec or default_card)
        return registry.resolve_file(card.name, filename), f"{card.name}@{_card_revision(card)}/{filename}"
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise StellarError(f"HPS {version}: checkpoint {path} not found.\n  fix: pass a folder holding {filename}, the file itself, or the card {default_card!r}")
    return path, f"local:{path.resolve()}"


def load_hps(version: str = DEFAULT_HPS_VERSION, spec: str | None = None, *, device: str | None = None, batch_size: int = 32) -> HpsModel:
    """HPS ``version`` (``"v2.0"`` | ``"v2.1"`` from the card ``hpsv2``; ``"v1"`` from the card ``hpsv1``),
    or a folder / checkpoint file.

    The architecture is ``open_clip``'s ViT-H-14 (v2) or ViT-L-14-quickgelu (v1, OpenAI CLIP) unless the
    checkpoint's folder holds an ``open_clip_config.json`` (``{"model_cfg": {...}}``). HPS v1's ``hpc.pt``
    is an OpenAI ``clip`` state dict (``{"state_dict": ...}``); its integer entries ``input_resolution``,
    ``context_length``, ``vocab_size`` are metadata of OpenAI's format, not weights, and are dropped.
    """
    if version not in HPS_FILES:
        raise StellarError(f"unknown HPS version {version!r}; choose one of {', '.join(HPS_FILES)}")
    variant = HPS_VARIANTS[version]
    open_clip = _open_clip()
    torch = _torch()
    path, name = _hps_checkpoint(spec, version)
    config_file = path.parent / _OPEN_CLIP_CONFIG
    if config_file.is_file():
        cfg = json.loads(config_file.read_text())
        model_cfg = cfg.get("model_cfg", cfg)
        name += f"|arch={json.dumps(model_cfg, sort_keys=True, separators=(',', ':'))}"
    else:
        model_cfg = open_clip.get_model_config(variant.architecture)
        name += f"|arch={variant.architecture}"
    model = open_clip.CLIP(**model_cfg)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise StellarError(f"cannot read HPS checkpoint {path}: {exc}\n  fix: stellar models fetch {variant.card}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise StellarError(f"{path} holds no state dict (expected {{'state_dict': ...}} as the HPSv2 checkpoints)")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DistributedDataParallel
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}  # OpenAI metadata
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise StellarError(
            f"HPS checkpoint {path} does not fit the {variant.architecture if not config_file.is_file() else config_file} architecture: "
            f"missing {list(missing)[:8]}, unexpected {list(unexpected)[:8]}"
        )
    size = model.visual.image_size
    preprocess = open_clip.image_transform(
        size, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD,
        resize_mode=variant.resize_mode, interpolation="bicubic", fill_color=0,
    )  # fmt: skip
    side = size if isinstance(size, int) else size[0]
    tag = f"resize-longest-{side}-bicubic-pad0-openai-norm" if variant.resize_mode == "longest" else f"resize-shortest-{side}-bicubic-centercrop-openai-norm"
    tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    weights = weights_identity(path, config_file) if config_file.is_file() else weights_identity(path)
    return HpsModel(
        model, tokenizer, preprocess, name=name, version=version, preprocess_tag=tag,
        device=device, batch_size=batch_size, weights=weights, scale=variant.scale,
    )  # fmt: skip
