"""Standard comparison metrics (DESIGN §6.7): DINO, PickScore, LAION aesthetic, HPSv2.

Tiny random models built from configs (ViT hidden 32 / 2 layers / image 32 / patch 8, the tiny CLIP of
``stellar.testing``, a tiny open_clip with the packaged BPE vocabulary) are saved to folders and
loaded through the same loaders as the real checkpoints. Expected values are computed independently
(direct model calls, hand-built weights). The ``slow`` tests use the real weights when cached.
"""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from stellar.data import StellarDataset  # noqa: E402
from stellar.engine import EvalConfig, evaluate  # noqa: E402
from stellar.engine.cache import FeatureCache  # noqa: E402
from stellar.engine.scorers import ScoringItem, build_scorers  # noqa: E402
from stellar.engine.standard_scorers import AestheticScorer, DinoScorer, Hpsv2Scorer, PickScoreScorer  # noqa: E402
from stellar.errors import StellarError  # noqa: E402
from stellar.models import registry  # noqa: E402
from stellar.models.standard import (  # noqa: E402
    load_aesthetic,
    load_aesthetic_head,
    load_dino,
    load_hps,
    load_pickscore,
)
from stellar.testing import tiny_aesthetic_weights, tiny_clip_folder, tiny_dino_folder, tiny_hps_folder  # noqa: E402

PICK_SCALE = 50.0  # the tiny PickScore's logit_scale.exp(), set explicitly so the formula is checked


def images(n, seed=0, shape=(40, 56, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import CLIPModel

    root = tmp_path_factory.mktemp("standard")
    pick = tiny_clip_folder(root / "pick", seed=3)
    model = CLIPModel.from_pretrained(str(pick))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(PICK_SCALE))
    model.save_pretrained(pick)
    # PickScore's hub repo has no tokenizer: a model-only folder + a separate processor folder
    pick_model_only = root / "pick-model"
    pick_model_only.mkdir()
    for f in pick.iterdir():
        if f.name in ("config.json", "model.safetensors"):
            shutil.copy(f, pick_model_only / f.name)
    processor = root / "pick-processor"
    processor.mkdir()
    for f in pick.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, processor / f.name)
    return {
        "dino": tiny_dino_folder(root / "dino"),
        "pick": pick,
        "pick_model_only": pick_model_only,
        "pick_processor": processor,
        "clip": tiny_clip_folder(root / "clip", seed=5),
        "aesthetic": tiny_aesthetic_weights(root / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth", input_dim=16),
        # open_clip is the optional `hps` extra: without it the HPS tests skip (hps fixture)
        "hps": tiny_hps_folder(root / "hps") if _has_open_clip() else None,
    }


def _has_open_clip():
    try:
        import open_clip  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def dino(folders):
    return load_dino(str(folders["dino"]), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def pick(folders):
    return load_pickscore(str(folders["pick"]), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def hps(folders):
    pytest.importorskip("open_clip")
    return load_hps("v2.0", str(folders["hps"]), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def aesthetic(folders):
    return load_aesthetic(str(folders["aesthetic"]), str(folders["clip"]), device="cpu", batch_size=2)


@pytest.fixture
def overrides():
    yield registry.set_local_override
    registry.clear_local_overrides()


# ----------------------------------------------------------------------------------------------- DINO
def test_dino_is_the_normalised_cls_token_batched_like_one_by_one(dino, folders):
    from transformers import ViTImageProcessor, ViTModel

    ims = images(5)
    emb = dino.encode_images(ims)
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    one_by_one = np.concatenate([dino.encode_images([im]) for im in ims])
    assert np.allclose(emb, one_by_one, atol=1e-5)
    # independent path: the checkpoint's processor + ViTModel, CLS token (index 0), normalised
    model = ViTModel.from_pretrained(str(folders["dino"]), add_pooling_layer=False).eval()
    proc = ViTImageProcessor.from_pretrained(str(folders["dino"]))
    with torch.no_grad():
        cls = model(**proc(images=ims, return_tensors="pt")).last_hidden_state[:, 0].numpy()
    assert np.allclose(emb, cls / np.linalg.norm(cls, axis=1, keepdims=True), atol=1e-5)
    mean_pooled = model(**proc(images=ims[:1], return_tensors="pt")).last_hidden_state.mean(1).detach().numpy()[0]
    assert not np.allclose(emb[0], mean_pooled / np.linalg.norm(mean_pooled), atol=1e-3)


def test_dino_uses_the_checkpoint_processor_and_names_it(dino, folders, tmp_path):
    assert '"resample":2' in dino.protocol and '"image_mean":[0.5,0.5,0.5]' in dino.protocol and "dtype=fp32" in dino.protocol
    other = tmp_path / "dino"
    shutil.copytree(folders["dino"], other)
    cfg = json.loads((other / "preprocessor_config.json").read_text())
    cfg["image_mean"] = [0.485, 0.456, 0.406]
    (other / "preprocessor_config.json").write_text(json.dumps(cfg))
    changed = load_dino(str(other), device="cpu")
    assert changed.protocol != dino.protocol
    im = images(1)
    assert not np.allclose(changed.encode_images(im), dino.encode_images(im), atol=1e-4)


def test_dino_scorer_copy_is_one_and_reference_side_is_cached(dino, tmp_path):
    ims = images(3, seed=1)
    photo = tmp_path / "photo.png"
    Image.fromarray(ims[0]).save(photo)
    items = [_item(im, f"g{k}", "ref0", "a person", loader=lambda: ims[0]) for k, im in enumerate(ims)]
    scorer = DinoScorer(dino, batch_size=2)
    cache = FeatureCache(tmp_path / "features")
    rows = scorer.score(items, cache)
    assert rows[0]["dino"] == pytest.approx(1.0, abs=1e-5)  # the copy
    assert all(r["dino"] < 0.999 for r in rows[1:])
    assert scorer.encoded == {"generated": 3, "reference": 1}  # one photo, three jobs: encoded once
    again = scorer.score(items, cache)
    assert again == rows and scorer.encoded == {"generated": 3, "reference": 1}


# ------------------------------------------------------------------------------------------ PickScore
def test_pickscore_canonical_is_logit_scale_times_cosine(pick, folders):
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    assert pick.logit_scale == pytest.approx(PICK_SCALE, rel=1e-5)
    ims, texts = images(3, seed=2), ["a person riding a horse", "a person in the jungle", "a person"]
    img, (txt, truncated) = pick.encode_images(ims), pick.encode_texts(texts)
    assert img.shape == (3, 16) and txt.shape == (3, 16) and not truncated.any()
    canonical, raw = pick.scores(txt, img)
    # independent: CLIPModel features, normalised, cosine, times exp(logit_scale)
    model = CLIPModel.from_pretrained(str(folders["pick"])).eval()
    tok, proc = AutoTokenizer.from_pretrained(str(folders["pick"])), CLIPImageProcessor.from_pretrained(str(folders["pick"]))
    with torch.no_grad():
        i = model.get_image_features(**proc(images=ims, return_tensors="pt")).pooler_output
        t = model.get_text_features(**tok(texts, padding="max_length", max_length=77, return_tensors="pt")).pooler_output
    cos = torch.nn.functional.cosine_similarity(i, t).numpy()
    assert np.allclose(raw, cos, atol=1e-5)
    assert np.allclose(canonical, PICK_SCALE * cos, atol=1e-4)
    assert np.allclose(pick.encode_images(ims[:1]), img[:1], atol=1e-5)  # batching = one by one


def test_pickscore_truncates_long_prompts_explicitly(pick):
    long, head = "a " * 100, "a " * 75  # one token per word with the tiny vocab: 100 > 75 + BOS + EOS
    emb, truncated = pick.encode_texts([long, head, "a person"])
    assert truncated.tolist() == [True, False, False]
    assert np.allclose(emb[0], emb[1], atol=1e-5)  # the head of the prompt is what is kept


def test_pickscore_loads_through_cards_with_the_separate_processor(folders, overrides):
    overrides("pickscore-v1", folders["pick_model_only"])
    overrides("clip-vit-h-14-laion2b-processor", folders["pick_processor"])
    model = load_pickscore(device="cpu")  # defaults: both cards
    assert model.name.startswith("pickscore-v1@") and "+clip-vit-h-14-laion2b-processor@" in model.name
    reference = load_pickscore(str(folders["pick"]), device="cpu")
    ims = images(2, seed=4)
    assert np.allclose(model.encode_images(ims), reference.encode_images(ims), atol=1e-6)


def test_pickscore_refuses_a_broken_tokenizer(folders, tmp_path):
    bad = tmp_path / "proc"
    shutil.copytree(folders["pick_processor"], bad)
    vocab = json.loads((bad / "vocab.json").read_text())
    (bad / "vocab.json").write_text(json.dumps(dict(list(vocab.items())[:300])))
    (bad / "tokenizer.json").unlink(missing_ok=True)
    with pytest.raises(StellarError, match="tokens but the model expects"):
        load_pickscore(str(folders["pick_model_only"]), str(bad), device="cpu")


def test_pickscore_scorer_fills_requested_columns_from_one_pass(pick, tmp_path):
    ims = images(4, seed=5)
    items = [_item(im, f"g{k}", f"r{k}", p) for k, (im, p) in enumerate(zip(ims, ["a person", "a person", "a " * 90, "a person, smiling"]))]
    cache = FeatureCache(tmp_path / "f")
    both = PickScoreScorer(pick, ("pick_score", "pick_score_raw"), batch_size=3)
    rows = both.score(items, cache)
    assert both.encoded == {"generated": 4, "text": 3}  # 3 distinct prompts
    for r in rows:
        assert r["pick_score"] == pytest.approx(PICK_SCALE * r["pick_score_raw"], rel=1e-6)
    assert [r["pick_score_prompt_truncated"] for r in rows] == [False, False, True, False]
    raw_only = PickScoreScorer(pick, ("pick_score_raw",))
    rows2 = raw_only.score(items, cache)
    assert "pick_score" not in rows2[0] and [r["pick_score_raw"] for r in rows2] == [r["pick_score_raw"] for r in rows]
    assert raw_only.encoded == {"generated": 0, "text": 0}  # all from the cache, truncation flags too
    assert [r["pick_score_prompt_truncated"] for r in rows2] == [False, False, True, False]


# ------------------------------------------------------------------------------------------ Aesthetic
class OriginalLayout(torch.nn.Module):
    """The layout of the published MLP (a ``layers`` Sequential with dropouts, no activations)."""

    def __init__(self, d):
        super().__init__()
        nn = torch.nn
        self.layers = nn.Sequential(
            nn.Linear(d, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2), nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1)
        )

    def forward(self, x):
        return self.layers(x)


def test_aesthetic_state_dict_of_the_original_layout_loads_unchanged(tmp_path, aesthetic):
    torch.manual_seed(0)
    original = OriginalLayout(16).eval()
    path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(original.state_dict(), path)
    head = load_aesthetic_head(path)
    x = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    with torch.no_grad():
        assert torch.allclose(head(x), original(x), atol=1e-6)
    assert not head.training and head(x).shape == (5, 1)
    # the default architecture is the published one: 768-1024-128-64-16-1
    from stellar.models.standard import aesthetic_head

    assert {f"layers.{k}" for k in aesthetic_head().state_dict()} == set(OriginalLayout(768).state_dict())


def test_aesthetic_known_weights_give_the_hand_computed_score(tmp_path, aesthetic):
    d = 16
    v = torch.linspace(-1, 1, d)
    sd = OriginalLayout(d).state_dict()
    sd = {k: torch.zeros_like(t) for k, t in sd.items()}
    sd["layers.0.weight"][0] = v  # h0 = v·x
    sd["layers.2.weight"][0, 0] = 2.0  # h1 = 2 h0
    sd["layers.4.weight"][0, 0] = 3.0  # h2 = 3 h1
    sd["layers.6.weight"][0, 0] = 0.5  # h3 = 0.5 h2
    sd["layers.7.weight"][0, 0] = 1.0
    sd["layers.7.bias"][0] = 5.0  # score = 5 + 3 (v·x)
    path = tmp_path / "known.pth"
    torch.save(sd, path)
    predictor = load_aesthetic(str(path), aesthetic.clip, device="cpu")
    ims = images(3, seed=6)
    x = aesthetic.clip.encode_images(ims)  # L2-normalised CLIP embeddings
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    expected = 5.0 + 3.0 * (x.astype(np.float64) @ v.numpy().astype(np.float64))
    assert np.allclose(predictor.score_images(ims), expected, atol=1e-5)
    assert np.allclose(predictor.score_images(ims), predictor.score_images(ims))  # dropout is off


def test_aesthetic_errors_name_the_file_and_the_fix(tmp_path, folders, aesthetic):
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(1, 16)}, bad)
    with pytest.raises(StellarError, match="bad.pth.*not an improved-aesthetic-predictor"):
        load_aesthetic_head(bad)
    wide = tiny_aesthetic_weights(tmp_path / "wide.pth", input_dim=768)
    with pytest.raises(StellarError, match="expects 768-d CLIP embeddings"):
        load_aesthetic(str(wide), aesthetic.clip)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(StellarError, match="cannot read aesthetic weights"):
        load_aesthetic_head(garbage)


def test_aesthetic_scorer_caches_embeddings(aesthetic, tmp_path):
    ims = images(3, seed=7)
    items = [_item(im, f"g{k}", "r", "a person") for k, im in enumerate(ims)]
    scorer = AestheticScorer(aesthetic, batch_size=2)
    cache = FeatureCache(tmp_path / "f")
    rows = scorer.score(items, cache)
    assert np.allclose([r["aesthetic"] for r in rows], aesthetic.score_images(ims), atol=1e-6)
    assert scorer.score(items, cache) == rows and scorer.encoded == {"generated": 3}


# ---------------------------------------------------------------------------------------------- HPSv2
def test_hps_score_is_the_cosine_of_open_clip_features(hps, folders):
    import open_clip

    ims, texts = images(3, seed=8), ["a person riding a horse", "a person", "a person in a red coat"]
    img, (txt, truncated) = hps.encode_images(ims), hps.encode_texts(texts)
    assert img.shape == (3, 16) and np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5) and not truncated.any()
    values = hps.scores(txt, img)
    # independent: open_clip's forward (normalised features) and diag(image @ text.T), as hpsv2.score
    cfg = json.loads((folders["hps"] / "open_clip_config.json").read_text())["model_cfg"]
    model = open_clip.CLIP(**cfg, output_dict=True).eval()
    model.load_state_dict(torch.load(folders["hps"] / "HPS_v2_compressed.pt", weights_only=True)["state_dict"])
    tok = open_clip.get_tokenizer("ViT-H-14")
    with torch.no_grad():
        x = torch.stack([hps.preprocess(Image.fromarray(im)) for im in ims])
        out = model(x, tok(texts))
        expected = torch.diagonal(out["image_features"] @ out["text_features"].T).numpy()
    assert np.allclose(values, expected, atol=1e-5)
    assert np.allclose(np.concatenate([hps.encode_images([im]) for im in ims]), img, atol=1e-5)


def test_hps_versions_load_their_own_checkpoint(hps, folders, overrides):
    pytest.importorskip("open_clip")
    v21 = load_hps("v2.1", str(folders["hps"]), device="cpu")
    assert v21.protocol != hps.protocol and "v2.1" in v21.protocol
    ims = images(1, seed=9)
    assert not np.allclose(v21.encode_images(ims), hps.encode_images(ims), atol=1e-3)
    overrides("hpsv2", folders["hps"])  # the card path: files resolved through the registry
    through_card = load_hps("v2.1", device="cpu")
    assert through_card.name.startswith("hpsv2@") and np.allclose(through_card.encode_images(ims), v21.encode_images(ims), atol=1e-6)
    with pytest.raises(StellarError, match="unknown HPS version"):
        load_hps("v3")


def test_hps_preprocessing_letterboxes_like_hpsv2(hps):
    wide = np.full((16, 64, 3), 255, np.uint8)  # resized to 8x32, padded with black above and below
    x = hps.preprocess(Image.fromarray(wide))
    mean, std = torch.tensor([0.48145466, 0.4578275, 0.40821073]), torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x[:, 0, 0], -mean / std, atol=1e-4)  # black padding
    assert torch.allclose(x[:, 16, 16], (1 - mean) / std, atol=1e-2)  # the white image, centred
    assert "resize-longest-32" in hps.protocol


def test_hps_truncates_long_prompts_explicitly(hps):
    long, head = "person " * 100, "person " * 75  # one BPE token per word
    emb, truncated = hps.encode_texts([long, head, "a person"])
    assert truncated.tolist() == [True, False, False] and hps.last_truncated == 1
    assert np.isfinite(emb).all() and np.allclose(emb[0], emb[1], atol=1e-5)


def test_hps_checkpoint_errors(tmp_path, folders):
    pytest.importorskip("open_clip")
    with pytest.raises(StellarError, match="not found"):
        load_hps("v2.0", str(tmp_path))
    other = tmp_path / "hps"
    shutil.copytree(folders["hps"], other)
    cfg = json.loads((other / "open_clip_config.json").read_text())
    cfg["model_cfg"]["vision_cfg"]["layers"] = 3
    (other / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(StellarError, match="does not fit"):
        load_hps("v2.0", str(other))


def test_hps_scorer_flags_truncation_and_caches(hps, tmp_path):
    ims = images(3, seed=10)
    items = [_item(im, f"g{k}", "r", p) for k, (im, p) in enumerate(zip(ims, ["a person", "person " * 90, "a person"]))]
    scorer = Hpsv2Scorer(hps, batch_size=2)
    cache = FeatureCache(tmp_path / "f")
    rows = scorer.score(items, cache)
    assert [r["hpsv2_prompt_truncated"] for r in rows] == [False, True, False]
    assert scorer.encoded == {"generated": 3, "text": 2}
    assert scorer.score(items, cache) == rows and scorer.encoded == {"generated": 3, "text": 2}


@pytest.mark.parametrize("loader, card", [(load_dino, "dino-vits16"), (load_pickscore, "pickscore-v1"), (load_aesthetic, "laion-aesthetic-v2"), (load_hps, "hpsv2")])
def test_default_cards_offline_say_how_to_fetch(loader, card):
    if loader is load_hps:
        pytest.importorskip("open_clip")
    with pytest.raises(StellarError, match=f"stellar models fetch {card}"):
        loader()


# ------------------------------------------------------------------------------------- factories + engine
def test_factories_build_one_scorer_per_model_from_options(folders):
    pytest.importorskip("open_clip")
    options = {
        "dino": str(folders["dino"]),
        "pickscore": str(folders["pick"]),
        "aesthetic": str(folders["aesthetic"]),
        "aesthetic_clip": str(folders["clip"]),
        "hpsv2": str(folders["hps"]),
        "hpsv2_version": "v2.1",
    }
    scorers = build_scorers(["dino", "pick_score", "pick_score_raw", "aesthetic", "hpsv2"], options, device="cpu", batch_size=4)
    by_name = {s.name: s for s in scorers}
    assert sorted(by_name) == ["aesthetic", "dino", "hpsv2", "pick_score"]
    assert by_name["pick_score"].metrics == ("pick_score", "pick_score_raw")
    assert "v2.1" in by_name["hpsv2"].protocol and by_name["dino"].encoder.device == "cpu"
    only_raw = build_scorers(["pick_score_raw"], options, device="cpu")
    assert only_raw[0].metrics == ("pick_score_raw",)


def test_engine_builds_the_scorers_from_scorer_options(synthetic, tmp_path, folders):
    ds = StellarDataset(synthetic)
    gen = _write_copies(ds, tmp_path / "gen" / "copy")
    options = {"dino": str(folders["dino"]), "pickscore": str(folders["pick"])}
    summary = evaluate(
        ds, gen, tmp_path / "run", EvalConfig(metrics=("dino", "pick_score_raw"), batch_size=8), scorer_options=options, cache=FeatureCache(tmp_path / "f"), progress=False
    )
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    assert np.allclose(df["dino"], 1.0, atol=1e-4) and np.isfinite(df["pick_score_raw"]).all() and "pick_score" not in df
    assert summary["means"]["pick_score_raw"] == pytest.approx(df["pick_score_raw"].mean(), rel=1e-6)
    scorers = json.loads((tmp_path / "run" / "run.json").read_text())["models"]["scorers"]
    assert scorers["dino"].startswith("dino|local:") and scorers["pick_score"].startswith("pickscore|local:")


def _write_copies(ds, folder):
    folder.mkdir(parents=True)
    for job in ds.jobs("test"):
        Image.open(job.photo.path).convert("RGB").save(folder / f"{job.name}.png")
    return folder


def test_engine_end_to_end_and_second_run_reuses_every_feature(synthetic, tmp_path, dino, pick, aesthetic, hps):
    ds = StellarDataset(synthetic)
    gen = _write_copies(ds, tmp_path / "gen" / "copy")
    metrics = ("dino", "pick_score", "pick_score_raw", "aesthetic", "hpsv2")
    cache = FeatureCache(tmp_path / "features")

    def scorers():
        return [DinoScorer(dino, 4), PickScoreScorer(pick, ("pick_score", "pick_score_raw"), 4), AestheticScorer(aesthetic, 4), Hpsv2Scorer(hps, 4)]

    first = scorers()
    summary = evaluate(ds, gen, tmp_path / "run1", EvalConfig(metrics=metrics, batch_size=4), cache=cache, scorers=first, progress=False)
    df = pd.read_parquet(tmp_path / "run1" / "per_image.parquet")
    n_jobs = len(list(ds.jobs("test")))
    assert len(df) == n_jobs and (df["status"] == "ok").all()
    for m in metrics:
        assert m in df and np.isfinite(df[m]).all()
        assert summary["means"][m] == pytest.approx(df[m].mean(), rel=1e-6)
    assert np.allclose(df["dino"], 1.0, atol=1e-4)  # every generated image is a copy of its input photo
    assert np.allclose(df["pick_score"], PICK_SCALE * df["pick_score_raw"], rtol=1e-6)
    assert "pick_score_prompt_truncated" in df and "hpsv2_prompt_truncated" in df
    n_photos = len({job.photo.path for job in ds.jobs("test")})
    n_prompts = len({job.prompt.fill() for job in ds.jobs("test")})
    n_unique = df["image_sha256"].nunique()  # copies of one photo are identical files: encoded once
    assert n_photos < n_jobs and first[0].encoded == {"generated": n_unique, "reference": n_photos}
    assert first[1].encoded == {"generated": n_unique, "text": n_prompts}
    protocols = json.loads((tmp_path / "run1" / "run.json").read_text())["models"]["scorers"]
    assert protocols == {"dino": dino.protocol, "pick_score": pick.protocol, "aesthetic": aesthetic.protocol, "hpsv2": hps.protocol}

    second = scorers()
    evaluate(ds, gen, tmp_path / "run2", EvalConfig(metrics=metrics, batch_size=3), cache=cache, scorers=second, progress=False)
    assert [dict(s.encoded) for s in second] == [{"generated": 0, "reference": 0}, {"generated": 0, "text": 0}, {"generated": 0}, {"generated": 0, "text": 0}]
    df2 = pd.read_parquet(tmp_path / "run2" / "per_image.parquet").set_index("name").loc[df["name"]]
    for m in metrics:
        assert np.allclose(df2[m].to_numpy(), df[m].to_numpy(), atol=1e-6)


def _item(image, image_key, reference_key, prompt, loader=None):
    # a stand-in job: the standard scorers only read the item's image, keys and prompt
    class _Job:
        name = image_key
        kind = "T"

        class photo:  # noqa: N801
            path = "unused"

    return ScoringItem(_Job(), image, image_key, reference_key, prompt, None, _loader=loader or (lambda: image))


# ------------------------------------------------------------------------ slow: real weights when cached
def _real_photos():
    skimage = pytest.importorskip("skimage")
    astronaut = skimage.data.astronaut()
    camera = np.stack([skimage.data.camera()] * 3, axis=-1)
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return astronaut, camera, noise


def _need(*cards):
    for card in cards:
        if not registry.is_cached(card):
            pytest.skip(f"{card} not cached (stellar models fetch {card}; run with STELLAR_TEST_USE_HOME=1)")


@pytest.mark.slow
def test_real_dino_invariances():
    _need("dino-vits16")
    astronaut, camera, _ = _real_photos()
    enc = load_dino()
    e = enc.encode_images([astronaut, astronaut[:, ::-1].copy(), camera, astronaut])
    assert e.shape == (4, 384)  # ViT-S/16 CLS
    assert float(e[0] @ e[3]) == pytest.approx(1.0, abs=1e-4)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])  # a mirrored copy is closer than another photo


@pytest.mark.slow
def test_real_pickscore_invariances():
    _need("pickscore-v1", "clip-vit-h-14-laion2b-processor")
    astronaut, camera, _ = _real_photos()
    model = load_pickscore()
    assert 99.0 <= model.logit_scale <= 100.01  # CLIP's clamp; PickScore_v1 trains at the cap
    img = model.encode_images([astronaut, camera])
    txt, _ = model.encode_texts(["a photo of a female astronaut in a space suit", "a black and white photo of a cameraman"])
    canonical, raw = model.scores(np.stack([txt[0], txt[0], txt[1], txt[1]]), np.stack([img[0], img[1], img[1], img[0]]))
    assert canonical[0] > canonical[1] and canonical[2] > canonical[3]  # the matching caption wins
    assert 15 < canonical[0] < 30 and np.allclose(canonical, model.logit_scale * raw)


@pytest.mark.slow
def test_real_aesthetic_invariances():
    _need("laion-aesthetic-v2", "clip-vit-l-14-openai")
    astronaut, _, noise = _real_photos()
    predictor = load_aesthetic()
    photo, static = predictor.score_images([astronaut, noise])
    assert 1 < static < photo < 10  # a portrait photo beats RGB noise on the ~1-10 scale


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v2.0", "v2.1"])
def test_real_hpsv2_invariances(version):
    _need("hpsv2")
    pytest.importorskip("open_clip")
    astronaut, camera, _ = _real_photos()
    model = load_hps(version)
    img = model.encode_images([astronaut, camera])
    txt, _ = model.encode_texts(["a photo of a female astronaut in a space suit", "a black and white photo of a cameraman"])
    s = model.scores(np.stack([txt[0], txt[0], txt[1], txt[1]]), np.stack([img[0], img[1], img[1], img[0]]))
    assert s[0] > s[1] and s[2] > s[3]
    assert 0.1 < s[0] < 0.45  # per-image HPS is a cosine; the HPSv2 benchmark's 100x means are ~20-35
