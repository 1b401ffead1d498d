"""Issue 10: the engine as a plan of scorers — one test per phase, a toy metric defined in this file run
through ``stellar evaluate`` with no engine change, part flushing with an exact resume, shards by
contiguous subject blocks.
"""

import json

import pandas as pd
import pytest
from test_engine import FakeFaces, run, write_set

from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.engine.cache import FeatureCache, content_hash
from stellar.engine.evaluate import Run, generated_phase, hash_phase, jobs_to_evaluate, match_phase, reference_phase, shard_jobs, text_phase
from stellar.engine.finalize import FinalizeContext, finalize_table
from stellar.engine.plan import build_plan
from stellar.engine.store import ResultsStore
from stellar.metrics.base import METRICS, MetricInfo, register_metric


@pytest.fixture
def setup(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    ds = StellarDataset(synthetic)
    return ds, write_set(ds, tmp_path / "gen" / "copy", "copy"), write_set(ds, tmp_path / "gen" / "noise", "noise")


# ------------------------------------------------------------------ a toy metric, written against the protocol
class ToyBrightness:
    """toy = |mean grey of the generated image - mean grey of the input photo| / 255 (lower is better).

    Uses every phase: the reference phase stores each photo's mean grey, the text phase counts prompts,
    the generated phase compares.
    """

    name = "toy"
    protocol = "toy-brightness-v1"
    metrics = ("toy_brightness",)
    needs_reference = True

    def __init__(self):
        self.photo_means, self.texts, self.reference_calls = {}, [], 0

    def reference(self, photos, cache):
        self.reference_calls += len(photos)
        for p in photos:
            self.photo_means[p.path] = None if p.image is None else float(p.image.mean())
        return [{"toy_photo_mean": self.photo_means[p.path]} for p in photos]

    def text(self, prompts, cache):
        self.texts += list(prompts)

    def score(self, items, cache):
        return [{"toy_brightness": abs(float(it.image.mean()) - self.photo_means[it.job.photo.path]) / 255} for it in items]


TOY = MetricInfo(
    "toy_brightness", "Toy", False, ("generated", "reference"), ("none",), "image", False,
    "Toy metric of the engine tests: brightness difference to the input photo.", failure_value=1.0,
)  # fmt: skip


def build_toy(options, device, batch_size, metrics):  # the SCORERS factory signature
    return ToyBrightness()


@pytest.fixture
def toy_registered(monkeypatch):
    from stellar.engine import scorers as sc

    monkeypatch.setitem(METRICS, TOY.name, TOY)
    monkeypatch.setitem(sc.SCORERS, TOY.name, "test_engine_phases:build_toy")
    yield
    METRICS.pop(TOY.name, None)


def test_toy_metric_runs_through_stellar_evaluate_without_engine_change(setup, tmp_path, toy_registered, capsys):
    from stellar.cli import main

    ds, copy, noise = setup
    mixed = tmp_path / "gen" / "mixed"
    mixed.mkdir()
    for f in copy.iterdir():
        (mixed / f.name).write_bytes(f.read_bytes())
    (mixed / "001-0-02.png").write_bytes((noise / "001-0-02.png").read_bytes())
    (mixed / "002-1-03.png").unlink()  # a missing job scores the toy's failure value
    out = tmp_path / "run"
    args = ["evaluate", "--dataset", str(ds.root), "--generated", str(mixed), "--out", str(out), "--metrics", "toy_brightness", "--clip", "none", "--json"]
    assert main(args[:-1] + ["--plan"]) == 0
    printed = capsys.readouterr().out
    assert "scorer toy -> toy_brightness; phases: reference, text, generated" in printed and not out.exists()
    assert main(args) == 0
    df = pd.read_parquet(out / "per_image.parquet").set_index("name")
    assert df.loc["000-0-00", "toy_brightness"] == pytest.approx(0.0, abs=0.02)  # a copy
    assert df.loc["001-0-02", "toy_brightness"] > df.loc["001-0-01", "toy_brightness"] + 0.01 and df.loc["002-1-03", "toy_brightness"] == 1.0
    ref = pd.read_parquet(out / "reference.parquet")
    assert ref["toy_photo_mean"].notna().all() and len(ref) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["means"]["toy_brightness"] == pytest.approx(df["toy_brightness"].mean())


def test_register_metric_refuses_a_metric_without_failure_value():
    bad = MetricInfo("toy_nofail", "x", True, ("generated",), (), "image", False, "x")
    with pytest.raises(ValueError, match="failure_value"):
        register_metric(bad)


# ------------------------------------------------------------------ one test per phase
def _run(ds, gen, tmp_path, metrics=("ips", "sis"), scorers=(), shard=(0, 1), **kw):
    config = EvalConfig(metrics=metrics, batch_size=4, shard=shard, **kw)
    plan = build_plan(metrics, faces=FakeFaces(), scorers=list(scorers))
    gs = match_phase(ds, gen, config)
    expected = list(gs.expected.values())
    return Run(ds, gs, config, plan, tmp_path / "run", ResultsStore(tmp_path / "run"), FeatureCache(tmp_path / "cache"), shard_jobs(expected, *shard), expected, progress=False)


def test_plan_shares_models_and_lists_phases(toy_registered):
    from stellar.engine.scorers import PhasedScorer

    plan = build_plan(("ips", "sis", "aps", "toy_brightness"), faces=FakeFaces(), scorers=[ToyBrightness()])
    assert [s.name for s in plan.scorers] == ["faces", "toy"] and all(isinstance(s, PhasedScorer) for s in plan.scorers)
    assert plan.scorers[1].needs_reference and [s.name for s in plan.plugins] == ["toy"]
    text = plan.describe()
    assert "one face-analyzer pass per image serves IPS, SIS, APS" in text and "finalisers: exclusion, identity, aps, failure" in text


def test_hash_phase_reads_each_image_once_and_fingerprint_matches(setup, tmp_path):
    ds, copy, _ = setup
    r = _run(ds, copy, tmp_path)
    hash_phase(r)
    from stellar.engine.evaluate import generated_fingerprint

    assert all(r.shas[j.name] == content_hash(copy / f"{j.name}.png") for j in r.jobs)
    assert generated_fingerprint(r) == r.gs.fingerprint()


def test_reference_phase_decodes_each_photo_once_and_records_failures(setup, tmp_path, toy_registered):
    ds, copy, _ = setup
    ds.subject("000").photos[1].path.write_bytes(b"not a jpeg")
    ds = StellarDataset(ds.root)
    toy = ToyBrightness()
    r = _run(ds, copy, tmp_path, metrics=("ips", "toy_brightness"), scorers=[toy])
    rows = reference_phase(r)
    assert toy.reference_calls == 6 and len(rows) == 6
    bad = ds.subject("000").photos[1].path
    assert bad in r.ref_error and r.ref_sha[bad] == content_hash(bad)
    assert [row["n_faces"] is None for row in rows].count(True) == 1 and all("face_embedding" in row for row in rows)


def test_text_phase_sends_each_prompt_once(setup, tmp_path, toy_registered):
    ds, copy, _ = setup
    toy = ToyBrightness()
    r = _run(ds, copy, tmp_path, metrics=("toy_brightness",), scorers=[toy])
    hash_phase(r)
    text_phase(r, r.jobs)
    assert sorted(toy.texts) == sorted({j.prompt.fill() for j in r.jobs}) and len(toy.texts) == len(set(toy.texts))


def test_generated_phase_flushes_parts_by_size_and_skips_done_jobs(setup, tmp_path):
    ds, copy, _ = setup
    r = _run(ds, copy, tmp_path, flush_rows=10)
    hash_phase(r)
    r.store.write_reference(reference_phase(r))
    todo = jobs_to_evaluate(r)
    assert len(todo) == 36
    generated_phase(r, todo)
    parts = sorted((tmp_path / "run" / "parts" / "all").glob("0*.parquet"))
    assert [len(pd.read_parquet(p)) for p in parts] == [12, 12, 12]  # batches of 4, a part once >= 10 rows
    assert jobs_to_evaluate(r) == []


def test_finalize_table_is_a_pure_function_of_the_table(setup, tmp_path):
    ds, copy, _ = setup
    run(ds, copy, tmp_path / "a")
    parts = ResultsStore(tmp_path / "a").read_parts()
    reference = pd.read_parquet(tmp_path / "a" / "reference.parquet")
    before = parts.copy()
    ctx = FinalizeContext({"exclusion_rule": "not applied: test"}, ["ips", "sis", "aps"], "worst", reference)
    final, entries = finalize_table(parts, ctx)
    pd.testing.assert_frame_equal(parts, before)  # input untouched
    again, _ = finalize_table(parts, ctx)
    pd.testing.assert_frame_equal(final, again)
    assert entries["exclusion"]["applied"] is False and {"ips", "sis", "aps_image", "aps_pred_Male"} <= set(final.columns)


def test_shards_are_contiguous_subject_blocks(setup):
    ds, _, _ = setup
    jobs = ds.jobs("test")
    shards = [shard_jobs(jobs, i, 2) for i in range(2)]
    assert sorted(j.name for s in shards for j in s) == sorted(j.name for j in jobs)
    subjects = [{j.subject for j in s} for s in shards]
    assert not (subjects[0] & subjects[1]) and all(subjects)


def test_resume_after_injected_crash_is_identical_with_part_flushing(setup, tmp_path):
    ds, copy, _ = setup
    run(ds, copy, tmp_path / "full", flush_rows=7)
    full = pd.read_parquet(tmp_path / "full" / "per_image.parquet")

    class Crash(Exception):
        pass

    def crash(b):
        if b == 5:
            raise Crash

    cfg = EvalConfig(metrics=("ips", "sis", "aps"), batch_size=3, flush_rows=7)
    with pytest.raises(Crash):
        evaluate(ds, copy, tmp_path / "crashed", cfg, faces=FakeFaces(), clip_unavailable="no CLIP given", progress=False, on_batch=crash)
    kept = len(ResultsStore(tmp_path / "crashed").read_parts())
    assert 0 < kept < 36 and kept % 9 == 0  # parts of 3 batches (9 rows >= 7): the unflushed rows are redone
    assert not (tmp_path / "crashed" / "lock-all.json").exists()  # the lock is released on the crash
    summary = evaluate(ds, copy, tmp_path / "crashed", cfg, faces=FakeFaces(), clip_unavailable="no CLIP given", progress=False)
    assert summary["model_passes"]["generated_images"] == 36 - kept  # only the lost rows are redone
    resumed = pd.read_parquet(tmp_path / "crashed" / "per_image.parquet")
    pd.testing.assert_frame_equal(resumed, full)
