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
    evaluate(ds, gen, tmp_path / "run", EvalConfig(metrics=("goa", "rfs"), batch_size=4, failure_rule="partial"), scorers=[scorer], cache=FeatureCache(tmp_path / "f"), progress=False)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    df = df[df["status"] != "missing"]  # the synthetic set has images for two jobs only; the others are rows scored as failures
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


# ------------------------------------------------------------------ issue 9.4: relation crops
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    pytest.importorskip("transformers")
    from stellar.models.clip import ClipEncoder
    from stellar.testing import tiny_clip_folder

    return ClipEncoder.from_pretrained(str(tiny_clip_folder(tmp_path_factory.mktemp("clip"))), device="cpu")


def _wide_scene(edges: int) -> np.ndarray:
    """A 40x150 image whose union box (0..150 x 5..35, 5:1) has the person at the left edge and the
    object at the right edge; ``edges`` changes only those two outer sixths."""
    rng = np.random.default_rng(1)
    im = np.full((40, 150, 3), 128, np.uint8)
    im[:, 25:125] = rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)  # the background between them
    edge_rng = np.random.default_rng(100 + edges)
    im[:, :25] = edge_rng.integers(0, 256, (40, 25, 3), dtype=np.uint8)  # "the person"
    im[:, 125:] = edge_rng.integers(0, 256, (40, 25, 3), dtype=np.uint8)  # "the object"
    return im


def test_rfs_relation_crop_loses_person_and_object_in_centre_crop(tiny_clip):
    """Issue 9.4: the union box went through CLIP's centre crop, which cut the outer parts of a wide box —
    the person and the object — so p_pred did not depend on them. Now it does."""
    from stellar.models.relations import ClipRelationScorer, RelationQuery

    scorer = ClipRelationScorer(tiny_clip, ["riding", "next to", "holding"])
    box = (0.0, 5.0, 150.0, 35.0)
    a, b = (scorer.score([RelationQuery(_wide_scene(e), box, "person", "next to", "horse")])[0] for e in (0, 1))
    assert abs(a - b) > 1e-6, "p_pred must depend on the pixels at the edges of the union box"
    # and not on pixels outside the box
    outside = _wide_scene(0)
    outside[:5] = 0
    outside[35:] = 255
    assert scorer.score([RelationQuery(outside, box, "person", "next to", "horse")])[0] == pytest.approx(a, rel=1e-5)
    assert "pad-square" in scorer.protocol


def test_square_crop_keeps_every_pixel_of_the_box_through_clip_preprocessing(tiny_clip):
    from stellar.models.relations import processor_fill, square_crop

    im = _wide_scene(0)
    region = square_crop(im, (0, 5, 150, 35), processor_fill(tiny_clip.image_processor))
    assert region.shape == (150, 150, 3)
    assert np.array_equal(region[60:90], im[5:35])  # the whole box, centred
    pixels = tiny_clip.image_processor(images=[region], return_tensors="pt")["pixel_values"][0].numpy()
    assert abs(float(pixels[:, 0, :].mean())) < 0.05  # the padding normalises to ~0 (the mean colour)


def test_vqa_relation_crop_is_the_padded_square(tmp_path_factory):
    """The VQA scorer encodes the same square-padded union crop (BLIP resizes without cropping; the
    padding keeps the aspect ratio, as for CLIP)."""
    pytest.importorskip("transformers")
    from stellar.models.relations import RelationQuery, VqaRelationScorer, processor_fill
    from stellar.testing import tiny_blip_vqa_folder

    scorer = VqaRelationScorer.from_pretrained(str(tiny_blip_vqa_folder(tmp_path_factory.mktemp("vqa"))), device="cpu")
    seen = []
    processor = scorer.image_processor

    def spy(images, **kw):
        seen.extend(np.asarray(im) for im in images)
        return processor(images=images, **kw)

    scorer.image_processor = spy
    im = _wide_scene(0)
    scorer.score([RelationQuery(im, (0.0, 5.0, 150.0, 35.0), "person", "next to", "horse")])
    (region,) = seen
    assert region.shape == (150, 150, 3) and np.array_equal(region[60:90], im[5:35])
    assert tuple(region[0, 0]) == processor_fill(processor)
    assert "pad-square" in scorer.protocol
    # and p_yes depends on the pixels at the edges of the box
    scorer.image_processor = processor
    a, b = (scorer.score([RelationQuery(_wide_scene(e), (0.0, 5.0, 150.0, 35.0), "person", "next to", "horse")])[0] for e in (0, 1))
    assert abs(a - b) > 1e-7
