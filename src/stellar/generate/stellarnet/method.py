"""``StellarNetMethod``: StellarNet as a generation method (``stellar generate --method stellarnet``).

Implements the :class:`~stellar.generate.base.Method` protocol: ``setup`` loads the checkpoint
(:meth:`StellarNetPipeline.from_pretrained`), ``prepare_subject`` encodes the subject's masked
photos once, ``generate`` runs SDXL for a batch of jobs with one CPU ``torch.Generator`` per job
seeded with :func:`~stellar.generate.base.job_seed` — so an image depends only on (job, seed),
never on the batch or the device's RNG.

Defaults are those of the official StellarNet sample outputs: 1024×1024, 100 steps, guidance 5
(the harness's base seed is the run's ``--seed``; the official samples used 42). On CUDA the
frozen parts run in fp16 (the SDXL VAE upcasts itself to fp32 for decoding, as its config asks);
on CPU in fp32.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image

from stellar.data.dataset import Job, Subject, load_mask
from stellar.errors import StellarError
from stellar.generate.base import MethodBase, job_seed
from stellar.images import load_image

DEFAULT_STEPS = 100
DEFAULT_GUIDANCE = 5.0
DEFAULT_RESOLUTION = 1024
DEFAULT_SEED = 42


def checkpoint_digest(checkpoint: str | Path) -> str:
    """``sha256:…`` (16 hex) over the checkpoint's trained files: a retrained checkpoint changes the
    sidecar settings, so the writer regenerates instead of keeping stale images."""
    from stellar.generate.stellarnet.pipeline import CONFIG_FILE, LORA_FILE

    root = Path(checkpoint)
    h = hashlib.sha256()
    for rel in (CONFIG_FILE, LORA_FILE, "mapper/diffusion_pytorch_model.safetensors", "mapper_2/diffusion_pytorch_model.safetensors"):
        path = root / rel
        h.update(rel.encode())
        if path.is_file():
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return "sha256:" + h.hexdigest()[:16]


class StellarNetMethod(MethodBase):
    """StellarNet generation method.

    Args:
        checkpoint: a StellarNet checkpoint folder (``stellar train stellarnet --out``).
        steps, guidance, resolution: SDXL sampling settings.
        batch_size: images per SDXL call inside one ``generate`` (memory knob; outputs do not change).
        dtype: "auto" (fp16 on CUDA, fp32 on CPU), "fp16", "bf16" or "fp32".
        base, subject_encoder: override where the frozen parts come from (card, hub id or folder).
        components: prebuilt components passed to ``from_pretrained`` (tests); not part of settings.
    """

    name = "stellarnet"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        steps: int = DEFAULT_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
        resolution: int = DEFAULT_RESOLUTION,
        batch_size: int = 1,
        dtype: str = "auto",
        base: str | None = None,
        subject_encoder: str | None = None,
        components: Mapping[str, Any] | None = None,
    ):
        from stellar.generate.stellarnet.pipeline import describe_source, read_checkpoint_config

        if steps < 1 or resolution < 8 or resolution % 8 or batch_size < 1:
            raise StellarError(
                f"invalid StellarNet settings steps={steps} resolution={resolution} batch_size={batch_size}\n"
                "  fix: steps ≥ 1, resolution a multiple of 8, batch_size ≥ 1"
            )
        if dtype not in ("auto", "fp16", "bf16", "fp32"):
            raise StellarError(f"unknown dtype {dtype!r}\n  fix: use auto, fp16, bf16 or fp32")
        config = read_checkpoint_config(checkpoint)
        self.checkpoint = Path(checkpoint)
        self.config = config
        self.steps, self.guidance, self.resolution, self.batch_size, self.dtype = steps, guidance, resolution, batch_size, dtype
        self.base, self.subject_encoder = base, subject_encoder
        self.components = dict(components or {})
        ckpt_base = (self.checkpoint / "base").is_dir() and base is None
        super().__init__(
            checkpoint=str(self.checkpoint),
            checkpoint_digest=checkpoint_digest(self.checkpoint),
            base=describe_source(str(self.checkpoint / "base")) if ckpt_base else describe_source(base or config.base, config.base_revision),
            subject_encoder=describe_source(subject_encoder or config.subject_encoder, config.subject_encoder_revision),
            steps=steps,
            guidance=guidance,
            resolution=resolution,
            dtype=dtype,
            num_tokens=config.num_tokens,
            subject_phrase=config.subject_phrase,
            vision_layers=list(config.vision_layers),
            negative_prompt="zeros (SDXL force_zeros_for_empty_prompt)",
        )
        self.pipe = None
        self._features: dict[str, Any] = {}

    def setup(self, device: str) -> None:
        import torch

        from stellar.generate.stellarnet.pipeline import StellarNetPipeline

        self.device = device
        name = self.dtype if self.dtype != "auto" else ("fp16" if str(device).startswith("cuda") else "fp32")
        torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]
        self.pipe = StellarNetPipeline.from_pretrained(
            self.checkpoint, base=self.base, subject_encoder=self.subject_encoder, torch_dtype=torch_dtype, **self.components
        )
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)

    def _photo_features(self, photos) -> "torch.Tensor":  # noqa: F821
        import torch

        missing = [p for p in photos if str(p.path) not in self._features]
        if missing:
            images = [load_image(p.path) for p in missing]
            masks = [load_mask(p, im.size) for p, im in zip(missing, images)]
            with torch.no_grad():
                feats = self.pipe.subject_features(images, masks)
            for p, f in zip(missing, feats):
                self._features[str(p.path)] = f
        return torch.stack([self._features[str(p.path)] for p in photos])

    def prepare_subject(self, subject: Subject) -> None:
        """Encode the subject's masked photos once (features are reused by all its jobs)."""
        if self.pipe is None:
            raise StellarError("StellarNetMethod.setup(device) must be called before prepare_subject")
        self._features = {}  # one subject at a time: memory stays flat over 200 subjects
        self._photo_features(list(subject.photos))

    def generate(self, jobs: Sequence[Job], seed: int) -> list[Image.Image]:
        import torch

        if self.pipe is None:
            raise StellarError("StellarNetMethod.setup(device) must be called before generate")
        out: list[Image.Image] = []
        for start in range(0, len(jobs), self.batch_size):
            batch = list(jobs[start : start + self.batch_size])
            features = self._photo_features([j.photo for j in batch])
            generators = [torch.Generator("cpu").manual_seed(job_seed(seed, j)) for j in batch]
            result = self.pipe(
                [j.prompt.template for j in batch],
                [],
                features=features,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                height=self.resolution,
                width=self.resolution,
                generator=generators,
                output_type="pil",
            )
            out.extend(result.images)
        return out
