"""StellarNet model and pipeline with tiny random components (no weights, no network, CPU).

Covers: S* token injection (both text encoders), mapper shapes, masked subject encoding, the
pipeline end to end through ``StellarNetMethod`` + the generated-set writer, seeding, and
checkpoint save -> load.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stellarnet_tiny import tiny_components

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from stellar.generate.stellarnet.config import StellarNetConfig  # noqa: E402
from stellar.generate.stellarnet.injection import inject, placeholder_tokens  # noqa: E402
from stellar.generate.stellarnet.mappers import ImageToTokenMapper  # noqa: E402
from stellar.generate.stellarnet.pipeline import CheckpointError, StellarNetPipeline  # noqa: E402

CONFIG = StellarNetConfig(vision_layers=(1, 2, 3), mapper_hidden=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models are dominated by thread overhead on a shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pipe(tmp_path) -> StellarNetPipeline:
    pipe = StellarNetPipeline.from_components(tiny_components(tmp_path), CONFIG, seed=0)
    # a fresh LoRA is the identity (B = 0); give it weights so save/load really has to carry them
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return pipe


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return _pipe(tmp_path_factory.mktemp("tiny"))


def _photo(seed: int, size: int = 48) -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    mask = np.zeros((size, size), bool)
    mask[8:36, 12:40] = True
    return im, mask


# ------------------------------------------------------------------------------ injection
def test_inject_replaces_exactly_the_placeholder_positions():
    ids = torch.tensor([[0, 5, 90, 91, 7, 1], [0, 91, 4, 90, 1, 1]])
    base = torch.randn(2, 6, 3)
    emb = torch.randn(2, 2, 3)
    out = inject(base, ids, [90, 91], emb)
    assert torch.equal(out[0, 2], emb[0, 0]) and torch.equal(out[0, 3], emb[0, 1])
    assert torch.equal(out[1, 3], emb[1, 0]) and torch.equal(out[1, 1], emb[1, 1])
    keep = ~torch.isin(ids, torch.tensor([90, 91]))
    assert torch.equal(out[keep], base[keep])


def test_text_encoder_inputs_at_placeholders_equal_mapper_outputs(pipe):
    """Capture what each text encoder's embedding layer hands to the transformer."""
    texts = ["{} riding a horse", "a portrait of {}"]
    g = torch.Generator().manual_seed(0)
    emb = (torch.randn(2, 5, 32, generator=g), torch.randn(2, 5, 32, generator=g))
    captured = {}
    handles = []
    for i, te in enumerate((pipe.text_encoder, pipe.text_encoder_2)):
        handles.append(getattr(te, "text_model", te).embeddings.register_forward_hook(lambda m, a, kw, out, i=i: captured.__setitem__(i, out.detach()), with_kwargs=True))
    try:
        pipe.encode_subject_prompts(texts, emb)
    finally:
        for h in handles:
            h.remove()
    from stellar.generate.stellarnet.injection import fill_template, tokenize

    for i, (tok, te) in enumerate(((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))):
        pids = pipe.placeholder_ids[i]
        ids = tokenize(tok, [fill_template(t, CONFIG.subject_phrase, 5) for t in texts], pids)
        pos = getattr(te, "text_model", te).embeddings.position_embedding.weight[: ids.shape[1]].detach()
        got = captured[i] - pos  # token part of the embedding layer's output
        for b in range(2):
            for k, pid in enumerate(pids):
                (t,) = (ids[b] == pid).nonzero()[0]
                torch.testing.assert_close(got[b, t], emb[i][b, k], rtol=0, atol=1e-6)
        elsewhere = ~torch.isin(ids, torch.tensor(pids))
        expected = te.get_input_embeddings().weight.detach()[ids]
        torch.testing.assert_close(got[elsewhere], expected[elsewhere], rtol=0, atol=1e-6)
        assert elsewhere.sum() > 0 and (~elsewhere).sum() == 2 * 5


def test_placeholders_are_single_tokens_in_both_tokenizers(pipe):
    for tok, ids in zip((pipe.tokenizer, pipe.tokenizer_2), pipe.placeholder_ids):
        assert tok.convert_tokens_to_ids(list(placeholder_tokens(5))) == ids
        assert len(tok(" ".join(placeholder_tokens(5)), add_special_tokens=False).input_ids) == 5


def test_too_long_prompt_is_an_actionable_error(pipe):
    from stellar.errors import StellarError

    emb = (torch.zeros(1, 5, 32), torch.zeros(1, 5, 32))
    with pytest.raises(StellarError, match="shorten the prompt"):
        pipe.encode_subject_prompts(["x " * 80 + "{}"], emb)


# ------------------------------------------------------------------------------ mappers / encoder
def test_mapper_shapes_per_text_encoder(pipe):
    feats = torch.randn(3, 3, 32)
    e1, e2 = pipe.token_embeddings(feats)
    assert e1.shape == (3, 5, pipe.text_encoder.get_input_embeddings().embedding_dim)
    assert e2.shape == (3, 5, pipe.text_encoder_2.get_input_embeddings().embedding_dim)
    # SDXL widths: 768 (CLIP ViT-L text) and 1280 (OpenCLIP bigG text) from ViT-L/14 features (1024)
    for width in (768, 1280):
        m = ImageToTokenMapper(vision_dim=1024, num_layers_in=5, token_dim=width, num_tokens=5, hidden_dim=1024, hidden_layers=2)
        assert m(torch.randn(2, 5, 1024)).shape == (2, 5, width)
        assert sum(isinstance(x, torch.nn.LayerNorm) for x in m.mlp) == 2
        assert sum(isinstance(x, torch.nn.LeakyReLU) for x in m.mlp) == 2
    with pytest.raises(ValueError, match="expected features"):
        pipe.mapper(torch.randn(2, 4, 32))


def test_masked_encoding_ignores_pixels_outside_the_mask(pipe):
    im, mask = _photo(0)
    arr = np.asarray(im).copy()
    other = arr.copy()
    other[~mask] = 255 - other[~mask]  # change every background pixel
    inside = arr.copy()
    inside[mask] = 255 - inside[mask]
    with torch.no_grad():
        f = pipe.subject_features([im, Image.fromarray(other), Image.fromarray(inside)], [mask] * 3)
    assert f.shape == (3, 3, 32)
    torch.testing.assert_close(f[0], f[1], rtol=0, atol=1e-6)
    assert (f[0] - f[2]).abs().max() > 1e-3


# ------------------------------------------------------------------------------ pipeline
def _generate(pipe, seed: int) -> np.ndarray:
    im, mask = _photo(1)
    out = pipe(["{} riding a horse"], [im], [mask], num_inference_steps=2, output_type="np", generator=[torch.Generator().manual_seed(seed)])
    return out.images


def test_save_pretrained_from_pretrained_gives_identical_outputs(pipe, tmp_path):
    ref = _generate(pipe, 0)
    assert ref.shape == (1, 64, 64, 3)
    pipe.save_pretrained(tmp_path / "ckpt", include_base=True)
    assert (tmp_path / "ckpt" / "stellarnet.json").is_file() and (tmp_path / "ckpt" / "unet_lora.safetensors").is_file()
    loaded = StellarNetPipeline.from_pretrained(tmp_path / "ckpt")
    np.testing.assert_allclose(_generate(loaded, 0), ref, atol=1e-5)
    # a checkpoint without LoRA weights must not load silently
    (tmp_path / "ckpt" / "unet_lora.safetensors").unlink()
    with pytest.raises(CheckpointError, match="unet_lora"):
        StellarNetPipeline.from_pretrained(tmp_path / "ckpt")


def test_not_a_checkpoint_is_an_actionable_error(tmp_path):
    with pytest.raises(CheckpointError, match="stellarnet.json"):
        StellarNetPipeline.from_pretrained(tmp_path)


def test_lora_and_mappers_change_the_output(pipe):
    ref = _generate(pipe, 0)
    with torch.no_grad():
        saved = pipe.mapper.proj.bias.clone()
        pipe.mapper.proj.bias.add_(1.0)
        changed = _generate(pipe, 0)
        pipe.mapper.proj.bias.copy_(saved)
    assert np.abs(changed - ref).max() > 1e-4
    np.testing.assert_array_equal(_generate(pipe, 0), ref)


def test_generate_end_to_end_through_method_and_writer(pipe, tmp_path):
    from stellar.data.dataset import StellarDataset
    from stellar.data.generated import GeneratedSet
    from stellar.generate.stellarnet.method import StellarNetMethod
    from stellar.generate.writer import write_generated_set
    from stellar.testing import make_synthetic_dataset

    ckpt = pipe.save_pretrained(tmp_path / "ckpt", include_base=True)
    root = make_synthetic_dataset(tmp_path / "ds", 2, photos=1, t_prompts=1, h_prompts=1, size=48)
    ds = StellarDataset(root)
    jobs = ds.jobs("test")
    assert len(jobs) == 4

    def run(folder, seed):
        method = StellarNetMethod(ckpt, steps=2, resolution=64, batch_size=2)
        return write_generated_set(method, jobs, folder, dataset=ds, seed=seed, batch_size=2, device="cpu", progress=False)

    first = run(tmp_path / "a", 42)
    assert first.written == 4
    gs = GeneratedSet(tmp_path / "a", ds, split="test")
    assert [p for p in gs.problems(decode_images=True) if p.severity == "error"] == []
    assert len(gs) == 4
    sidecar = (tmp_path / "a" / f"{jobs[0].name}.json").read_text()
    assert '"steps": 2' in sidecar and "checkpoint_digest" in sidecar
    # resume: everything valid is skipped
    again = run(tmp_path / "a", 42)
    assert again.written == 0 and again.skipped == 4
    # same seed -> identical images; other seed -> different images
    run(tmp_path / "b", 42)
    run(tmp_path / "c", 7)
    for job in jobs:
        a = np.asarray(Image.open(tmp_path / "a" / f"{job.name}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / f"{job.name}.png"))
        c = np.asarray(Image.open(tmp_path / "c" / f"{job.name}.png"))
        np.testing.assert_array_equal(a, b)
        assert np.abs(a.astype(int) - c.astype(int)).max() > 0
    # an image depends on its job, not its batch: batch size 1 reproduces batch size 2
    single = StellarNetMethod(ckpt, steps=2, resolution=64, batch_size=1)
    single.setup("cpu")
    single.prepare_subject(ds.subject(jobs[1].subject))
    (img,) = single.generate([jobs[1]], 42)
    b1 = np.asarray(Image.open(tmp_path / "a" / f"{jobs[1].name}.png")).astype(int)
    assert np.abs(np.asarray(img).astype(int) - b1).max() <= 1


def test_cli_generate_stellarnet_then_generated_check(pipe, tmp_path, capsys):
    """`stellar generate --method stellarnet --checkpoint CKPT` (a self-contained tiny checkpoint)."""
    from stellar.cli import main
    from stellar.testing import make_synthetic_dataset

    ckpt = pipe.save_pretrained(tmp_path / "ckpt", include_base=True)
    root = make_synthetic_dataset(tmp_path / "ds", 1, photos=2, t_prompts=1, h_prompts=0, size=48)
    args = ["generate", "--method", "stellarnet", "--checkpoint", str(ckpt), "--dataset", str(root), "--out", str(tmp_path / "gen"),
            "--steps", "2", "--resolution", "32", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert "2 written, 0 already done, 2 jobs" in capsys.readouterr().out
    assert main(["generated", "check", "--dataset", str(root), "--generated", str(tmp_path / "gen")]) == 0
    assert "matched 2/2" in capsys.readouterr().out
    assert main(args) == 0 and "0 written, 2 already done" in capsys.readouterr().out
