"""Tiny random StellarNet components for tests (diffusers' SDXL dummy-component style).

Every component is built from a small config after ``torch.manual_seed(0)``, so two calls give
identical weights. The CLIP tokenizers are built from a vocab written here (transformers' CLIP
tokenizer test style): letters, letter+``</w>``, digits and punctuation, so every prompt tokenizes
to distinct character-level tokens without any download.

Dimensions follow how ``StableDiffusionXLPipeline`` consumes them: text_encoder hidden 32 +
text_encoder_2 hidden 32 -> 64 = ``cross_attention_dim``; pooled projection 32 + 6 time ids x 8 = 80
= ``projection_class_embeddings_input_dim``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def write_clip_vocab(folder: Path) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` of a character-level CLIP BPE vocabulary into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase) + list(string.digits) + list(".,!?'-_*<>")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols] + ["th", "th</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    # One merge keeps the BPE model non-trivial; words otherwise stay split into characters.
    (folder / "merges.txt").write_text("#version: 0.2\nt h\n")
    return folder


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_clip_vocab(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
    if len(tok) < 50:  # a broken offline load silently yields a 2-token tokenizer (DESIGN §4)
        raise RuntimeError(f"tiny tokenizer has only {len(tok)} tokens")
    return tok


def tiny_components(tmp: Path) -> dict:
    """SDXL components (vae, unet, scheduler, 2 text encoders + tokenizers) and a tiny CLIP vision encoder."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="scaled_linear", timestep_spacing="leading"
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )
    text_config = dict(
        bos_token_id=0,
        eos_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        pad_token_id=1,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
    tokenizer = tiny_tokenizer(tmp / "tokenizer")
    tokenizer_2 = tiny_tokenizer(tmp / "tokenizer_2")
    torch.manual_seed(0)
    subject_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        )
    )
    return {
        "vae": vae,
        "unet": unet,
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "subject_encoder": subject_encoder,
    }
