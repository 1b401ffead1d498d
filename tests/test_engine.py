"""The evaluation engine with injected models: a deterministic fake face analyzer and a tiny CLIP.

The fake analyzer is a stand-in with known behaviour (a "face" is a flat-coloured centre region, its
embedding a normalised thumbnail), so the engine's bookkeeping — planning, caching, resume, sharding,
exclusion, APS wiring — is tested exactly; real face models are tested in their own files.
"""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.engine.cache import FeatureCache
from stellar.errors import StellarError
from stellar.models.faces.base import Face


class FakeFaces:
    protocol = "fake-faces-v1"
    dim = 16

    def __init__(self):
        self.calls = 0

    def analyze(self, images):
        out = []
        for im in images:
            self.calls += 1
            a = np.asarray(im, dtype=np.float64)
            h, w = a.shape[:2]
            c = a[h // 2 - h // 20 : h // 2 + h // 20, w // 2 - w // 20 : w // 2 + w // 20]
            if c.std(axis=(0, 1)).mean() > 30:  # noise: no face (a flat-coloured head has ~0 spread)
                out.append([])
                continue
            thumb = np.asarray(Image.fromarray(a.astype(np.uint8)).convert("L").resize((4, 4)), dtype=np.float64).ravel()
            thumb -= thumb.mean()
            emb = (thumb / (np.linalg.norm(thumb) + 1e-9)).astype(np.float32)
            box = np.array([w * 0.3, h * 0.3, w * 0.7, h * 0.7], np.float32)
            out.append([Face(box=box, score=0.99, landmarks5=None, embedding=emb, area=float(0.16 * w * h))])
        return out


def write_set(ds, folder, method, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for job in ds.jobs("test"):
        if method == "copy":
            im = Image.open(job.photo.path).convert("RGB")
        else:
            im = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
        im.save(folder / f"{job.name}.png")
    return folder


@pytest.fixture
def setup(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    ds = StellarDataset(synthetic)
    return ds, write_set(ds, tmp_path / "gen" / "copy", "copy"), write_set(ds, tmp_path / "gen" / "noise", "noise")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    pytest.importorskip("transformers")
    from stellar.models.clip import ClipEncoder
    from stellar.testing import tiny_clip_folder

    return ClipEncoder.from_pretrained(str(tiny_clip_folder(tmp_path_factory.mktemp("clip"))), device="cpu")


def run(ds, gen, out, clip=None, faces=None, **kw):
    metrics = kw.pop("metrics", ("ips", "sis", "aps") + (("clip_t", "clip_i") if clip else ()))
    cfg = EvalConfig(metrics=metrics, batch_size=kw.pop("batch_size", 5), **kw)
    return evaluate(ds, gen, out, cfg, faces=faces or FakeFaces(), clip=clip, clip_unavailable=None if clip else "no CLIP given", progress=False)


def test_copy_without_clip_scores_perfect_ips_and_rule_not_applied(setup, tmp_path):
    ds, copy, _ = setup
    summary = run(ds, copy, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    assert len(df) == 36 and list(df["name"][:2]) == ["000-0-00", "000-0-01"]
    assert (df["status"] == "ok").all()
    assert np.allclose(df["ips"], 1.0, atol=1e-5)
    assert (df["sis"] <= df["ips"] + 1e-9).all() and (df["sis"] < 0.999).any()
    assert summary["exclusion"]["applied"] is False
    assert json.loads((tmp_path / "run" / "run.json").read_text())["exclusion_rule"].startswith("not applied")
    # a copy's generated face is its input face: APS = the probes' agreement on their own inputs
    from stellar.data.layout import APS_ATTRIBUTES
    from stellar.metrics.identity import attribute_preservation

    ref = np.stack([np.asarray(e) for e in df["face_embedding"]]) if "face_embedding" in df else None
    assert ref is None  # embeddings stay in the part files, not in the final table
    table = pd.read_parquet(tmp_path / "run" / "reference.parquet").set_index(["subject", "photo"])
    feats = np.stack([np.asarray(table.loc[(s, p), "face_embedding"]) for s, p in zip(df["subject"], df["photo"])])
    labels = np.array([[ds.subject(s).photos[p].attributes[a] for a in APS_ATTRIBUTES] for s, p in zip(df["subject"], df["photo"])])
    expected = attribute_preservation(feats, labels, feats, APS_ATTRIBUTES, photo_ids=list(zip(df["subject"], df["photo"])))
    assert summary["aps"]["score"] == pytest.approx(expected.score)
    assert np.allclose(df["aps_image"], expected.per_image)


def test_copy_is_excluded_by_the_rule(setup, tmp_path, clip):
    ds, copy, _ = setup
    summary = run(ds, copy, tmp_path / "run", clip=clip)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    # a copy scores CLIP_T == CLIP_N exactly, so it never passes CLIP_N + 2σ
    assert np.allclose(df["clip_t"], df["clip_n"], atol=1e-6)
    assert not df["followed_prompt"].any() and summary["exclusion"]["excluded"] == 36
    assert (df["ips"] == 0).all() and (df["sis"] == 0).all()
    assert np.allclose(df["ips_raw"], 1.0, atol=1e-5)  # the raw value is kept for diagnosis
    # DESIGN §6.9: excluded images count as WRONG APS predictions (the official chained pandas
    # assignment made this flip a no-op, and flipped excluded no-face images back to correct)
    assert summary["aps"]["score"] == pytest.approx(0.0) and (df["aps_image"] == 0).all()
    assert np.allclose(df["clip_i"], 1.0, atol=1e-5)


def test_noise_has_no_face_and_zero_ips(setup, tmp_path):
    ds, _, noise = setup
    summary = run(ds, noise, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    assert (df["status"] == "no_face_generated").all() and (df["ips"] == 0).all()
    assert summary["status_counts"] == {"no_face_generated": 36}
    assert summary["aps"]["score"] == pytest.approx(0.0)  # no face = the wrong class for every attribute
    assert (df["aps_image"] == 0).all()


def test_reference_faces_computed_once_and_reused_across_runs(setup, tmp_path):
    ds, copy, noise = setup
    faces = FakeFaces()
    s1 = run(ds, noise, tmp_path / "r1", faces=faces)
    assert s1["model_passes"]["face_passes_reference"] == 6  # 3 subjects x 2 photos, once
    assert s1["model_passes"]["face_passes_generated"] == 36  # every generated image once
    assert faces.calls == 42
    s2 = run(ds, copy, tmp_path / "r2", faces=faces)
    assert s2["model_passes"]["face_passes_reference"] == 0  # from the feature cache
    no_reuse = run(ds, noise, tmp_path / "r3", faces=FakeFaces(), reuse=False)
    assert no_reuse["model_passes"]["face_passes_per_generated_image"] > 4 * s1["model_passes"]["face_passes_per_generated_image"]


class Crash(RuntimeError):
    pass


def test_interrupted_run_resumes_to_identical_results(setup, tmp_path, clip):
    ds, copy, _ = setup
    run(ds, copy, tmp_path / "full", clip=clip)

    def crash(b):
        if b == 2:
            raise Crash

    cfg = EvalConfig(batch_size=5)
    with pytest.raises(Crash):
        evaluate(ds, copy, tmp_path / "resumed", cfg, faces=FakeFaces(), clip=clip, progress=False, on_batch=crash)
    assert not (tmp_path / "resumed" / "per_image.parquet").exists()
    faces = FakeFaces()
    run(ds, copy, tmp_path / "resumed", clip=clip, faces=faces, batch_size=5)
    a = pd.read_parquet(tmp_path / "full" / "per_image.parquet")
    b = pd.read_parquet(tmp_path / "resumed" / "per_image.parquet")
    pd.testing.assert_frame_equal(a.drop(columns=["image"]), b.drop(columns=["image"]))


def test_shards_merge_to_the_single_process_result(setup, tmp_path, clip):
    ds, copy, _ = setup
    run(ds, copy, tmp_path / "single", clip=clip)
    assert run(ds, copy, tmp_path / "sharded", clip=clip, shard=(0, 2)) is None  # waits for shard 1
    summary = run(ds, copy, tmp_path / "sharded", clip=clip, shard=(1, 2))
    assert summary is not None
    a = pd.read_parquet(tmp_path / "single" / "per_image.parquet")
    b = pd.read_parquet(tmp_path / "sharded" / "per_image.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_undecodable_image_is_a_recorded_failure(setup, tmp_path):
    ds, copy, _ = setup
    (copy / "001-1-02.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    summary = run(ds, copy, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    assert df.loc["001-1-02", "status"] == "decode_error" and "001-1-02" not in df.loc["001-1-02", "error"] or df.loc["001-1-02", "error"]
    # DESIGN §6.10: an undecodable image scores the worst value (it used to leave the denominator)
    assert df.loc["001-1-02", "ips"] == 0.0 and summary["failures"] == 1 and summary["counts"]["undecodable"] == 1
    assert (df.drop(index="001-1-02")["status"] == "ok").all()


def test_rerun_with_other_config_is_refused(setup, tmp_path):
    ds, copy, _ = setup
    run(ds, copy, tmp_path / "run")
    with pytest.raises(StellarError, match="another configuration"):
        run(ds, copy, tmp_path / "run", metrics=("ips",))


def test_feature_cache_round_trip(tmp_path):
    cache = FeatureCache(tmp_path)
    arrays = {"embeddings": np.eye(3, dtype=np.float32), "scores": np.array([0.5], np.float32)}
    cache.put("p", "k", arrays)
    got = cache.get("p", "k")
    assert np.array_equal(got["embeddings"], arrays["embeddings"]) and cache.get("p", "other") is None
    assert cache.get("q", "k") is None  # other protocol, other namespace


def test_report_leaderboard_marks_best_and_renders_every_format(setup, tmp_path, capsys):
    from stellar.cli import main
    from stellar.report import leaderboard, load_run, render

    ds, copy, noise = setup
    run(ds, copy, tmp_path / "copy")
    run(ds, noise, tmp_path / "noise")
    runs = [load_run(tmp_path / "copy"), load_run(tmp_path / "noise")]
    (table,) = leaderboard(runs)
    assert [name for name, _ in table.rows] == ["copy", "noise"]
    assert table.best()["ips"] == pytest.approx(1.0)
    md = render([table], "md")
    assert "IPS ↑" in md and "**1.0000**" in md and "exclusion rule NOT applied" in md
    assert "| noise | 0.0000 |" in md and "\\textbf{1.0000}" in render([table], "latex")
    assert "<b>1.0000</b>" in render([table], "html")
    csv = render([table], "csv").splitlines()
    assert csv[0].startswith("table,method,IPS") and "*" in csv[1]
    split = leaderboard(runs, by="split")
    assert [t.title for t in split] == ["Stellar-T prompts", "Stellar-H prompts"]
    assert split[0].rows[0][1]["images"] == 24 and split[1].rows[0][1]["images"] == 12
    cats = leaderboard(runs, by="category")
    assert {t.title for t in cats} >= {"Category: animal", "Category: location"}
    assert main(["report", str(tmp_path / "copy"), f"{tmp_path / 'noise'}=random", "--format", "md"]) == 0
    assert "| random |" in capsys.readouterr().out


def test_metrics_list_cli(capsys):
    from stellar.cli import main

    assert main(["metrics", "list"]) == 0
    out = capsys.readouterr().out
    assert "ips" in out and "higher" in out and "dataset" in out


class BrightnessScorer:
    """A stand-in scorer with a known answer: GOA := mean brightness / 255 on T prompts, NaN on H."""

    name = "fake-context"
    protocol = "fake-context-v1"
    metrics = ("goa",)

    def __init__(self):
        self.seen = []

    def score(self, items, cache):
        out = []
        for it in items:
            self.seen.append(it.job.name)
            assert it.image.ndim == 3 and len(it.image_key) == 64 and "a person" in it.prompt and "{}" not in it.prompt
            value = float(it.image.mean() / 255) if it.job.kind == "T" else float("nan")
            out.append({"goa": value, "goa_queries": len(it.job.prompt.detectables)})
        return out


def test_pluggable_scorer_fills_columns_and_summary(setup, tmp_path):
    ds, copy, _ = setup
    scorer = BrightnessScorer()
    summary = evaluate(ds, copy, tmp_path / "run", EvalConfig(metrics=("ips", "goa"), batch_size=4), faces=FakeFaces(), scorers=[scorer], progress=False)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    assert sorted(scorer.seen) == sorted(df["name"])
    expected = [np.asarray(Image.open(p).convert("RGB")).mean() / 255 if k == "T" else np.nan for p, k in zip(df["image"], df["kind"])]
    assert np.allclose(df["goa"], expected, equal_nan=True)
    assert summary["means"]["goa"] == pytest.approx(np.nanmean(expected))
    assert summary["undefined"] == {"goa": 12} and summary["by_kind"]["H"]["goa"] is None
    assert json.loads((tmp_path / "run" / "run.json").read_text())["models"]["scorers"] == {"fake-context": "fake-context-v1"}


def test_metric_without_scorer_is_refused(setup, tmp_path):
    ds, copy, _ = setup
    with pytest.raises(StellarError, match="no scorer computes"):
        evaluate(ds, copy, tmp_path / "run", EvalConfig(metrics=("goa",)), scorers=[], progress=False)


def test_reference_photo_without_face_does_not_crash_aps(setup, tmp_path):
    """DESIGN §6.9: the official APS crashed when an input photo had no face."""
    ds, copy, _ = setup
    photo = ds.subject("001").photos[0].path
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(photo, quality=95)
    ds = StellarDataset(ds.root)
    summary = run(ds, copy, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    rows = df[(df["subject"] == "001") & (df["photo"] == 0)]
    assert (rows["status"] == "no_face_reference").all() and (rows["ips"] == 0).all()
    assert summary["aps"]["score"] is not None and np.isfinite(summary["aps"]["score"])


def test_metric_groups_and_scorer_options_of_the_cli():
    import argparse

    from stellar.commands.evaluate import PAPER_METRICS, expand_metrics, scorer_options

    assert expand_metrics("paper") == PAPER_METRICS and {"ips", "goa", "rfs", "dino"} <= set(PAPER_METRICS)
    assert expand_metrics("ips,sis,ips") == ("ips", "sis")
    with pytest.raises(StellarError, match="Did you mean ips"):
        expand_metrics("ipss")
    args = argparse.Namespace(detector="owlv2-large-patch14-ensemble", relation_scorer=None, goa_empty="zero", scorer_option=["hpsv2_version=v2.1"], clip="none")
    assert scorer_options(args) == {"detector": "owlv2-large-patch14-ensemble", "goa_empty": "zero", "hpsv2_version": "v2.1"}


def test_partial_set_runs_on_what_matched_unless_strict(setup, tmp_path):
    ds, copy, _ = setup
    (copy / "002-1-05.png").unlink()
    (copy / "stray.png").write_bytes((copy / "000-0-00.png").read_bytes())
    with pytest.raises(StellarError, match="does not match the jobs"):
        run(ds, copy, tmp_path / "strict", strict=True)
    summary = run(ds, copy, tmp_path / "lenient")
    # DESIGN §6.10: the job without an image has a row and scores the worst value
    assert summary["n_jobs"] == 36 and summary["counts"]["missing"] == 1 and summary["coverage"]["evaluated"] == 35
    df = pd.read_parquet(tmp_path / "lenient" / "per_image.parquet").set_index("name")
    assert df.loc["002-1-05", "status"] == "missing" and df.loc["002-1-05", "ips"] == 0.0 and pd.isna(df.loc["002-1-05", "image"])
    summary = run(ds, copy, tmp_path / "lenient", failure_rule="partial")  # same rows, other finalisation
    assert summary["n_jobs"] == 35 and summary["failure_rule"] == "partial"
    problems = json.loads((tmp_path / "lenient" / "run.json").read_text())["match_problems"]
    assert any("stray.png" in p["path"] for p in problems) and any("002-1-05" in p["message"] for p in problems)


def test_rerun_reevaluates_only_images_replaced_since(setup, tmp_path):
    ds, copy, noise = setup
    faces = FakeFaces()
    run(ds, copy, tmp_path / "run", faces=faces)
    before = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    (copy / "001-0-03.png").write_bytes((noise / "001-0-03.png").read_bytes())  # the method regenerated one image
    calls = faces.calls
    summary = run(ds, copy, tmp_path / "run", faces=faces)
    after = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    assert faces.calls == calls + 1 and summary["model_passes"]["face_passes_generated"] == 1
    assert after.loc["001-0-03", "status"] == "no_face_generated" and before.loc["001-0-03", "status"] == "ok"
    pd.testing.assert_frame_equal(after.drop(index="001-0-03").drop(columns=["aps_image"]), before.drop(index="001-0-03").drop(columns=["aps_image"]))
