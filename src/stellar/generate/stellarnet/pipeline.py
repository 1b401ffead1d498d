"""``StellarNetPipeline``: SDXL + UNet LoRA + image-to-text mappers (the Stellar paper's baseline, §5).

Components (diffusers style, ``register_modules``): the seven SDXL base components (``vae``,
``text_encoder``, ``text_encoder_2``, ``tokenizer``, ``tokenizer_2``, ``unet`` — carrying the LoRA
adapter — and ``scheduler``), plus ``subject_encoder`` (a ``transformers`` CLIP vision model,
ViT-L/14 by default) and ``mapper`` / ``mapper_2`` (:class:`ImageToTokenMapper`, one per text
encoder). A call encodes the masked subject photos, maps them to K token embeddings per text
encoder, builds ``prompt_embeds`` / ``pooled_prompt_embeds`` with the embeddings injected at S*
(:mod:`.injection`) and runs the standard SDXL denoising loop on them. The negative prompt is
SDXL's zero embedding (``force_zeros_for_empty_prompt``), as the base model card prescribes.

Checkpoint format (what :meth:`save_pretrained` writes and :meth:`from_pretrained` reads)::

    CKPT/stellarnet.json                  {"format": "stellarnet/1", "config": StellarNetConfig}
    CKPT/mapper/  CKPT/mapper_2/          ImageToTokenMapper (config.json + safetensors)
    CKPT/unet_lora.safetensors            peft LoRA state dict of the UNet
    CKPT/base/ CKPT/subject_encoder/      only with include_base=True: the frozen parts themselves

Without ``base/`` the frozen parts come from the config's ``base`` / ``subject_encoder``: a model
registry card (default ``sdxl-base-1.0`` / ``clip-vit-l-14-openai``: pinned revision, verified
files, offline cache — DESIGN §4), a hub id (+ revision) or a local folder. So a trained
checkpoint is a few hundred MB, not SDXL's 7 GB; ``include_base`` makes it self-contained (tests,
air-gapped machines).

Deviation: the official StellarNet also offers OpenCLIP ViT-bigG as a second subject encoder
("all" encoders); only one subject encoder (CLIP ViT-L/14 by default) is implemented here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from stellar.errors import StellarError
from stellar.generate.stellarnet.config import StellarNetConfig
from stellar.generate.stellarnet.encoders import SubjectFeatureExtractor
from stellar.generate.stellarnet.injection import add_placeholder_tokens, encode_prompts, fill_template
from stellar.generate.stellarnet.mappers import ImageToTokenMapper

FORMAT = "stellarnet/1"
CONFIG_FILE = "stellarnet.json"
LORA_FILE = "unet_lora.safetensors"
BASE_COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")


class CheckpointError(StellarError):
    """A StellarNet checkpoint folder is missing or malformed."""

    def __init__(self, path: str | Path, message: str, fix: str):
        super().__init__(f"{path}: {message}\n  fix: {fix}")


# ---------------------------------------------------------------------------------- model sources
def resolve_source(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """``(path_or_repo_id, revision)`` for ``from_pretrained``: a local folder as is; a registry card
    resolved to its verified local copy (fetched into the cache unless offline); else a hub id."""
    if Path(name).is_dir():
        return str(Path(name)), None
    from stellar.models import registry

    try:
        card = registry.get_card(name)
    except registry.UnknownModelError:
        if "/" not in name:
            raise
        return name, revision
    files = registry.resolve(card.name)
    first_name, first_path = next(iter(files.items()))
    root = Path(first_path)
    for _ in Path(first_name).parts:
        root = root.parent
    return str(root), None


def describe_source(name: str, revision: str | None = None) -> dict[str, Any]:
    """Where a frozen part comes from, for sidecars and logs: card, hub id and revision, or a path."""
    if Path(name).is_dir():
        return {"path": str(Path(name).resolve())}
    try:
        from stellar.models import registry

        card = registry.get_card(name)
    except Exception:  # not a card: a hub id
        return {"repo_id": name, "revision": revision}
    src = card.sources[0]
    return {"card": card.name, "repo_id": getattr(src, "repo_id", None), "revision": getattr(src, "revision", None)}


# ---------------------------------------------------------------------------------- LoRA helpers
def add_unet_lora(unet, config: StellarNetConfig) -> None:
    """Attach the rank-``lora_rank`` LoRA on the attention projections (peft; B initialised to zero,
    so a fresh adapter leaves the UNet's output unchanged)."""
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            init_lora_weights="gaussian",
            target_modules=list(config.lora_targets),
        )
    )


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(unet).items()}


def load_lora_state_dict(unet, state: dict[str, torch.Tensor], path: str | Path = "") -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise CheckpointError(path, f"LoRA weights do not fit this UNet ({len(unexpected)} unexpected keys, e.g. {unexpected[0]})", "use the base model the checkpoint was trained on")
    expected = set(lora_state_dict(unet))
    missing = expected - set(state)
    if missing:
        raise CheckpointError(path, f"LoRA weights miss {len(missing)} tensors (e.g. {sorted(missing)[0]})", "re-save the checkpoint")


def base_unet_state_dict(unet) -> dict[str, torch.Tensor]:
    """The UNet's own weights without the adapter (peft renames wrapped layers ``*.base_layer.*``)."""
    return {
        k.replace(".base_layer.", "."): v.detach().contiguous()
        for k, v in unet.state_dict().items()
        if ".lora_" not in k
    }


# ---------------------------------------------------------------------------------- pipeline
class StellarNetPipeline(StableDiffusionXLPipeline):
    """SDXL pipeline conditioned on a subject photo through injected token embeddings.

    >>> pipe = StellarNetPipeline.from_pretrained("CKPT", torch_dtype=torch.float16).to("cuda")  # doctest: +SKIP
    >>> image = pipe(["{} riding a horse"], [photo], [mask], generator=[torch.Generator().manual_seed(42)]).images[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        vae,
        text_encoder,
        text_encoder_2,
        tokenizer,
        tokenizer_2,
        unet,
        scheduler,
        subject_encoder,
        mapper: ImageToTokenMapper,
        mapper_2: ImageToTokenMapper,
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt: bool = True,
        add_watermarker: bool | None = False,
        stellarnet_config: StellarNetConfig | None = None,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
            add_watermarker=bool(add_watermarker),
        )
        self.register_modules(subject_encoder=subject_encoder, mapper=mapper, mapper_2=mapper_2)
        self.stellarnet_config = stellarnet_config or StellarNetConfig()
        k = self.stellarnet_config.num_tokens
        for m, te in ((mapper, text_encoder), (mapper_2, text_encoder_2)):
            if m.config.num_tokens != k or m.config.token_dim != te.get_input_embeddings().embedding_dim:
                raise CheckpointError(
                    "mapper",
                    f"mapper emits {m.config.num_tokens} x {m.config.token_dim} but the pipeline needs {k} x "
                    f"{te.get_input_embeddings().embedding_dim}",
                    "load mappers trained for this base model and num_tokens",
                )
        self.placeholder_ids = (add_placeholder_tokens(tokenizer, k), add_placeholder_tokens(tokenizer_2, k))
        self._subject_features = SubjectFeatureExtractor(subject_encoder, self.stellarnet_config.vision_layers)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_components(
        cls,
        components: dict[str, Any],
        config: StellarNetConfig | None = None,
        *,
        seed: int | None = 0,
    ) -> "StellarNetPipeline":
        """A fresh (untrained) StellarNet on the given SDXL components + ``subject_encoder``: new mappers
        (initialised with ``torch.manual_seed(seed)`` when ``seed`` is not None) and a new LoRA."""
        config = config or StellarNetConfig()
        parts = dict(components)
        encoder = parts["subject_encoder"]
        if seed is not None:
            torch.manual_seed(seed)
        for key, te in (("mapper", parts["text_encoder"]), ("mapper_2", parts["text_encoder_2"])):
            if parts.get(key) is None:
                parts[key] = ImageToTokenMapper(
                    vision_dim=encoder.config.hidden_size,
                    num_layers_in=len(config.vision_layers),
                    token_dim=te.get_input_embeddings().embedding_dim,
                    num_tokens=config.num_tokens,
                    hidden_dim=config.mapper_hidden,
                    hidden_layers=config.mapper_layers,
                )
        if not getattr(parts["unet"], "_hf_peft_config_loaded", False):
            add_unet_lora(parts["unet"], config)
        return cls(**{k: v for k, v in parts.items() if k in _INIT_KEYS}, stellarnet_config=config)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        checkpoint: str | Path,
        *,
        base: str | None = None,
        subject_encoder: Any = None,
        torch_dtype: torch.dtype | None = None,
        **components: Any,
    ) -> "StellarNetPipeline":
        """Load a checkpoint written by :meth:`save_pretrained` (or by ``stellar train stellarnet``).

        Args:
            checkpoint: the checkpoint folder.
            base, subject_encoder: override where the frozen parts come from (card, hub id or folder);
                ``subject_encoder`` may also be a built CLIP vision model.
            torch_dtype: dtype of the frozen parts (mappers and LoRA follow the UNet's dtype).
            components: already-built components to use instead of loading them (e.g. ``vae=...``).

        Raises:
            CheckpointError: the folder is not a StellarNet checkpoint or does not fit the base model.
        """
        root = Path(checkpoint)
        config = read_checkpoint_config(root)
        from diffusers import StableDiffusionXLPipeline as _Base
        from transformers import CLIPVisionModel

        parts = dict(components)
        if subject_encoder is not None and not isinstance(subject_encoder, (str, Path)):
            parts["subject_encoder"], subject_encoder = subject_encoder, None  # a built model, not a source
        missing = [c for c in BASE_COMPONENTS if c not in parts]
        if missing:
            if base is None and (root / "base" / "model_index.json").is_file():
                src, rev = str(root / "base"), None
            else:
                src, rev = resolve_source(base or config.base, config.base_revision)
            kwargs = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
            base_pipe = _Base.from_pretrained(src, revision=rev, add_watermarker=False, **{c: parts[c] for c in BASE_COMPONENTS if c in parts}, **kwargs)
            for c in BASE_COMPONENTS:
                parts.setdefault(c, getattr(base_pipe, c))
        if "subject_encoder" not in parts:
            if subject_encoder is None and (root / "subject_encoder" / "config.json").is_file():
                src, rev = str(root / "subject_encoder"), None
            else:
                src, rev = resolve_source(subject_encoder or config.subject_encoder, config.subject_encoder_revision)
            kwargs = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
            parts["subject_encoder"] = CLIPVisionModel.from_pretrained(src, revision=rev, **kwargs)
        for key in ("mapper", "mapper_2"):
            if not (root / key / "config.json").is_file():
                raise CheckpointError(root, f"no {key}/ folder", "pass a folder written by StellarNetPipeline.save_pretrained or stellar train")
        unet = parts["unet"]
        dtype = next(unet.parameters()).dtype
        for key in ("mapper", "mapper_2"):
            parts[key] = ImageToTokenMapper.from_pretrained(str(root / key), torch_dtype=dtype)
        if not getattr(unet, "_hf_peft_config_loaded", False):
            add_unet_lora(unet, config)
        lora_path = root / LORA_FILE
        if not lora_path.is_file():
            raise CheckpointError(root, f"no {LORA_FILE}", "pass a complete checkpoint folder")
        from safetensors.torch import load_file

        load_lora_state_dict(unet, load_file(str(lora_path)), lora_path)
        pipe = cls(**{k: v for k, v in parts.items() if k in _INIT_KEYS}, stellarnet_config=config)
        return pipe

    def save_pretrained(self, save_directory: str | Path, *, include_base: bool = False, **_: Any) -> Path:  # type: ignore[override]
        """Write the checkpoint (format in the module docstring) into ``save_directory``.

        Everything is written to a temporary folder inside it, then moved in entry by entry with
        ``stellarnet.json`` last: a folder whose ``stellarnet.json`` exists is complete, and other
        files already in the folder (training logs, checkpoints) are left alone.
        """
        import shutil
        import tempfile

        from safetensors.torch import save_file

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=out))
        try:
            self.mapper.save_pretrained(str(tmp / "mapper"))
            self.mapper_2.save_pretrained(str(tmp / "mapper_2"))
            save_file(lora_state_dict(self.unet), str(tmp / LORA_FILE))
            if include_base:
                self._save_base(tmp)
            (tmp / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "config": self.stellarnet_config.to_dict()}, indent=2))
            (out / CONFIG_FILE).unlink(missing_ok=True)  # the folder is incomplete until the new one lands
            entries = sorted(tmp.iterdir(), key=lambda p: p.name == CONFIG_FILE)
            for entry in entries:
                target = out / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                entry.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    def _save_base(self, folder: Path) -> None:
        from safetensors.torch import save_file

        base = StableDiffusionXLPipeline(**{c: getattr(self, c) for c in BASE_COMPONENTS}, add_watermarker=False)
        base.save_pretrained(str(folder / "base"))
        unet_dir = folder / "base" / "unet"
        for f in unet_dir.glob("diffusion_pytorch_model*"):
            f.unlink()
        save_file(base_unet_state_dict(self.unet), str(unet_dir / "diffusion_pytorch_model.safetensors"))
        self.subject_encoder.save_pretrained(str(folder / "subject_encoder"))

    # ------------------------------------------------------------------ conditioning
    def subject_features(self, images: Sequence[Image.Image], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        """(B, L, d) CLS features of the masked subject photos."""
        return self._subject_features(images, masks)

    def token_embeddings(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The K injected embeddings for each text encoder: ((B, K, D1), (B, K, D2))."""
        f1 = features.to(self.mapper.device)
        f2 = features.to(self.mapper_2.device)
        return self.mapper(f1), self.mapper_2(f2)

    def encode_subject_prompts(
        self, templates: Sequence[str], embeddings: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SDXL (prompt_embeds, pooled_prompt_embeds) of ``templates`` with ``embeddings`` at S*."""
        cfg = self.stellarnet_config
        texts = [fill_template(t, cfg.subject_phrase, cfg.num_tokens) for t in templates]
        try:
            return encode_prompts(
                (self.tokenizer, self.tokenizer_2), (self.text_encoder, self.text_encoder_2), self.placeholder_ids, texts, embeddings
            )
        except ValueError as exc:
            raise StellarError(str(exc)) from None

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image],
        masks: Sequence[np.ndarray | None] | None = None,
        *,
        num_inference_steps: int = 100,
        guidance_scale: float = 5.0,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        features: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """Generate one image per (prompt template with ``{}``, subject photo, mask).

        ``features`` may carry precomputed :meth:`subject_features` (then ``images`` is ignored).
        Other keyword arguments go to ``StableDiffusionXLPipeline.__call__``.
        """
        prompts = list(prompts)
        if features is None:
            if len(images) != len(prompts):
                raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
            features = self.subject_features(images, list(masks) if masks is not None else [None] * len(images))
        embeddings = self.token_embeddings(features)
        prompt_embeds, pooled = self.encode_subject_prompts(prompts, embeddings)
        return super().__call__(
            prompt_embeds=prompt_embeds,
            pooled_prompt_embeds=pooled,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            generator=generator,
            output_type=output_type,
            **kwargs,
        )


_INIT_KEYS = (*BASE_COMPONENTS, "subject_encoder", "mapper", "mapper_2", "image_encoder", "feature_extractor")


def read_checkpoint_config(root: str | Path) -> StellarNetConfig:
    """The :class:`StellarNetConfig` of a checkpoint folder.

    Raises:
        CheckpointError: no ``stellarnet.json``, unreadable, or another format.
    """
    root = Path(root)
    path = root / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(root, f"not a StellarNet checkpoint (no {CONFIG_FILE})", "pass the --out folder of `stellar train stellarnet`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"unreadable ({exc})", "re-save the checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("config"), dict):
        raise CheckpointError(path, f"unknown checkpoint format {data.get('format') if isinstance(data, dict) else data!r}", f"expected {FORMAT}")
    return StellarNetConfig.from_dict(data["config"], path)
