"""Regression tests of issue 9 items 1, 4 and 7: defects that changed GOA / RFS numbers.

Each test is named after its defect and fails on the code before the fix.
"""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stellar.data import StellarDataset
from stellar.data.prompts import extract_triplets, normalize_query, normalize_triplets
from stellar.engine import EvalConfig, evaluate
from stellar.engine.cache import FeatureCache
from stellar.engine.context_scorer import ContextScorer
from stellar.metrics.context import goa_queries
from stellar.models.detectors import Detections

OBJECT_SCORE = {"eiffel tower": 0.7, "person": 0.9, "café": 0.6}
OBJECT_BOX = {"eiffel tower": [40.0, 2.0, 60.0, 40.0], "person": [2.0, 10.0, 20.0, 46.0], "café": [30.0, 5.0, 62.0, 30.0]}


class LowerCasingDetector:
    """Like OWL-ViT / Grounding DINO: the text tokenizer lower-cases, so "Eiffel Tower" and
    "eiffel tower" are the same query and score identically. One box per distinct (lower-cased) object."""

    protocol = "lower-casing-fake-detector-v1"

    def detect(self, images, queries):
        out = []
        for _, qs in zip(images, queries):
            qs = list(qs)
            objects = list(dict.fromkeys(q.lower() for q in qs))
            rows = [[OBJECT_SCORE[o] if q.lower() == o else 0.01 for q in qs] for o in objects]
            boxes = [OBJECT_BOX[o] for o in objects]
            out.append(Detections(np.array(boxes, np.float32), np.array(rows, np.float32), tuple(qs)))
        return out


class ConstantRelation:
    protocol = "constant-relation-v1"

    def score(self, queries):
        return [0.5 for _ in queries]


def _dataset_with(synthetic, tmp_path, template, detectables, triplets=None):
    path = synthetic / "000" / "prompts_t.json"
    data = json.loads(path.read_text())
    data["prompts"] = [template]
    data["detectables"] = [detectables]
    data["categories"] = [["landmark"]]
    if triplets is not None:
        data["triplets"] = [triplets]
    path.write_text(json.dumps(data))
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for job in ds.jobs("test"):
        if job.subject == "000" and job.prompt.kind == "T":
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(gen / f"{job.name}.png")
    return ds, gen


@pytest.mark.parametrize("annotated", [False, True])
def test_rfs_silently_zero_for_capitalised_detectables(synthetic, tmp_path, monkeypatch, annotated):
    """Issue 9.1: "Eiffel Tower" (GOA query) and "eiffel tower" (triplet object) tied in the detector and
    every box went to the capitalised query: the triplet's object had no box, RFS 0 instead of
    p_person · p_object · p_pred."""
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    triplets = [["Person", "next to", "Eiffel  Tower"]] if annotated else None
    ds, gen = _dataset_with(synthetic, tmp_path, "{} standing next to the Eiffel Tower", ["Eiffel Tower"], triplets)
    scorer = ContextScorer(LowerCasingDetector(), ConstantRelation(), metrics=("goa", "rfs"))
    evaluate(ds, gen, tmp_path / "run", EvalConfig(metrics=("goa", "rfs"), batch_size=4), scorers=[scorer], cache=FeatureCache(tmp_path / "f"), progress=False)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    assert len(df) == 2
    for row in df.itertuples():
        assert row.goa == pytest.approx(0.7)
        assert row.rfs == pytest.approx(0.9 * 0.7 * 0.5)  # was 0.0
        assert json.loads(row.goa_objects) == {"Eiffel Tower": pytest.approx(0.7)}  # the user's spelling, for display
        assert [d["triplet"] for d in json.loads(row.rfs_triplets)] == [["person", "next to", "eiffel tower"]]


def test_queries_normalised_once_for_goa_rfs_and_annotated_triplets():
    assert goa_queries(["Eiffel  Tower", "eiffel tower", "DJ", "Pope"]) == ["eiffel tower"]
    assert normalize_triplets([["Person", "Riding", "Horse"]]) == (("person", "riding", "horse"),)
    assert extract_triplets("{} next to the Eiffel Tower", ["Eiffel Tower"]) == [("person", "next to", "eiffel tower")]
    assert normalize_query("Cafe\u0301") == normalize_query("CAFÉ") == "café"


def test_triplet_extractor_drops_non_ascii_letters():
    """Issue 9.7: the tokenizer kept only [a-z0-9]: "café" became "caf" and "jalapeño" two words."""
    assert extract_triplets("{} sitting in a café") == [("person", "sitting in", "café")]
    assert extract_triplets("{} eating a jalapeño pizza in Zürich") == [("person", "eating", "jalapeño pizza"), ("person", "in", "zürich")]
    assert extract_triplets("{} sitting in a Café", ["Café"]) == [("person", "sitting in", "café")]
    # a decomposed accent (e + U+0301) is the same word as the composed one
    assert extract_triplets("{} sitting in a cafe\u0301", ["café"]) == [("person", "sitting in", "café")]
    assert extract_triplets("{} in front of the Kölner Dom", ["Kölner Dom"]) == [("person", "in front of", "kölner dom")]
