"""StellarNet configuration: model shape (:class:`StellarNetConfig`) and training (:class:`TrainConfig`).

Both are frozen dataclasses with the defaults of the Stellar paper's baseline where it states them
(SDXL base, K=5 injected tokens, mapper MLP hidden 1024 with 2 hidden layers, LoRA rank 4, λ=0.01,
1024 px, 100 steps, guidance 5, seed 42 from the official sample outputs) and our choices elsewhere
(documented on each field). :func:`load_train_config` reads a JSON or YAML file whose keys are the
field names; unknown keys are an error naming the file and the valid keys.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from stellar.errors import StellarError

#: Registry cards of the pretrained parts (DESIGN §4); ids and revisions live in the registry only.
BASE_CARD = "sdxl-base-1.0"
SUBJECT_ENCODER_CARD = "clip-vit-l-14-openai"


class ConfigError(StellarError):
    """A StellarNet configuration file or value is invalid."""

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        text = f"{path}: {message}" if path is not None else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


@dataclass(frozen=True)
class StellarNetConfig:
    """The architecture of a StellarNet checkpoint (saved in ``stellarnet.json``).

    Attributes:
        num_tokens: K, the number of token embeddings S* expands to (placeholders ``<s*_0>`` … ``<s*_{K-1}>``).
        vision_layers: hidden-state indices of the CLIP vision encoder whose CLS tokens feed the
            mappers (index 0 = patch embeddings, L = output of layer L). ViT-L/14 has 24 layers;
            the default takes 5 evenly spaced ones, as ELITE-style mappers do.
        mapper_hidden: width of the mapper MLP's hidden layers.
        mapper_layers: number of hidden layers (each Linear + LayerNorm + LeakyReLU).
        subject_phrase: what ``{}`` becomes in a prompt; ``S*`` expands to the K placeholders.
        lora_rank / lora_alpha / lora_targets: the UNet LoRA (attention projections).
        base: registry card, hub id or local folder of the SDXL base pipeline.
        subject_encoder: registry card, hub id or local folder of the CLIP vision encoder.
    """

    num_tokens: int = 5
    vision_layers: tuple[int, ...] = (4, 8, 12, 16, 20)
    mapper_hidden: int = 1024
    mapper_layers: int = 2
    subject_phrase: str = "a S* person"
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    base: str = BASE_CARD
    base_revision: str | None = None
    subject_encoder: str = SUBJECT_ENCODER_CARD
    subject_encoder_revision: str | None = None

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise ConfigError(f"num_tokens must be ≥ 1, got {self.num_tokens}")
        if not self.vision_layers:
            raise ConfigError("vision_layers is empty", fix="list hidden-state indices, e.g. [4, 8, 12, 16, 20]")
        if "S*" not in self.subject_phrase:
            raise ConfigError(f"subject_phrase {self.subject_phrase!r} has no S*", fix='use e.g. "a S* person"')
        object.__setattr__(self, "vision_layers", tuple(int(v) for v in self.vision_layers))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | Path | None = None) -> "StellarNetConfig":
        return _from_mapping(cls, data, path)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (``stellar train stellarnet --config FILE`` overrides any of them).

    Loss (per batch): ``MSE_mask(ε̂, ε) + l1_weight · mean|e|`` where MSE_mask averages the squared
    error over latent positions inside the subject mask (all channels) and ``e`` are the injected
    token embeddings of both mappers.
    """

    model: StellarNetConfig = field(default_factory=StellarNetConfig)
    resolution: int = 1024
    caption: str = "a photo of {}"
    l1_weight: float = 0.01
    learning_rate: float = 1e-4
    mapper_learning_rate: float | None = None  # None: same as learning_rate
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_steps: int = 20000
    warmup_steps: int = 500
    mixed_precision: str = "auto"  # auto = bf16 on a GPU that supports it, else fp16 on GPU, no on CPU
    gradient_checkpointing: bool = False
    horizontal_flip: bool = True
    num_workers: int = 4
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    validation_every: int = 1000
    validation_images: int = 4
    validation_steps: int = 30
    validation_guidance: float = 5.0
    validation_prompt: str = "a photo of {} wearing sunglasses on the beach"

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            object.__setattr__(self, "model", StellarNetConfig.from_dict(self.model))
        if "{}" not in self.caption or "{}" not in self.validation_prompt:
            raise ConfigError("caption and validation_prompt must contain {} (where the subject phrase goes)")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision {self.mixed_precision!r}", fix="use auto, no, fp16 or bf16")
        for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "checkpoint_every", "log_every", "validation_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.resolution % 8:
            raise ConfigError(f"resolution must be a multiple of 8, got {self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (f.name for f in dataclasses.fields(self))}
        out["model"] = self.model.to_dict()
        return out

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _from_mapping(cls, data: Mapping[str, Any], path: str | Path | None):
    if not isinstance(data, Mapping):
        raise ConfigError("expected a mapping of option names to values", path)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}", path, f"valid options: {', '.join(sorted(names))}")
    try:
        return cls(**dict(data))
    except TypeError as exc:
        raise ConfigError(str(exc), path) from None


def load_train_config(path: str | Path | None, **overrides: Any) -> TrainConfig:
    """Read a :class:`TrainConfig` from a JSON (``.json``) or YAML (``.yaml``/``.yml``) file, then apply
    ``overrides`` (``None`` values are ignored). ``path=None`` gives the defaults.

    Raises:
        ConfigError: unreadable file, syntax error, unknown option or invalid value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read ({exc.strerror or exc})", path, "pass an existing JSON or YAML file") from None
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError("YAML configs need PyYAML", path, "pip install pyyaml, or write the config as JSON") from None
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"invalid YAML: {exc}", path, "fix the YAML syntax") from None
        else:
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"invalid JSON at line {exc.lineno}: {exc.msg}", path, "fix the JSON syntax") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("expected a mapping of option names to values", path)
        data = dict(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(data.get("model"), Mapping):
        data["model"] = StellarNetConfig.from_dict(data["model"], path)
    return _from_mapping(TrainConfig, data, path)
