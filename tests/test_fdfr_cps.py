"""FDFR and CPS (issue 12, DESIGN §6.10–6.11): known answers from hand-made features, their metadata,
the failure rule on them, aggregation overall / per kind, the statistics layer's interval, and
face-preset metric variants (``ips@paper``)."""

import math

import numpy as np
import pandas as pd
import pytest

from stellar.engine.bias import biased_presets, names_match
from stellar.engine.finalize import FinalizeContext, failure_rule, finalize_table
from stellar.metrics import aggregate as agg
from stellar.metrics import identity as idm
from stellar.metrics.base import METRICS, failure_value, split_variant, variant_name


def _e(*rows):
    return np.asarray(rows, dtype=np.float32)


# ----------------------------------------------------------------------------- FDFR
def test_fdfr_indicator_known_answers():
    assert [idm.face_detection_failure(n) for n in (0, 1, 2)] == [1.0, 0.0, 0.0]
    assert idm.face_detection_failure(None) == 1.0 and idm.face_detection_failure(float("nan")) == 1.0


def test_fdfr_metadata_and_failure_value():
    info = METRICS["fdfr"]
    assert not info.higher_is_better and info.level == "image" and info.models == ("faces",)
    assert not info.exclusion_applies  # detection does not depend on the prompt
    assert failure_value("fdfr", "T") == failure_value("fdfr", "H") == 1.0


# ----------------------------------------------------------------------------- CPS
def test_cps_known_answer_three_photos():
    g = _e([1.0, 0.0])
    refs = [_e([1.0, 0.0]), _e([0.6, 0.8]), _e([0.0, 1.0])]
    cps, raw, why = idm.copy_paste_score(g, refs, own=0)
    # IPS(g, x) = 1; the others: 0.6 and 0 -> mean 0.3; CPS = 0.7
    assert cps == pytest.approx(0.7, abs=1e-6) and raw == pytest.approx(0.7, abs=1e-6) and why == "ok"
    # the same image judged for the job of photo 1: IPS(g, x) = 0.6, others (1 and 0) -> 0.5
    assert idm.copy_paste_score(g, refs, own=1)[0] == pytest.approx(0.1, abs=1e-6)


def test_cps_max_over_faces_and_honest_rendering_is_low():
    # two faces in the generated image: IPS takes the best pair per photo
    g = _e([1.0, 0.0], [0.0, 1.0])
    refs = [_e([0.8, 0.6]), _e([0.6, 0.8])]
    assert idm.copy_paste_score(g, refs, own=0)[0] == pytest.approx(0.0, abs=1e-6)
    # an image equidistant from every photo of the person: CPS 0; closer to another photo: negative
    mid = _e([np.sqrt(0.5), np.sqrt(0.5)])
    assert idm.copy_paste_score(mid, [_e([1.0, 0.0]), _e([0.0, 1.0])], own=0)[0] == pytest.approx(0.0, abs=1e-6)
    assert idm.copy_paste_score(_e([0.0, 1.0]), [_e([1.0, 0.0]), _e([0.0, 1.0])], own=0)[0] == pytest.approx(-1.0, abs=1e-6)


def test_cps_undefined_and_worst_cases():
    x, y = _e([1.0, 0.0]), _e([0.6, 0.8])
    g = _e([1.0, 0.0])
    cps, raw, why = idm.copy_paste_score(g, [x], own=0)
    assert math.isnan(cps) and math.isnan(raw) and why == "single_photo"
    cps, _, why = idm.copy_paste_score(g, [None, y], own=0)
    assert math.isnan(cps) and why == idm.NO_FACE_REFERENCE  # the input photo has no face: undefined for the job
    cps, _, why = idm.copy_paste_score(g, [x, np.zeros((0, 2))], own=0)
    assert math.isnan(cps) and why == idm.NO_FACE_REFERENCE_OTHER
    # an other photo without a face is left out of the mean (as SIS)
    assert idm.copy_paste_score(g, [x, None, y], own=0)[0] == pytest.approx(0.4, abs=1e-6)
    # no face in the generated image: the WORST value, never the flattering 0 (0 − 0)
    cps, raw, why = idm.copy_paste_score(np.zeros((0, 2)), [x, y], own=0)
    assert cps == idm.CPS_WORST == 1.0 and math.isnan(raw) and why == idm.NO_FACE_GENERATED


def test_cps_metadata():
    info = METRICS["cps"]
    assert not info.higher_is_better and info.level == "image" and "references" in info.needs
    assert not info.exclusion_applies  # zeroing excluded (= copied) images would reward copying
    assert failure_value("cps", "T") == 1.0


# ----------------------------------------------------------------------------- failure rule, aggregation, CI
def _table():
    rows = []
    for k, (status, n_faces, cps) in enumerate(
        [("ok", 1, 0.30), ("ok", 2, 0.10), ("no_face_generated", 0, 1.0), ("missing", None, np.nan), ("decode_error", None, np.nan), ("reference_decode_error", None, np.nan)]
    ):
        rows.append(
            {
                "name": f"00{k // 3}-0-0{k}", "subject": f"00{k // 3}", "photo": 0, "kind": "T" if k % 2 == 0 else "H",
                "categories": ["animals"] if k < 3 else ["sports"], "status": status,
                "fdfr": np.nan if n_faces is None else idm.face_detection_failure(n_faces), "cps": cps,
                "clip_n": np.nan, "clip_t": np.nan, "face_embedding": None,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_failure_rule_gives_the_worst_fdfr_and_cps():
    frame = _table()
    cols, _ = failure_rule(frame, FinalizeContext({}, ["fdfr", "cps"], "worst"))
    # missing, undecodable and (face metrics need the input photo) reference failures: FDFR 1, CPS 1
    assert list(cols["fdfr"]) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert list(cols["cps"]) == pytest.approx([0.3, 0.1, 1.0, 1.0, 1.0, 1.0])
    cols, _ = failure_rule(frame, FinalizeContext({}, ["fdfr", "cps"], "partial"))
    assert np.isnan(cols["fdfr"][3:]).all() and np.isnan(cols["cps"][3:]).all()


def test_fdfr_aggregates_overall_per_kind_and_category():
    frame, _ = finalize_table(_table(), FinalizeContext({"exclusion_rule": "not applied: test"}, ["fdfr", "cps"], "worst"))
    tables = agg.summarize(frame, ["fdfr", "cps"])
    assert tables["overall"]["means"]["fdfr"] == pytest.approx(4 / 6)
    assert tables["by_kind"]["T"]["means"]["fdfr"] == pytest.approx(2 / 3)  # rows 0, 2, 4: 0, 1, 1
    assert tables["by_kind"]["H"]["means"]["fdfr"] == pytest.approx(2 / 3)  # rows 1, 3, 5: 0, 1, 1
    assert tables["by_category"]["animals"]["means"]["fdfr"] == pytest.approx(1 / 3)
    assert tables["overall"]["means"]["cps"] == pytest.approx((0.3 + 0.1 + 4.0) / 6)


def test_statistics_layer_gives_fdfr_an_interval():
    from stellar.report.stats import bootstrap_intervals, table_metrics

    frame, _ = finalize_table(_table(), FinalizeContext({"exclusion_rule": "not applied: test"}, ["fdfr", "cps"], "worst"))
    assert {"fdfr", "cps"} <= set(table_metrics(frame))
    iv = bootstrap_intervals(frame, ["fdfr"], n_boot=200, seed=0)["fdfr"]
    assert iv.mean == pytest.approx(4 / 6) and iv.lo <= iv.mean <= iv.hi and iv.hi > iv.lo


# ----------------------------------------------------------------------------- face-preset variants
def test_metric_variants_resolve_to_the_base_record():
    assert split_variant("ips@paper") == ("ips", "paper") and split_variant("ips") == ("ips", None)
    assert variant_name("fdfr", "arcface") == "fdfr@arcface" and variant_name("fdfr", None) == "fdfr"
    info = METRICS["ips@arcface"]
    assert info.name == "ips@arcface" and info.display_name == "IPS@arcface" and info.failure_value == 0.0
    assert "cps@offline" in METRICS and "nope@offline" not in METRICS and METRICS.get("nope@x") is None
    assert "ips@paper" not in list(METRICS)  # iteration lists the base metrics only
    assert failure_value("fdfr@paper", "T") == 1.0


def test_aggregate_reads_variant_aps_columns():
    labels = np.array([1, -1, 1, -1], np.int8)
    frame = pd.DataFrame({"status": ["ok"] * 4, "kind": ["T"] * 4, "ips@a": [0.5, 0.7, np.nan, 0.1], "aps_label_Male": labels,
                          "aps_pred_Male@a": np.array([1, -1, 1, -1], np.int8), "aps_pred_Male@b": np.array([-1, 1, 1, -1], np.int8)})  # fmt: skip
    out = agg.aggregate(frame, ["ips@a", "aps@a", "aps@b"])
    assert out["means"]["ips@a"] == pytest.approx(1.3 / 3)
    assert out["means"]["aps@a"] == pytest.approx(1.0) and out["means"]["aps@b"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- biased-encoder matching
def test_encoder_names_match():
    assert names_match("ArcFace", "arcface-antelopev2") and names_match("arcface_antelopev2", "arcface-antelopev2")
    assert names_match("facenet", "facenet-vggface2") and not names_match("face", "facenet-vggface2")
    encoders = {"paper": {"facenet-vggface2", "paper"}, "arcface": {"arcface", "arcface-antelopev2"}, "offline": {"dlib-resnet-v1", "offline"}}
    assert biased_presets(["arcface-antelopev2"], encoders) == {"arcface": ["arcface-antelopev2"]}
    assert biased_presets(["FaceNet", "dlib-resnet-v1"], encoders) == {"paper": ["facenet"], "offline": ["dlib-resnet-v1"]}
    assert biased_presets(["clip-vit-h"], encoders) == {}
