"""DreamSim perceptual distance (Fu et al., NeurIPS 2023, arXiv 2306.09344) — the ``ensemble`` model of
the ``dreamsim`` package 0.2.1 (MIT), loaded without the package (DESIGN §4, §6.7).

Why a loader of our own: ``dreamsim.dreamsim()`` builds its DINO backbone with
``torch.hub.load("facebookresearch/dino:main", ...)`` (a GitHub clone + download at run time, impossible
offline and outside our registry) and downloads its checkpoint zip itself. We read the package's source
to learn the computation and rebuild it here from plain torch modules, loading the *released* files:

- the three backbones, each a DINO-style ViT-B/16 (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
  ``pos_drop``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``):
  ``dino_vitb16`` (DINO ViT-B/16, LayerNorm eps 1e-6, GELU; weights ``dino_vitbase16_pretrain.pth``, the
  file torch.hub's ``dino_vitb16`` loads), ``clip_vitb16`` (OpenAI CLIP ViT-B/16 converted by the DreamSim
  authors to that layout: ``clip_vitb16_pretrain.pth.tar`` in the release zip, a ``state_dict`` with an
  extra ``proj`` matrix; ``pos_drop`` is CLIP's ``ln_pre`` LayerNorm, eps 1e-5, QuickGELU) and
  ``open_clip_vitb16`` (OpenCLIP ViT-B/16 LAION-400M, same conversion, ``open_clip_vitb16_pretrain.pth.tar``,
  eps 1e-5, GELU);
- the LoRA adapter ``ensemble_lora/`` (PEFT format: ``adapter_config.json`` + ``adapter_model.safetensors``
  — what other projects' DreamSim caches list for this zip; a folder may hold the older ``.bin``), merged into the backbone weights: W ← W + (lora_alpha / r) · B·A for every adapted
  linear layer (exact at inference: LoRA dropout is inactive).

The computation (``dreamsim(pretrained=True, normalize_embeds=True, dreamsim_type="ensemble")``):

1. image → RGB → resize to 224×224, bicubic, **no crop** (aspect not kept) → [0, 1] tensor;
2. per backbone: normalise with its mean/std (ImageNet for DINO, OpenAI CLIP's for both CLIP models);
   features: DINO — the CLS token output by the last block (layer 11), *before* the final LayerNorm;
   CLIP / OpenCLIP — ``norm(tokens)[:, 0] @ proj`` (the CLIP image embedding, 512-d);
3. concatenate (768 + 512 + 512 = 1792), centre (subtract the embedding's own mean over its dimensions)
   and L2-normalise;
4. distance = 1 − cos(embedding(a), embedding(b)) = 1 − ⟨e_a, e_b⟩ ∈ [0, 2] (0 for identical images).

Embeddings are per image, so the scorer caches them (a second run makes no model pass).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.device import resolve_device
from stellar.errors import MissingDependencyError, StellarError

DREAMSIM_CARD = "dreamsim-ensemble"
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: Optional architecture override next to the weights (tiny test models): {"vit": {...}, "image_size": N}.
ARCH_FILE = "dreamsim_config.json"


@dataclass(frozen=True)
class Backbone:
    """One member of the ensemble: its file, normalisation, feature and ViT details."""

    name: str  # the dreamsim package's model_type
    file: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature: str  # "cls" (last block's CLS token, no final norm) | "embedding" (norm(CLS) @ proj)
    eps: float
    quick_gelu: bool
    pre_norm: bool  # pos_drop is a LayerNorm (CLIP's ln_pre)


#: The ``ensemble`` of dreamsim 0.2.1 (config.py: "dino_vitb16,clip_vitb16,open_clip_vitb16", feat_type
#: "cls,embedding,embedding", stride 16), in concatenation order.
ENSEMBLE: tuple[Backbone, ...] = (
    Backbone("dino_vitb16", "dino_vitbase16_pretrain.pth", IMAGENET_MEAN, IMAGENET_STD, "cls", 1e-6, False, False),
    Backbone("clip_vitb16", "clip_vitb16_pretrain.pth.tar", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "embedding", 1e-5, True, True),
    Backbone("open_clip_vitb16", "open_clip_vitb16_pretrain.pth.tar", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "embedding", 1e-5, False, True),
)
VIT_B16 = {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0}


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("DreamSim needs torch.\n  fix: pip install 'stellar-bench[clip]'") from None
    return torch


def preprocess(image, size: int = IMAGE_SIZE) -> np.ndarray:
    """(3, size, size) float32 in [0, 1]: RGB, resized to size×size with PIL bicubic (torchvision's
    ``Resize((size, size), BICUBIC)`` on a PIL image), no crop — DreamSim's own preprocessing."""
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    img = img.convert("RGB").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0


def normalise_embedding(x: np.ndarray) -> np.ndarray:
    """DreamSim's ``normalize_embedding``: subtract each row's mean over its dimensions, then L2-normalise."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise DreamSim distance 1 − ⟨a, b⟩ of normalised embeddings."""
    return 1.0 - np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=-1)


def build_vit(backbone: Backbone, vit: dict, image_size: int):
    """A DINO-layout ViT (the state-dict names of DINO's ``vision_transformer.py``) for ``backbone``."""
    torch = _torch()
    nn = torch.nn

    class QuickGELU(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), QuickGELU() if backbone.quick_gelu else nn.GELU(), nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    class Block(nn.Module):
        def __init__(self, dim, heads, hidden):
            super().__init__()
            self.norm1, self.attn = nn.LayerNorm(dim, eps=backbone.eps), Attention(dim, heads)
            self.norm2, self.mlp = nn.LayerNorm(dim, eps=backbone.eps), Mlp(dim, hidden)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, patch, dim):
            super().__init__()
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            dim, patch = int(vit["embed_dim"]), int(vit["patch_size"])
            n = (image_size // patch) ** 2
            self.patch_embed = PatchEmbed(patch, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
            self.pos_drop = nn.LayerNorm(dim, eps=backbone.eps) if backbone.pre_norm else nn.Identity()
            hidden = int(dim * float(vit["mlp_ratio"]))
            self.blocks = nn.ModuleList(Block(dim, int(vit["num_heads"]), hidden) for _ in range(int(vit["depth"])))
            self.norm = nn.LayerNorm(dim, eps=backbone.eps)
            self.proj = None  # CLIP's image projection (a plain tensor in the converted checkpoints)

        def tokens(self, x):
            x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
            x = self.pos_drop(x)
            for blk in self.blocks:
                x = blk(x)
            return x

        def feature(self, x):
            t = self.tokens(x)
            if backbone.feature == "cls":
                return t[:, 0]  # the hooked output of the last block: no final norm
            return self.norm(t)[:, 0] @ self.proj

    return ViT()


@dataclass
class DreamSimModel:
    """The DreamSim ensemble: ``encode_images`` → centred, L2-normalised 1792-d embeddings."""

    backbones: list  # ViT modules, ENSEMBLE order
    specs: tuple[Backbone, ...]
    name: str
    weights: str
    image_size: int = IMAGE_SIZE
    device: str | None = None
    batch_size: int = 16
    passes: int = field(default=0)  # model forward passes (tests)

    def __post_init__(self):
        self.device = resolve_device(self.device)
        self.backbones = [m.to(self.device).eval() for m in self.backbones]

    @property
    def protocol(self) -> str:
        from stellar.models.loading import model_protocol

        pre = f"resize-{self.image_size}x{self.image_size}-bicubic-nocrop|" + ",".join(f"{s.name}:{s.feature}" for s in self.specs) + "|centre-l2"
        return model_protocol("dreamsim-ensemble", self.name, weights=self.weights, dtype="fp32", preprocessing=pre)

    def raw_features(self, images: Sequence) -> list[np.ndarray]:
        """Per backbone, the (n, d_i) features before concatenation (float64) — for tests and inspection."""
        torch = _torch()
        x = torch.from_numpy(np.stack([preprocess(im, self.image_size) for im in images])).to(self.device)
        out = []
        with torch.inference_mode():
            for spec, model in zip(self.specs, self.backbones):
                mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
                std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)
                out.append(model.feature((x - mean) / std).double().cpu().numpy())
        self.passes += 1
        return out

    def encode_images(self, images: Sequence) -> np.ndarray:
        """(n, D) DreamSim embeddings (concatenated, centred, L2-normalised) of PIL images / uint8 arrays."""
        out = []
        for i in range(0, len(images), max(1, self.batch_size)):
            out.append(normalise_embedding(np.concatenate(self.raw_features(list(images[i : i + self.batch_size])), axis=1)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


# ----------------------------------------------------------------------------------------- loading
def _load_tensor_file(path: Path) -> dict:
    torch = _torch()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one actionable error
        raise StellarError(f"DreamSim: cannot read {path}: {exc}\n  fix: stellar models fetch {DREAMSIM_CARD}") from None


def lora_deltas(adapter_state: dict, config: dict) -> tuple[dict[int, dict[str, object]], dict[int, dict[str, object]]]:
    """PEFT LoRA state → per backbone index ``{linear weight name: ΔW}`` (ΔW = scaling · B·A, scaling =
    lora_alpha / r, or lora_alpha / √r with ``use_rslora``) and ``{param name: tensor}`` for trained
    biases (``bias`` = "all" / "lora_only"). Keys look like
    ``base_model.model.extractor_list.{i}.model.{module}.lora_A[.default].weight``."""
    r = int(config["r"])
    scaling = float(config["lora_alpha"]) / (math.sqrt(r) if config.get("use_rslora") else r)
    pairs: dict[tuple[int, str], dict[str, object]] = {}
    extra: dict[int, dict[str, object]] = {}
    for key, value in adapter_state.items():
        k = key.removeprefix("base_model.model.").replace(".default", "")
        if not k.startswith("extractor_list."):
            raise StellarError(f"DreamSim LoRA: unexpected adapter entry {key!r} (expected extractor_list.N.model.*)")
        _, idx, rest = k.split(".", 2)
        rest = rest.removeprefix("model.")
        for part in ("lora_A", "lora_B"):
            if f".{part}." in rest:
                module = rest.split(f".{part}.")[0]
                pairs.setdefault((int(idx), module), {})[part] = value
                break
        else:
            extra.setdefault(int(idx), {})[rest] = value
    deltas: dict[int, dict[str, object]] = {}
    for (idx, module), ab in pairs.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise StellarError(f"DreamSim LoRA: {module} of backbone {idx} lacks lora_A or lora_B")
        deltas.setdefault(idx, {})[module + ".weight"] = scaling * (ab["lora_B"].float() @ ab["lora_A"].float())
    return deltas, extra


def _backbone_state(spec: Backbone, raw: dict) -> tuple[dict, object]:
    """(ViT state dict, proj or None) from a backbone file: DINO's plain backbone state dict (optionally a
    training checkpoint's ``teacher``), or the converted CLIP files (``{"state_dict": {..., "proj": P}}``)."""
    state = raw
    if isinstance(raw, dict) and "state_dict" in raw:
        state = raw["state_dict"]
    elif isinstance(raw, dict) and "teacher" in raw:
        state = raw["teacher"]
    if not isinstance(state, dict):
        raise StellarError(f"DreamSim: {spec.file} holds no state dict")
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items() if not k.removeprefix("module.").startswith("head.")}
    proj = state.pop("proj", None)
    if spec.feature == "embedding" and proj is None:
        raise StellarError(f"DreamSim: {spec.file} has no 'proj' (the CLIP image projection of the converted checkpoint)")
    return state, proj


def build_dreamsim(files: dict[str, Path], adapter_config: dict, adapter_state: dict, *, name: str, weights: str,
                   arch: dict | None = None, device: str | None = None, batch_size: int = 16) -> DreamSimModel:  # fmt: skip
    """The ensemble from its backbone files (``files[spec.file]``) and the merged LoRA adapter."""
    torch = _torch()
    arch = arch or {}
    vit = {**VIT_B16, **arch.get("vit", {})}
    size = int(arch.get("image_size", IMAGE_SIZE))
    deltas, extra = lora_deltas(adapter_state, adapter_config)
    models = []
    for i, spec in enumerate(ENSEMBLE):
        model = build_vit(spec, vit, size)
        state, proj = _backbone_state(spec, _load_tensor_file(files[spec.file]))
        state.update(extra.get(i, {}))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise StellarError(f"DreamSim: {files[spec.file]} does not fit the {spec.name} ViT: missing {list(missing)[:6]}, unexpected {list(unexpected)[:6]}")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for key, delta in deltas.get(i, {}).items():
                if key not in params or tuple(params[key].shape) != tuple(delta.shape):
                    raise StellarError(f"DreamSim LoRA: backbone {spec.name} has no linear weight {key} of shape {tuple(delta.shape)}")
                params[key].add_(delta.to(params[key].dtype))
        model.proj = None if proj is None else torch.nn.Parameter(proj.float(), requires_grad=False)
        models.append(model.requires_grad_(False))
    return DreamSimModel(models, ENSEMBLE, name=name, weights=weights, image_size=size, device=device, batch_size=batch_size)


def _adapter_files(folder: Path) -> tuple[Path, Path]:
    for base in (folder / "ensemble_lora", folder):
        cfg = base / ADAPTER_CONFIG
        for w in ADAPTER_WEIGHTS:
            if cfg.is_file() and (base / w).is_file():
                return cfg, base / w
    raise StellarError(f"DreamSim: {folder} has no LoRA adapter ({ADAPTER_CONFIG} + {' or '.join(ADAPTER_WEIGHTS)}, directly or under ensemble_lora/).\n  fix: unzip dreamsim_ensemble_checkpoint.zip there, or pass the card {DREAMSIM_CARD!r}")  # fmt: skip


def load_dreamsim(spec: str | None = None, *, device: str | None = None, batch_size: int = 16) -> DreamSimModel:
    """DreamSim ensemble from the card ``dreamsim-ensemble`` or a folder holding the three backbone files
    (:data:`ENSEMBLE`) and the LoRA adapter (``ensemble_lora/`` or flat) — e.g. the unzipped release
    checkpoint plus ``dino_vitbase16_pretrain.pth``. A folder (or the card's cache folder) may hold
    ``dreamsim_config.json`` (``{"vit": {...}, "image_size": N}``) to override the ViT-B/16 architecture
    (tiny test models; the real card has none)."""
    from stellar.models.loading import weights_identity

    spec = spec or DREAMSIM_CARD
    folder = Path(spec).expanduser()
    arch = None
    if folder.is_dir():
        files = {s.file: folder / s.file for s in ENSEMBLE}
        for f in files.values():
            if not f.is_file():
                raise StellarError(f"DreamSim: {folder} has no {f.name}.\n  fix: pass a folder with {', '.join(s.file for s in ENSEMBLE)} and ensemble_lora/, or the card {DREAMSIM_CARD!r}")
        cfg_file, adapter_file = _adapter_files(folder)
        if (folder / ARCH_FILE).is_file():
            arch = json.loads((folder / ARCH_FILE).read_text())
        name = f"local:{folder.resolve()}"
    else:
        from stellar.models import registry
        from stellar.models.standard import _card_revision, _find_card

        card = _find_card(spec)
        if card is None:
            raise StellarError(f"DreamSim: {spec!r} is neither a folder nor a model card.\n  fix: pass {DREAMSIM_CARD!r} or a folder")
        files = {s.file: registry.resolve_file(card.name, s.file) for s in ENSEMBLE}
        cfg_file = registry.resolve_file(card.name, ADAPTER_CONFIG)
        adapter_file = registry.resolve_file(card.name, ADAPTER_WEIGHTS[0])
        arch_file = Path(adapter_file).parent / ARCH_FILE  # none for the real card (tests put a tiny one there)
        if arch_file.is_file():
            folder, arch = arch_file.parent, json.loads(arch_file.read_text())
        name = f"{card.name}@{_card_revision(card)}"
    try:
        adapter_config = json.loads(Path(cfg_file).read_text())
    except (OSError, ValueError) as exc:
        raise StellarError(f"DreamSim: cannot read {cfg_file}: {exc}") from None
    weights = weights_identity(*files.values(), cfg_file, adapter_file, *([folder / ARCH_FILE] if arch else []))
    return build_dreamsim(files, adapter_config, _load_tensor_file(Path(adapter_file)), name=name, weights=weights, arch=arch, device=device, batch_size=batch_size)
