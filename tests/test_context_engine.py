"""GOA / RFS through ``stellar.engine.evaluate``.

1. A fake detector and a fake relation scorer with known outputs on the ``synthetic`` dataset: every
   GOA / RFS value is checked against the hand-computed formula (role words, a label that never wins
   a box, images with different numbers of queries in one batch, annotated triplets taking
   precedence, empty GOA queries under both policies, NaN on Stellar-H rows, caching).
2. Tiny random OWL-ViT + tiny CLIP end to end on the real-photo ``demo_dataset``.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.engine.cache import FeatureCache
from stellar.engine.context_scorer import ContextScorer, build_context_scorer
from stellar.errors import StellarError
from stellar.metrics.context import union_box
from stellar.models.detectors import Detections

SCORES = {"horse": 0.8, "jungle": 0.3, "umbrella": 0.6, "car": 0.9, "hospital": 0.7, "pizza": 0.4, "beach": 0.2, "moon": 0.65, "person": 0.95}
BOXES = {q: [10.0 * i, 5.0, 10.0 * i + 30, 45.0] for i, q in enumerate(sorted(SCORES))}
P_PRED = {"riding": 0.9, "in": 0.5, "holding": 0.7, "next to": 0.4, "eating": 0.6, "at": 0.8, "on": 0.3}


class FakeDetector:
    """One box per query scoring SCORES[q] for it and 0.01 for the others, plus a weak box; the
    jungle box scores horse 0.5 (> its jungle 0.3), so "jungle" never wins a box."""

    protocol = "fake-detector-v1"

    def __init__(self):
        self.calls = 0
        self.batches = []

    def detect(self, images, queries):
        self.calls += sum(1 for q in queries if q)
        self.batches.append([tuple(q) for q in queries])
        out = []
        for im, qs in zip(images, queries):
            qs = list(qs)
            rows = []
            for i, q in enumerate(qs):
                row = np.full(len(qs), 0.01)
                row[i] = SCORES[q]
                if q == "jungle" and "horse" in qs:
                    row[qs.index("horse")] = 0.5
                rows.append(row)
            rows.append(np.full(len(qs), 0.02))
            boxes = [BOXES[q] for q in qs] + [[0, 0, 1, 1]]
            out.append(Detections(np.array(boxes, np.float32), np.array(rows, np.float32), tuple(qs)))
        return out


class FakeRelation:
    protocol = "fake-relation-v1"

    def __init__(self):
        self.queries = []

    def score(self, queries):
        self.queries.extend(queries)
        return [P_PRED[q.predicate] for q in queries]


PERSON = SCORES["person"]
# template -> (GOA, triplets); GOA by hand: the jungle never wins a box, the doctor is the subject
EXPECTED = {
    "{} riding a horse in the jungle": ((0.8 + 0.0) / 2, [("riding", "horse"), ("in", "jungle")]),
    "{} holding an umbrella next to a car": ((0.6 + 0.9) / 2, [("holding", "umbrella"), ("next to", "car")]),
    "{} as a doctor in a hospital": (0.7, [("in", "hospital")]),
    "{} eating a pizza at the beach": ((0.4 + 0.2) / 2, [("eating", "pizza"), ("at", "beach")]),
}
ANNOTATED = [[["person", "on", "horse"]], [], None, None, [["person", "on", "moon"]]]  # subject 000: annotated triplets


def expected_rfs(pairs):
    vals = [PERSON * (SCORES[o] if o != "jungle" else 0.0) * P_PRED[p] for p, o in pairs]
    vals = [0.0 if o == "jungle" else v for v, (_, o) in zip(vals, pairs)]
    return float(np.mean(vals)) if vals else math.nan


@pytest.fixture
def setup(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    # subject 000: a fifth prompt whose only detectable is a role word, and annotated triplets
    path = synthetic / "000" / "prompts_t.json"
    data = json.loads(path.read_text())
    data["prompts"].append("{} as an astronaut on the moon")
    data["detectables"].append(["astronaut"])
    data["categories"].append(["profession"])
    data["triplets"] = [t if t is not None else [["person", p, o] for p, o in EXPECTED[data["prompts"][i]][1]] for i, t in enumerate(ANNOTATED)]
    path.write_text(json.dumps(data))
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir()
    rng = np.random.default_rng(0)
    for job in ds.jobs("test"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(gen / f"{job.name}.png")
    return ds, gen


def run(ds, gen, out, scorer, cache=None, batch_size=5):
    cfg = EvalConfig(metrics=scorer.metrics, batch_size=batch_size)
    return evaluate(ds, gen, out, cfg, scorers=[scorer], cache=cache, progress=False)


def test_fake_models_known_answers_through_evaluate(setup, tmp_path):
    ds, gen = setup
    det, rel = FakeDetector(), FakeRelation()
    cache = FeatureCache(tmp_path / "features")
    summary = run(ds, gen, tmp_path / "run", ContextScorer(det, rel, metrics=("goa", "rfs")), cache=cache)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    jobs = {j.name: j for j in ds.jobs("test")}
    t_rows = df[df["kind"] == "T"]
    assert len(df) == 38 and len(t_rows) == 26
    for row in t_rows.itertuples():
        prompt = jobs[row.name].prompt
        if prompt.template == "{} as an astronaut on the moon":
            assert math.isnan(row.goa) and json.loads(row.goa_objects) == {}  # no GOA query left
            assert row.rfs == pytest.approx(PERSON * SCORES["moon"] * P_PRED["on"])  # annotated triplet
            continue
        goa, pairs = EXPECTED[prompt.template]
        if row.subject == "000":
            pairs = [(p, o) for _, p, o in ANNOTATED[prompt.kind_index]] if ANNOTATED[prompt.kind_index] is not None else pairs
        assert row.goa == pytest.approx(goa), row.name
        objects = json.loads(row.goa_objects)
        assert set(objects) == {d for d in prompt.detectables if d != "doctor"}
        if pairs:
            assert row.rfs == pytest.approx(expected_rfs(pairs)), row.name
            detail = json.loads(row.rfs_triplets)
            assert [tuple(d["triplet"]) for d in detail] == [("person", p, o) for p, o in pairs]
        else:  # annotated as having no triplet
            assert math.isnan(row.rfs) and pd.isna(row.rfs_triplets)
    h_rows = df[df["kind"] == "H"]
    assert h_rows["goa"].isna().all() and h_rows["rfs"].isna().all()
    assert summary["undefined"]["goa"] == len(h_rows) + 2  # + the two astronaut rows (photos 0 and 1)
    assert summary["undefined"]["rfs"] == len(h_rows) + 2  # + subject 000's prompt annotated with no triplet
    assert summary["by_kind"]["T"]["goa"] == pytest.approx(t_rows["goa"].mean())
    # the relation scorer saw the union box of the person and the object, never a missing box
    for q in rel.queries:
        assert q.object != "jungle" and q.box == union_box(BOXES["person"], BOXES[q.object])
    # different numbers of queries in one batch, one detector pass per T image, none for H images
    assert det.calls == 26 and any(len({len(q) for q in b}) > 1 for b in det.batches)
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "fake-detector-v1" in run_json["models"]["scorers"]["context"]

    # caching: a second run over the same images never calls the detector
    det2 = FakeDetector()
    run(ds, gen, tmp_path / "run2", ContextScorer(det2, FakeRelation(), metrics=("goa", "rfs")), cache=cache)
    assert det2.calls == 0
    df2 = pd.read_parquet(tmp_path / "run2" / "per_image.parquet")
    pd.testing.assert_frame_equal(df.drop(columns=["image"]), df2.drop(columns=["image"]))


def test_goa_only_zero_policy_and_independence_from_rfs(setup, tmp_path):
    ds, gen = setup
    det = FakeDetector()
    run(ds, gen, tmp_path / "goa", ContextScorer(det, metrics=("goa",), goa_empty="zero"), cache=FeatureCache(tmp_path / "f1"))
    df = pd.read_parquet(tmp_path / "goa" / "per_image.parquet").set_index("name")
    assert "rfs" not in df and all("person" not in q for b in det.batches for qs in b for q in qs)
    astronaut = [n for n in df.index if n.startswith("000-") and n.endswith("-04")]
    assert len(astronaut) == 2 and (df.loc[astronaut, "goa"] == 0.0).all()  # the official averaging
    assert df[df["kind"] == "H"]["goa"].isna().all()  # H rows stay NaN under either policy
    run(ds, gen, tmp_path / "both", ContextScorer(FakeDetector(), FakeRelation(), metrics=("goa", "rfs"), goa_empty="zero"), cache=FeatureCache(tmp_path / "f2"))
    both = pd.read_parquet(tmp_path / "both" / "per_image.parquet").set_index("name")
    pd.testing.assert_series_equal(df["goa"], both["goa"])  # adding "person" for RFS does not change GOA


def test_factory_options_and_errors(tmp_path):
    det = FakeDetector()
    s = build_context_scorer({"detector": det, "relation_scorer": FakeRelation(), "goa_empty": "zero"}, None, 4, ("goa", "rfs"))
    assert s.metrics == ("goa", "rfs") and s.goa_empty == "zero" and "fake-relation-v1" in s.protocol
    assert build_context_scorer({"detector": det}, None, 4, ("goa",)).relation_scorer is None
    with pytest.raises(StellarError, match="goa-empty"):
        build_context_scorer({"detector": det, "goa_empty": "-1"}, None, 4, ("goa",))
    with pytest.raises(StellarError, match="relation-scorer"):
        build_context_scorer({"detector": det, "relation_scorer": "sgg"}, None, 4, ("rfs",))
    with pytest.raises(StellarError, match="stellar models fetch"):
        build_context_scorer({}, "cpu", 4, ("goa",))  # default OWL-ViT card, offline and not cached


def test_factory_loads_detector_and_clip_relation_scorer_from_folders(tiny_models):
    from stellar.data.prompts import PREDICATES
    from stellar.models.relations import ClipRelationScorer

    owl, clip = tiny_models
    s = build_context_scorer({"detector": str(owl), "clip": str(clip), "predicates": ["Moonwalking  on"]}, "cpu", 4, ("goa", "rfs"))
    assert s.detector.family == "owlvit" and isinstance(s.relation_scorer, ClipRelationScorer)
    assert "moonwalking on" in s.relation_scorer.vocabulary and set(PREDICATES) <= set(s.relation_scorer.vocabulary)
    assert "owlvit" in s.protocol and "clip-relation" in s.protocol and "goa_empty=nan" in s.protocol


# ------------------------------------------------------------------ tiny real models, end to end
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("transformers")
    from stellar.testing import tiny_clip_folder, tiny_owlvit_folder

    root = tmp_path_factory.mktemp("tiny")
    return tiny_owlvit_folder(root / "owlvit"), tiny_clip_folder(root / "clip")


def test_tiny_owlvit_and_clip_end_to_end_on_demo_photos(demo_dataset, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    owl, clip = tiny_models
    ds = StellarDataset(demo_dataset)
    gen = tmp_path / "gen"
    gen.mkdir()
    # the input photos themselves, small and non-square, as the "generated" images of two subjects
    # (the other jobs are missing: a partial generated set evaluates what it has)
    for job in (j for j in ds.jobs("test") if j.subject in ("000", "001")):
        Image.open(job.photo.path).convert("RGB").resize((72, 56)).save(gen / f"{job.name}.png")
    from stellar.models.clip import load_clip
    from stellar.models.relations import ClipRelationScorer

    # the relation scorer contrasts the dataset's own predicates (the built-in list is ~70 more texts
    # per object: slow for a CPU test, nothing more to check)
    predicates = sorted({t[1] for job in ds.jobs("test") for t in (job.prompt.triplets or ())})
    assert len(predicates) >= 8
    relation = ClipRelationScorer(load_clip(str(clip), device="cpu"), predicates)
    options = {"detector": str(owl), "relation_scorer": relation}
    cfg = EvalConfig(metrics=("goa", "rfs"), batch_size=6, failure_rule="partial")  # only the jobs that have an image
    summary = evaluate(ds, gen, tmp_path / "run", cfg, scorer_options=options, progress=False)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    t, h = df[df["kind"] == "T"], df[df["kind"] == "H"]
    assert len(t) and len(h) and h["goa"].isna().all() and h["rfs"].isna().all()
    # every demo T prompt has a non-role object, and annotated triplets
    assert t["goa"].between(0, 1).all() and t["rfs"].between(0, 1).all()
    assert t["goa"].std() > 0  # the image content matters
    for row in t.itertuples():
        objects = json.loads(row.goa_objects)
        assert row.goa == pytest.approx(np.mean(list(objects.values())))
        detail = json.loads(row.rfs_triplets)
        assert row.rfs == pytest.approx(np.mean([d["score"] for d in detail]))
        for d in detail:
            assert d["score"] == pytest.approx(d["p_person"] * d["p_object"] * (d["p_predicate"] or 0.0))
            assert d["p_predicate"] is None or 0 < d["p_predicate"] < 1
    assert summary["means"]["goa"] == pytest.approx(t["goa"].mean())
    models = json.loads((tmp_path / "run" / "run.json").read_text())["models"]["scorers"]["context"]
    assert "owlvit" in models and "clip-relation" in models

    # batch size does not change the numbers; a rerun reads every detection from the cache
    again = evaluate(ds, gen, tmp_path / "run-b1", EvalConfig(metrics=("goa", "rfs"), batch_size=1, failure_rule="partial"), scorer_options=options, progress=False)
    df1 = pd.read_parquet(tmp_path / "run-b1" / "per_image.parquet")
    np.testing.assert_allclose(df1["goa"], df["goa"], atol=1e-6)
    np.testing.assert_allclose(df1["rfs"], df["rfs"], atol=1e-6)
    assert again["cache"]["hits"] >= len(t)


@pytest.mark.parametrize("family", ["owlv2", "grounding-dino"])
def test_tiny_owlv2_and_grounding_dino_goa_through_evaluate(synthetic, tmp_path, monkeypatch, family):
    pytest.importorskip("transformers")
    from stellar.testing import tiny_grounding_dino_folder, tiny_owlvit_folder

    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    folder = tiny_owlvit_folder(tmp_path / "m", v2=True) if family == "owlv2" else tiny_grounding_dino_folder(tmp_path / "m")
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir()
    rng = np.random.default_rng(0)
    for job in ds.jobs("test"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(gen / f"{job.name}.png")
    summary = evaluate(ds, gen, tmp_path / "run", EvalConfig(metrics=("goa",), batch_size=5), scorer_options={"detector": str(folder)}, progress=False)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    t = df[df["kind"] == "T"]
    assert df[df["kind"] == "H"]["goa"].isna().all() and summary["undefined"]["goa"] == (df["kind"] == "H").sum()
    assert t["goa"].between(0, 1).all() and t["goa"].notna().all()
    for row in t.itertuples():
        assert row.goa == pytest.approx(np.mean(list(json.loads(row.goa_objects).values())))
    assert family in json.loads((tmp_path / "run" / "run.json").read_text())["models"]["scorers"]["context"]
