"""StellarNet training: mappers + UNet LoRA on masked face photos, SDXL frozen (``stellar train stellarnet``).

Objective, per batch of photos x with subject masks m (Stellar paper §5; λ = ``l1_weight``)::

    z = VAE(x)·s,  ε ~ N(0, I),  t ~ U{0..T-1},  z_t = scheduler.add_noise(z, ε, t)
    e_i = mapper_i(CLIP_layers(x ⊙ m))                      # K embeddings per text encoder
    ε̂ = UNet_LoRA(z_t, t, SDXL_text("a photo of a S* person" with S* := e))
    L = Σ M ⊙ (ε̂ − ε)² / (C · Σ M)  +  λ · mean|e|          # M = m downsampled to latent size

M is the subject mask area-downsampled to the latent grid and thresholded at 1/2 (a latent cell
counts as subject when most of its pixels are); the target is ε (or v for v-prediction bases).
SDXL (VAE, both text encoders, UNet base weights) and the CLIP vision encoder are frozen; the
trainable parameters are the two mappers and the rank-4 LoRA on ``to_q/to_k/to_v/to_out.0``.
Gradients flow through the frozen text encoders into the mappers.

Engineering (``accelerate``): mixed precision on GPU (frozen parts stored in the half dtype,
trainable ones in fp32), gradient accumulation, optional gradient checkpointing, multi-GPU via
``accelerate launch`` (only the main process writes), AdamW with linear warm-up. Checkpoints are
``OUT/checkpoints/step-NNNNNNNN/`` in the StellarNet checkpoint format (safetensors) plus
``training_state.pt`` (optimizer, LR scheduler and RNG states) and ``trainer_state.json``; a rerun
with the same ``--out`` resumes from the newest complete one (the step count continues, the data
order continues from the same epoch position). The final weights are written to ``OUT`` itself,
so ``OUT`` is what ``stellar generate --method stellarnet --checkpoint OUT`` reads. Every
``log_every`` steps the losses go to ``OUT/log.jsonl``; every ``validation_every`` steps images of
the first ``validation_images`` training photos go to ``OUT/validation/step-NNNNNNNN/``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from stellar.errors import StellarError
from stellar.generate.stellarnet.config import TrainConfig
from stellar.generate.stellarnet.data import MaskedFaceDataset, SelectionReport, TrainingPhoto, load_subject_mask

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
TRAINING_STATE = "training_state.pt"
LOG_FILE = "log.jsonl"


# ------------------------------------------------------------------------------------ loss (pure)
def latent_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) {0,1} pixel mask -> (B, 1, h, w) {0,1} latent mask (area average ≥ 1/2)."""
    return (F.interpolate(mask.float(), size=size, mode="area") >= 0.5).to(mask.dtype if mask.is_floating_point() else torch.float32)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ M (pred − target)² / (C · Σ M) per batch (mask (B, 1, h, w) broadcast over C channels).

    An all-zero mask contributes 0 (its denominator is clamped to 1), never NaN.
    """
    err = (pred.float() - target.float()) ** 2 * mask.float()
    return err.sum() / (mask.float().sum() * pred.shape[1]).clamp(min=1.0)


def l1_embeddings(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """mean |e| over every injected embedding value of every mapper."""
    total = sum(e.float().abs().sum() for e in embeddings)
    count = sum(e.numel() for e in embeddings)
    return total / count


# ------------------------------------------------------------------------------------ trainer
class StellarNetTrainer:
    """Train StellarNet's mappers and UNet LoRA.

    Args:
        config: hyper-parameters (:class:`TrainConfig`).
        photos: training photos (already filtered by :func:`~.data.exclude_identities`).
        out: output folder (final checkpoint, ``checkpoints/``, ``log.jsonl``, ``validation/``).
        components: prebuilt SDXL components + ``subject_encoder`` (tests); default: loaded from
            ``config.model.base`` / ``config.model.subject_encoder`` (registry cards).
        device: "cpu", "cuda", ... or None/"auto".
        selection: the data-selection report, written to ``OUT/data.json`` and logged.
        log: where progress lines go (default: ``tqdm.write``).
    """

    def __init__(
        self,
        config: TrainConfig,
        photos: Sequence[TrainingPhoto],
        out: str | Path,
        *,
        components: dict[str, Any] | None = None,
        device: str | None = None,
        selection: SelectionReport | None = None,
        log: Callable[[str], None] | None = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        from stellar.generate.base import resolve_device

        if not photos:
            raise StellarError("no training photos left after filtering\n  fix: check --images and --exclude-dataset")
        self.config = config
        self.photos = list(photos)
        self.out = Path(out)
        self.selection = selection
        if log is None:
            from tqdm.auto import tqdm

            log = tqdm.write
        self.log = log
        device = resolve_device(device)
        on_gpu = device.startswith("cuda")
        mp = config.mixed_precision
        if mp == "auto":
            mp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "no"
        self.accelerator = Accelerator(
            mixed_precision=mp,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            cpu=not on_gpu,
            project_config=ProjectConfiguration(project_dir=str(self.out)),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp, torch.float32)
        self._build(components)

    # ------------------------------------------------------------------ setup
    def _build(self, components: dict[str, Any] | None) -> None:
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        from stellar.generate.stellarnet.pipeline import StellarNetPipeline, resolve_source

        cfg = self.config
        if components is None:
            from diffusers import StableDiffusionXLPipeline
            from transformers import CLIPVisionModel

            src, rev = resolve_source(cfg.model.base, cfg.model.base_revision)
            base = StableDiffusionXLPipeline.from_pretrained(src, revision=rev, add_watermarker=False)
            components = {k: getattr(base, k) for k in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")}
            src, rev = resolve_source(cfg.model.subject_encoder, cfg.model.subject_encoder_revision)
            components["subject_encoder"] = CLIPVisionModel.from_pretrained(src, revision=rev)
        torch.manual_seed(cfg.seed)
        pipe = StellarNetPipeline.from_components(components, cfg.model, seed=cfg.seed)
        self.pipe = pipe
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        device = self.accelerator.device
        for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.subject_encoder):
            module.requires_grad_(False)
            module.eval()
        pipe.vae.to(device, dtype=torch.float32 if pipe.vae.config.get("force_upcast", False) else self.weight_dtype)
        for module in (pipe.text_encoder, pipe.text_encoder_2, pipe.subject_encoder):
            module.to(device, dtype=self.weight_dtype)
        for name, param in pipe.unet.named_parameters():
            param.requires_grad_(".lora_" in name)
        # trainable weights stay fp32 (autocast computes in the half dtype); frozen UNet weights are half
        pipe.unet.to(device, dtype=self.weight_dtype)
        for param in pipe.unet.parameters():
            if param.requires_grad:
                param.data = param.data.float()
        pipe.mapper.to(device, dtype=torch.float32)
        pipe.mapper_2.to(device, dtype=torch.float32)
        pipe.mapper.train()
        pipe.mapper_2.train()
        if cfg.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
            pipe.text_encoder.gradient_checkpointing_enable()
            pipe.text_encoder_2.gradient_checkpointing_enable()
        lora_params = [p for p in pipe.unet.parameters() if p.requires_grad]
        mapper_params = [*pipe.mapper.parameters(), *pipe.mapper_2.parameters()]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": lora_params, "lr": cfg.learning_rate},
                {"params": mapper_params, "lr": cfg.mapper_learning_rate or cfg.learning_rate},
            ],
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
            weight_decay=cfg.weight_decay,
        )
        self.lr_scheduler = get_scheduler(
            "constant_with_warmup", optimizer=self.optimizer, num_warmup_steps=cfg.warmup_steps * self.accelerator.num_processes
        )
        dataset = MaskedFaceDataset(self.photos, cfg.resolution, pipe._subject_features.image_size, cfg.horizontal_flip)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=True,
            num_workers=cfg.num_workers,
            drop_last=len(dataset) >= cfg.batch_size,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.unet, self.mapper, self.mapper_2, self.optimizer, self.loader, self.lr_scheduler = self.accelerator.prepare(
            pipe.unet, pipe.mapper, pipe.mapper_2, self.optimizer, loader, self.lr_scheduler
        )
        self.trainable = lora_params + mapper_params
        self.global_step = 0

    # ------------------------------------------------------------------ loss
    def loss_terms(
        self, batch: dict[str, torch.Tensor], *, noise: torch.Tensor | None = None, timesteps: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"mse", "l1", "loss", "pred", "target", "latent_mask"}`` of one batch (``noise`` / ``timesteps`` may be fixed)."""
        pipe, cfg = self.pipe, self.config
        device = self.accelerator.device
        pixels = batch["pixel_values"].to(device)
        with torch.no_grad():
            latents = pipe.vae.encode(pixels.to(pipe.vae.dtype)).latent_dist.sample()
            latents = (latents * pipe.vae.config.scaling_factor).float()
            features = pipe._subject_features.features(batch["clip_pixels"].to(device))
        if noise is None:
            noise = torch.randn_like(latents)
        noise = noise.to(device, latents.dtype)
        bsz = latents.shape[0]
        if timesteps is None:
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (bsz,), device=device)
        timesteps = timesteps.to(device).long()
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        embeddings = (self.mapper(features.float()), self.mapper_2(features.float()))
        prompt_embeds, pooled = pipe.encode_subject_prompts([cfg.caption] * bsz, embeddings)
        added = {"text_embeds": pooled, "time_ids": batch["time_ids"].to(device, prompt_embeds.dtype)}
        pred = self.unet(noisy.to(self.weight_dtype), timesteps, prompt_embeds, added_cond_kwargs=added).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        m = latent_mask(batch["mask"].to(device), tuple(latents.shape[-2:]))
        mse = masked_mse(pred, target, m)
        l1 = l1_embeddings(embeddings)
        return {"mse": mse, "l1": l1, "loss": mse + cfg.l1_weight * l1, "pred": pred, "target": target, "latent_mask": m}

    def training_step(
        self, batch: dict[str, torch.Tensor], *, noise: torch.Tensor | None = None, timesteps: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One micro-batch: forward, backward, and (at accumulation boundaries) clip + optimizer step;
        ``global_step`` counts optimizer steps. Returns the detached loss terms."""
        with self.accelerator.accumulate(self.unet, self.mapper, self.mapper_2):
            terms = self.loss_terms(batch, noise=noise, timesteps=timesteps)
            self.accelerator.backward(terms["loss"])
            if self.accelerator.sync_gradients and self.config.max_grad_norm > 0:
                self.accelerator.clip_grad_norm_(self.trainable, self.config.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.accelerator.sync_gradients:
            self.global_step += 1
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def evaluate_loss(self, batch: dict[str, torch.Tensor], seed: int = 0) -> float:
        """Masked MSE of ``batch`` with noise and timesteps drawn from ``seed`` (comparable across steps)."""
        g = torch.Generator().manual_seed(seed)
        pipe = self.pipe
        lat = self.config.resolution // pipe.vae_scale_factor
        n = batch["pixel_values"].shape[0]
        noise = torch.randn((n, pipe.unet.config.in_channels, lat, lat), generator=g)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (n,), generator=g)
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the VAE posterior sample
        try:
            return float(self.loss_terms(batch, noise=noise, timesteps=t)["mse"])
        finally:
            torch.random.set_rng_state(state)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints (those with ``trainer_state.json``), oldest first."""
        folder = self.out / CHECKPOINTS_DIR
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N/`` (main process only) and prune old ones."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        folder = self.out / CHECKPOINTS_DIR / f"step-{self.global_step:08d}"
        if folder.exists():
            shutil.rmtree(folder)
        self.pipe.save_pretrained(folder)
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict(),
                "torch_rng": torch.random.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            folder / TRAINING_STATE,
        )
        (folder / STATE_FILE).write_text(json.dumps({"step": self.global_step, "config": self.config.to_dict()}, indent=2))
        for old in self.checkpoint_dirs()[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def resume(self) -> int:
        """Load the newest complete checkpoint of ``out`` (if any); returns the step it continues from."""
        from safetensors.torch import load_file

        from stellar.generate.stellarnet.mappers import ImageToTokenMapper
        from stellar.generate.stellarnet.pipeline import LORA_FILE, load_lora_state_dict

        found = self.checkpoint_dirs()
        if not found:
            return 0
        folder = found[-1]
        for key in ("mapper", "mapper_2"):
            loaded = ImageToTokenMapper.from_pretrained(str(folder / key))
            getattr(self.pipe, key).load_state_dict(loaded.state_dict())
        load_lora_state_dict(self.pipe.unet, load_file(str(folder / LORA_FILE)), folder / LORA_FILE)
        for param in self.pipe.unet.parameters():  # loading may have copied into half-precision storage
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        torch.random.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.global_step = int(json.loads((folder / STATE_FILE).read_text())["step"])
        self.log(f"resumed from {folder} at step {self.global_step}")
        return self.global_step

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> Path | None:
        """Images of the first ``validation_images`` training photos with ``validation_prompt``."""
        cfg = self.config
        if not self.accelerator.is_main_process or cfg.validation_images < 1:
            return None
        from stellar.images import load_image

        folder = self.out / "validation" / f"step-{self.global_step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        photos = self.photos[: cfg.validation_images]
        images = [load_image(p.path) for p in photos]
        masks = [load_subject_mask(p, im.size) for p, im in zip(photos, images)]
        self.pipe.set_progress_bar_config(disable=True)
        self.mapper.eval(), self.mapper_2.eval()
        try:
            for i, (image, mask) in enumerate(zip(images, masks)):
                with self.accelerator.autocast():
                    out = self.pipe(
                        [cfg.validation_prompt],
                        [image],
                        [mask],
                        num_inference_steps=cfg.validation_steps,
                        guidance_scale=cfg.validation_guidance,
                        height=cfg.resolution,
                        width=cfg.resolution,
                        generator=[torch.Generator().manual_seed(cfg.seed + i)],
                    )
                out.images[0].save(folder / f"{i:02d}.png")
        finally:
            self.mapper.train(), self.mapper_2.train()
        return folder

    # ------------------------------------------------------------------ loop
    def _write_log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            with (self.out / LOG_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def train(self, *, max_steps: int | None = None, resume: bool = True, progress: bool = True) -> dict[str, Any]:
        """Run until ``max_steps`` optimizer steps (default ``config.max_steps``); returns a summary."""
        from tqdm.auto import tqdm

        cfg = self.config
        max_steps = max_steps or cfg.max_steps
        self.out.mkdir(parents=True, exist_ok=True)
        if self.selection is not None and self.accelerator.is_main_process:
            self.log(str(self.selection))
            (self.out / "data.json").write_text(json.dumps(self.selection.__dict__, indent=2))
        if resume:
            self.resume()
        start_step = self.global_step
        batches_per_epoch = max(len(self.loader), 1)
        micro = self.global_step * cfg.gradient_accumulation_steps
        epoch, skip = divmod(micro, batches_per_epoch)
        last: dict[str, float] = {}
        t0 = time.time()
        bar = tqdm(total=max_steps, initial=self.global_step, desc="training stellarnet", unit="step", disable=not progress or not self.accelerator.is_local_main_process)
        while self.global_step < max_steps:
            self.loader.set_epoch(epoch)
            loader = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
            skip = 0
            for batch in loader:
                terms = self.training_step(batch)
                if not self.accelerator.sync_gradients:
                    continue
                bar.update(1)
                last = {k: float(terms[k]) for k in ("loss", "mse", "l1")}
                if not all(math.isfinite(v) for v in last.values()):
                    raise StellarError(f"loss became {last} at step {self.global_step}\n  fix: lower learning_rate or use mixed_precision bf16/no")
                if self.global_step % cfg.log_every == 0 or self.global_step == max_steps:
                    record = {"step": self.global_step, **last, "lr": self.lr_scheduler.get_last_lr()[0], "seconds": round(time.time() - t0, 2)}
                    self._write_log(record)
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                if self.global_step % cfg.checkpoint_every == 0 and self.global_step < max_steps:
                    self.save_checkpoint()
                if self.global_step % cfg.validation_every == 0:
                    self.validate()
                if self.global_step >= max_steps:
                    break
            epoch += 1
        bar.close()
        self.save_checkpoint()
        if self.accelerator.is_main_process:
            self.pipe.save_pretrained(self.out)
        self.accelerator.wait_for_everyone()
        return {"steps": self.global_step, "started_at": start_step, "last": last, "seconds": round(time.time() - t0, 2), "out": str(self.out)}
