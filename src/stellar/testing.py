"""Helpers that write small synthetic datasets and generated sets, for tests and benchmarks.

Synthetic photos are coloured noise with a bright ellipse ("head") and its mask: they exercise the
formats, not the face models (the real-photo fixture in :mod:`stellar.data.samples` does that).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from stellar.data import layout

T_TEMPLATES = (
    ("{} riding a horse in the jungle", ["horse", "jungle"], ["animal", "location"]),
    ("{} holding an umbrella next to a car", ["umbrella", "car"], ["object", "vehicle"]),
    ("{} as a doctor in a hospital", ["doctor", "hospital"], ["profession", "location"]),
    ("{} eating a pizza at the beach", ["pizza", "beach"], ["food", "location"]),
)
H_TEMPLATES = ("a portrait of {} smiling at sunset", "{} reading a book in a cosy library")


def synthetic_photo(rng: np.random.Generator, size: int = 128) -> tuple[Image.Image, Image.Image]:
    """(RGB photo, palette mask with the 'head' ellipse = 1)."""
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size * rng.uniform(0.4, 0.6), size * rng.uniform(0.4, 0.6)
    inside = ((yy - cy) / (size * 0.3)) ** 2 + ((xx - cx) / (size * 0.22)) ** 2 <= 1
    arr[inside] = rng.integers(150, 256, 3, dtype=np.uint8)
    mask = Image.fromarray(inside.astype(np.uint8), "P")
    mask.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    return Image.fromarray(arr, "RGB"), mask


def make_synthetic_dataset(
    root: str | Path,
    n_subjects: int = 3,
    *,
    photos: int = 2,
    t_prompts: int = 4,
    h_prompts: int = 2,
    size: int = 128,
    first_id: int = 0,
    seed: int = 0,
) -> Path:
    """Write an official-layout dataset of ``n_subjects`` subjects ``NNN/`` starting at ``first_id``.

    Subjects in the val range (200–399) get only Stellar-T prompts, as in the official release.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (root / layout.OBJECTS_FILE).write_text("\n".join(sorted({d for _, ds, _ in T_TEMPLATES for d in ds})) + "\n")
    for s in range(first_id, first_id + n_subjects):
        folder = root / f"{s:03d}"
        folder.mkdir(exist_ok=True)
        for i in range(photos):
            photo, mask = synthetic_photo(rng, size)
            photo.save(folder / f"{i}.jpg", quality=90)
            mask.save(folder / layout.mask_name(i))
            attributes = {name: int(rng.choice([-1, 1])) for name in layout.CELEBA_ATTRIBUTES}
            (folder / layout.attributes_name(i)).write_text(
                json.dumps(
                    {
                        "attributes": attributes,
                        "finegrained_attributes": {},
                        "identity": str(1000 + s),
                        "original_filename": f"{2 * s + i}.jpg",
                    }
                )
            )
        picks = [T_TEMPLATES[k % len(T_TEMPLATES)] for k in range(t_prompts)]
        (folder / layout.PROMPTS_T_FILE).write_text(
            json.dumps(
                {"prompts": [p for p, _, _ in picks], "detectables": [d for _, d, _ in picks], "categories": [c for _, _, c in picks]}
            )
        )
        if layout.official_split(f"{s:03d}") == "test" and h_prompts:
            (folder / layout.PROMPTS_H_FILE).write_text(
                json.dumps({"prompts": [H_TEMPLATES[k % len(H_TEMPLATES)] for k in range(h_prompts)]})
            )
    return root


# ---------------------------------------------------------------------------- tiny CLIP
def _byte_level_chars() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: 256 printable stand-ins for the 256 byte values."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def clip_char_vocab() -> dict[str, int]:
    """A 514-token CLIP BPE vocabulary without merges: every byte, every byte + ``</w>``, BOS, EOS.

    Any text tokenizes (one token per character), so prompt-length behaviour is testable offline.
    """
    chars = _byte_level_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return vocab


def tiny_clip_folder(folder: str | Path, *, seed: int = 0, context: int = 77) -> Path:
    """Save a tiny random ``CLIPModel`` + tokenizer (local vocab files) + image processor to ``folder``.

    The folder loads with ``ClipEncoder.from_pretrained(folder)`` exactly like a real checkpoint.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = clip_char_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=context)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=context, bos_token_id=512, eos_token_id=513, pad_token_id=513),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# ------------------------------------------------------- tiny standard-metric models (DINO, HPS, aesthetic)
def tiny_dino_folder(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random DINO-style ``ViTModel`` (hidden 32, 2 layers, image 32, patch 8) + ``ViTImageProcessor``.

    The processor mirrors ``facebook/dino-vits16``'s config (plain resize, bilinear, mean = std = 0.5) at 32 px.
    Loads with :func:`stellar.models.standard.load_dino` exactly like the real checkpoint folder.
    """
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8)
    torch.manual_seed(seed)
    ViTModel(config, add_pooling_layer=False).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


#: A tiny open_clip architecture (the real HPS one is ViT-H-14); the vocabulary is open_clip's packaged BPE.
TINY_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


def tiny_hps_folder(folder: str | Path, *, seed: int = 0) -> Path:
    """Save tiny random open_clip CLIPs as ``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt``
    (``{"state_dict": ...}`` like the real checkpoints; different seeds) + ``open_clip_config.json``."""
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP_CFG}))
    for k, name in enumerate(("HPS_v2_compressed.pt", "HPS_v2.1_compressed.pt")):
        torch.manual_seed(seed + k)
        model = open_clip.CLIP(**TINY_OPEN_CLIP_CFG)
        torch.save({"state_dict": model.state_dict()}, folder / name)
    return folder


def tiny_aesthetic_weights(path: str | Path, *, input_dim: int = 16, seed: int = 0) -> Path:
    """Save a random improved-aesthetic-predictor state dict (``layers.{0,2,4,6,7}.*``, sizes input_dim-1024-128-64-16-1)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = (input_dim, 1024, 128, 64, 16, 1)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, idx in enumerate((0, 2, 4, 6, 7)):
        bound = 1.0 / dims[i] ** 0.5
        state[f"layers.{idx}.weight"] = (torch.rand(dims[i + 1], dims[i], generator=gen) * 2 - 1) * bound
        state[f"layers.{idx}.bias"] = (torch.rand(dims[i + 1], generator=gen) * 2 - 1) * bound
    torch.save(state, path)
    return path


# ------------------------------------------------------- tiny open-vocabulary detectors (GOA / RFS)
def _tiny_owl_config(v2: bool):
    from transformers import Owlv2Config, OwlViTConfig

    vocab = clip_char_vocab()
    # projection_dim == text hidden size: the class head compares projected queries with image embeddings
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, bos_token_id=512, eos_token_id=513, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    return (Owlv2Config if v2 else OwlViTConfig)(text_config=text, vision_config=vision, projection_dim=32)  # fmt: skip


def tiny_owlvit_folder(folder: str | Path, *, v2: bool = False, seed: int = 0) -> Path:
    """Save a tiny random OWL-ViT (``v2=True``: OWLv2) detector + CLIP tokenizer (local vocab) + image processor.

    Image 32 px, patch 8 (a 4×4 grid of 16 boxes), hidden 32, 2 layers; the tokenizer is the 514-token
    byte-level vocabulary of :func:`clip_char_vocab` (any text tokenizes), padding with ``!`` like the
    real OWL tokenizers. The box head's last layer is zeroed, so every predicted box is exactly its
    patch's cell of the grid (the model's box bias): box coordinates have known answers. The class head
    is re-drawn small so that scores spread over (0, 1) instead of saturating. Loads with
    :func:`stellar.models.detectors.load_detector` like a real checkpoint folder.
    """
    import torch
    from transformers import CLIPTokenizer, Owlv2ForObjectDetection, Owlv2ImageProcessor, OwlViTForObjectDetection, OwlViTImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_char_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=16, pad_token="!")
    torch.manual_seed(seed)
    model = (Owlv2ForObjectDetection if v2 else OwlViTForObjectDetection)(_tiny_owl_config(v2)).eval()
    with torch.no_grad():
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
        for layer in (model.class_head.logit_shift, model.class_head.logit_scale):
            layer.weight.normal_(0.0, 0.05)
            layer.bias.zero_()
    if v2:
        processor = Owlv2ImageProcessor(size={"height": 32, "width": 32})
    else:
        processor = OwlViTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def bert_wordpiece_vocab(words: tuple[str, ...] = ()) -> list[str]:
    """A small BERT WordPiece vocabulary with BERT's special-token ids ([PAD] 0, [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103, "." 1012, "?" 1029 — Grounding DINO hard-codes the last four), every
    lower-case letter and digit alone and as a ``##`` continuation (any lower-case word tokenizes),
    plus ``words`` as whole tokens."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    pieces = [*alphabet, *(f"##{c}" for c in alphabet), "-", "'", ",", "!", *words]
    extra = list(dict.fromkeys(p for p in pieces if p not in (".", "?")))
    fixed = {1012: ".", 1029: "?"}
    k = 0
    while extra or len(tokens) <= max(fixed):
        i = len(tokens)
        if i in fixed:
            tokens.append(fixed[i])
        elif extra:
            tokens.append(extra.pop(0))
        else:
            tokens.append(f"[unused{k + 99}]")
            k += 1
    return tokens


def tiny_grounding_dino_folder(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random Grounding DINO (Swin embed 8, BERT hidden 8, d_model 32, 20 object queries,
    text ≤ 32 tokens) + a BERT tokenizer from a local ``vocab.txt`` (:func:`bert_wordpiece_vocab`) +
    image processor (shortest side 96, longest 160) to ``folder``."""
    import torch
    from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(bert_wordpiece_vocab(("person", "horse", "jungle"))) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))  # transformers 5: vocab=, not vocab_file=
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                             image_size=64, out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=8, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=16, decoder_ffn_dim=16, encoder_attention_heads=2,
        decoder_attention_heads=2, num_queries=20, num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
        use_timm_backbone=False, use_pretrained_backbone=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 160}).save_pretrained(folder)
    return folder


def tiny_blip_vqa_folder(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random ``BlipForQuestionAnswering`` (hidden 32, 2 layers, image 32, patch 8) + a BERT
    tokenizer from a local ``vocab.txt`` (with ``yes``, ``no`` and BLIP's ``[DEC]`` answer-start token)
    + image processor to ``folder``; loads with ``VqaRelationScorer.from_pretrained(folder)``."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(bert_wordpiece_vocab(("yes", "no", "is", "the", "person", "[DEC]", "[ENC]"))) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"),
                         sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
                           initializer_range=0.02),  # BlipVisionConfig default 1e-10: the image would not matter
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    BlipForQuestionAnswering(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


# ------------------------------------------------------------ tiny ImageReward / HPSv1 checkpoints
def tiny_image_reward_folder(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random ImageReward checkpoint in the official format to ``folder``:
    ``ImageReward.pt`` (keys ``blip.visual_encoder.*`` in BLIP's timm-style names, ``blip.text_encoder.*``,
    ``mlp.layers.*``), ``med_config.json`` (BERT, 2 layers, width 32) and a local ``vocab.txt``
    (:func:`bert_wordpiece_vocab`; the loader adds ``[DEC]`` and ``[ENC]`` as BLIP does). Vision: ViT
    width 64 (one 64-d head), 2 blocks, patch 8, image 32."""
    import torch
    from transformers import BertTokenizer, BlipVisionConfig, BlipVisionModel
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    from stellar.models.image_reward import _text_config, official_vision_key
    from stellar.models.standard import aesthetic_head

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(bert_wordpiece_vocab(("a", "person", "horse", "riding", "the"))) + "\n")
    tok = BertTokenizer(vocab=str(folder / "vocab.txt"))
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    med = {"architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 32, "intermediate_size": 37, "layer_norm_eps": 1e-12,
           "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 2, "num_hidden_layers": 2, "pad_token_id": 0,
           "vocab_size": len(tok), "encoder_width": 64, "add_cross_attention": True}  # fmt: skip
    (folder / "med_config.json").write_text(json.dumps(med, indent=2))
    torch.manual_seed(seed)
    vision = BlipVisionModel(BlipVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1,
                                              image_size=32, patch_size=8, layer_norm_eps=1e-6, initializer_range=0.02))  # fmt: skip
    # (BlipVisionConfig initialises with std 1e-10 by default: its outputs would not depend on the image)
    text = BlipTextModel(_text_config(med, 64, tok), add_pooling_layer=False)
    head = aesthetic_head((32, 64, 32, 16, 8, 1))
    state = {}
    for k, v in vision.state_dict().items():
        state["blip.visual_encoder." + official_vision_key(k)] = v
    for k, v in text.state_dict().items():
        if not k.endswith("position_ids"):
            state["blip.text_encoder." + k] = v
    for k, v in head.state_dict().items():
        state["mlp.layers." + k] = v
    torch.save(state, folder / "ImageReward.pt")
    return folder


def tiny_hpsv1_folder(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random open_clip CLIP (QuickGELU, as OpenAI's) as ``hpc.pt`` in HPS v1's format — an
    OpenAI ``clip`` state dict under ``"state_dict"``, with OpenAI's integer metadata entries — plus
    ``open_clip_config.json``."""
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {**TINY_OPEN_CLIP_CFG, "quick_gelu": True}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    torch.manual_seed(seed)
    state = dict(open_clip.CLIP(**cfg).state_dict())
    state.update(input_resolution=32, context_length=77, vocab_size=49408)
    torch.save({"state_dict": state}, folder / "hpc.pt")
    return folder


# ------------------------------------------------------------------------- tiny DreamSim ensemble
TINY_DREAMSIM_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 12, "num_heads": 2, "mlp_ratio": 2.0}


def tiny_dreamsim_folder(folder: str | Path, *, seed: int = 0, image_size: int = 32, proj_dim: int = 16, lora_r: int = 2, adapter_format: str = "safetensors") -> Path:
    """Save a tiny random DreamSim ensemble in the released formats to ``folder``: the DINO backbone as a
    plain state dict (``dino_vitbase16_pretrain.pth``), the CLIP / OpenCLIP backbones converted to the DINO
    layout as ``{"state_dict": {..., "proj": P}}`` (``*_pretrain.pth.tar``), a PEFT LoRA adapter on every
    ``attn.qkv`` (``ensemble_lora/adapter_config.json`` + ``adapter_model.bin``, keys
    ``base_model.model.extractor_list.N.model.blocks.J.attn.qkv.lora_{A,B}.weight``, B non-zero as after
    training) and ``dreamsim_config.json`` (the tiny architecture: ViT width 32, 12 blocks as ViT-B — DreamSim reads
    block 11 —, patch 8)."""
    import torch

    from stellar.models.dreamsim import ENSEMBLE, build_vit

    folder = Path(folder)
    (folder / "ensemble_lora").mkdir(parents=True, exist_ok=True)
    (folder / "dreamsim_config.json").write_text(json.dumps({"vit": TINY_DREAMSIM_VIT, "image_size": image_size}))
    gen = torch.Generator().manual_seed(seed)
    dim = TINY_DREAMSIM_VIT["embed_dim"]
    adapter = {}
    for i, spec in enumerate(ENSEMBLE):
        torch.manual_seed(seed + i)
        model = build_vit(spec, TINY_DREAMSIM_VIT, image_size)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for k in ("cls_token", "pos_embed"):  # (zeros at construction) random, as trained
            state[k] = 0.02 * torch.randn(state[k].shape, generator=gen)
        if spec.feature == "embedding":
            state["proj"] = torch.randn(dim, proj_dim, generator=gen) / dim**0.5
            torch.save({"state_dict": state}, folder / spec.file)
        else:
            torch.save(state, folder / spec.file)
        for j in range(TINY_DREAMSIM_VIT["depth"]):
            base = f"base_model.model.extractor_list.{i}.model.blocks.{j}.attn.qkv"
            adapter[f"{base}.lora_A.weight"] = 0.1 * torch.randn(lora_r, dim, generator=gen)
            adapter[f"{base}.lora_B.weight"] = 0.1 * torch.randn(3 * dim, lora_r, generator=gen)
    cfg = {"r": lora_r, "lora_alpha": 0.5, "lora_dropout": 0.3, "bias": "none", "target_modules": ["qkv"], "peft_type": "LORA"}
    (folder / "ensemble_lora" / "adapter_config.json").write_text(json.dumps(cfg))
    if adapter_format == "bin":
        torch.save(adapter, folder / "ensemble_lora" / "adapter_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in adapter.items()}, str(folder / "ensemble_lora" / "adapter_model.safetensors"))
    return folder
