"""Issue 12 on the real-photo demo with the offline preset (real MTCNN + dlib weights from PyPI):
FDFR(noise) ≈ 1, FDFR(copy) = 0, CPS(copy) > CPS(another photo of the same person); several face
presets in one run equal separate single-preset runs, detect once when they share the detector; the
biased-encoder warning in run.json, on the console and in the report.

The second preset is the offline preset's MTCNN with a seeded random-weight FaceNet (the VGGFace2
weights of the ``paper`` preset cannot be downloaded here) — the engine path is the same.
Like tests/test_evaluate_real.py, the sets answer only the 8 jobs of prompt 0 (``failure_rule="partial"``).
"""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("dlib")
torch = pytest.importorskip("torch")

from stellar.cli import main
from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.engine.cache import FeatureCache

FACE = ("ips", "sis", "aps", "fdfr", "cps")


@pytest.fixture(scope="module")
def offline():
    from stellar.models.faces import FaceAnalyzer

    return FaceAnalyzer.from_preset("offline", device="cpu")


@pytest.fixture(scope="module")
def tiny_facenet(offline, tmp_path_factory):
    """An analyzer sharing ``offline``'s MTCNN instance with a seeded random FaceNet (InceptionResnetV1)."""
    from stellar.models.faces import FaceAnalyzer
    from stellar.models.faces.facenet import InceptionResnetV1, FaceNetEmbedder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("facenet") / "tiny-facenet.pt"
    torch.save(InceptionResnetV1().state_dict(), path)
    return FaceAnalyzer(offline.detector, FaceNetEmbedder(device="cpu", weights=path), device="cpu", preset="tinyfacenet")


def _write(folder, jobs, image_of, sidecar=None):
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        image_of(job).convert("RGB").save(folder / f"{job.name}.png")
        if sidecar is not None:
            (folder / f"{job.name}.json").write_text(json.dumps({"save_name": job.name, **sidecar}))
    return folder


def _photo(ds, subject, index, size=512):
    im = Image.open(ds.subject(subject).photos[index].path).convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((left, top, left + side, top + side)).resize((size, size))


@pytest.fixture(scope="module")
def sets(demo_dataset, tmp_path_factory):
    ds = StellarDataset(demo_dataset)
    jobs = [j for j in ds.jobs("test") if j.prompt.index == 0]
    root = tmp_path_factory.mktemp("gen12")
    rng = np.random.default_rng(0)
    obama = [j for j in jobs if j.subject == "004"]  # the subject with three photos
    return ds, jobs, {
        "copy": _write(root / "copy", jobs, lambda j: Image.open(j.photo.path)),
        "noise": _write(root / "noise", jobs, lambda j: Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))),
        # the honest re-rendering stand-in: another photo of the same person as the "generated" image
        "other_photo": _write(root / "other_photo", obama, lambda j: _photo(ds, "004", (j.photo.index + 1) % 3)),
        "obama_copy": _write(root / "obama_copy", obama, lambda j: Image.open(j.photo.path)),
        "declared": _write(root / "declared", obama, lambda j: Image.open(j.photo.path), sidecar={"face_encoder": "dlib-resnet-v1"}),
    }


def _run(ds, folder, out, faces, metrics=FACE, cache=None, **cfg):
    summary = evaluate(ds, folder, out, EvalConfig(metrics=metrics, failure_rule="partial", **cfg), faces=faces, clip=None,
                       clip_unavailable="test", progress=False, cache=cache)  # fmt: skip
    return summary, pd.read_parquet(out / "per_image.parquet")


def test_fdfr_noise_is_one_and_copy_is_zero(sets, offline, tmp_path):
    ds, jobs, folders = sets
    s_noise, noise = _run(ds, folders["noise"], tmp_path / "noise", offline)
    s_copy, copy = _run(ds, folders["copy"], tmp_path / "copy", offline)
    assert len(noise) == len(copy) == len(jobs) == 8
    assert (noise["fdfr"] == 1.0).all() and s_noise["means"]["fdfr"] == pytest.approx(1.0)
    # every demo photo has a face MTCNN finds, the profile (002) included: FDFR(copy) = 0
    assert (copy["fdfr"] == 0.0).all() and s_copy["means"]["fdfr"] == 0.0
    assert (copy["n_faces_generated"] > 0).all()
    # noise has no face: its CPS is the worst value (never the flattering 0 − 0), cps_raw says why
    assert (noise["cps"].dropna() == 1.0).all() and noise["cps_raw"].isna().all()


def test_cps_copy_beats_another_photo_of_the_same_person(sets, offline, tmp_path):
    ds, _, folders = sets
    s_copy, copy = _run(ds, folders["obama_copy"], tmp_path / "copy", offline)
    s_other, other = _run(ds, folders["other_photo"], tmp_path / "other", offline)
    assert len(copy) == len(other) == 3
    assert copy["cps"].notna().all() and other["cps"].notna().all()
    # the copy reproduces the input photo: IPS(g, x) = 1 above the same-person similarity of the others
    assert copy["cps"].min() > 0.02
    assert copy["cps"].min() > other["cps"].max()
    assert s_copy["means"]["cps"] > s_other["means"]["cps"]
    # subjects with a single photo have no CPS (NaN, counted as undefined)
    s_all, all_ = _run(ds, folders["copy"], tmp_path / "all", offline)
    single = {s for s in ds.subjects if len(ds.subject(s).photos) < 2}
    assert all_.loc[all_["subject"].isin(single), "cps"].isna().all()
    assert s_all["undefined"].get("cps", 0) == int(all_["subject"].isin(single).sum())


def test_several_presets_equal_separate_runs_and_detect_once(sets, offline, tiny_facenet, tmp_path):
    ds, jobs, folders = sets
    s_multi, multi = _run(ds, folders["copy"], tmp_path / "multi", {"offline": offline, "tinyfacenet": tiny_facenet}, cache=FeatureCache(tmp_path / "c0"))
    s_a, a = _run(ds, folders["copy"], tmp_path / "a", offline, cache=FeatureCache(tmp_path / "c1"))
    s_b, b = _run(ds, folders["copy"], tmp_path / "b", tiny_facenet, cache=FeatureCache(tmp_path / "c2"))
    run = json.loads((tmp_path / "multi" / "run.json").read_text())
    assert run["metrics"] == [f"{m}@{p}" for m in FACE for p in ("offline", "tinyfacenet")]
    assert run["models"]["faces"] == {"offline": offline.protocol, "tinyfacenet": tiny_facenet.protocol}
    for preset, single, s_single in (("offline", a, s_a), ("tinyfacenet", b, s_b)):
        for m in ("ips", "sis", "fdfr", "cps", "cps_raw", "aps_image", "n_faces_generated"):
            np.testing.assert_array_equal(multi[f"{m}@{preset}"].to_numpy(), single[m].to_numpy(), err_msg=f"{m}@{preset}")
        for m in FACE:
            assert s_multi["means"][f"{m}@{preset}"] == s_single["means"][m]
    assert (multi["status"] == a["status"]).all()  # the first preset sets the row status
    assert "ips" not in multi and "face_embedding@offline" not in multi
    # one MTCNN pass per image for both presets, one embedding pass per preset
    passes = s_multi["model_passes"]
    assert passes["face_passes_generated"] == 2 * len(jobs) and passes["face_detections_generated"] == len(jobs)
    assert passes["face_detections_reference"] == passes["face_passes_reference"] // 2 > 0
    # the report shows the presets side by side and their rank agreement across runs
    s2, _ = _run(ds, folders["noise"], tmp_path / "multi_noise", {"offline": offline, "tinyfacenet": tiny_facenet}, cache=FeatureCache(tmp_path / "c0"))
    from stellar.report.leaderboard import leaderboard, load_run, render

    text = render(leaderboard([load_run(tmp_path / "multi"), load_run(tmp_path / "multi_noise")]), "md")
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header.index("IPS@offline") < header.index("IPS@tinyfacenet") < header.index("SIS@offline")
    assert "Kendall τ-b(ips@offline, ips@tinyfacenet) = 1.0000 over 2 runs" in text


def test_cli_several_presets_plan_and_doctor(sets, tmp_path, capsys):
    ds, _, folders = sets
    code = main(["evaluate", "--dataset", str(ds.root), "--generated", str(folders["copy"]), "--out", str(tmp_path / "r"),
                 "--faces", "offline,offline", "--metrics", "ips,fdfr", "--clip", "none", "--device", "cpu", "--partial", "--plan"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "fdfr" in out  # a repeated preset is one preset: plain names


def test_biased_encoder_warning(sets, offline, tmp_path, capsys):
    ds, _, folders = sets
    _run(ds, folders["declared"], tmp_path / "declared", offline)
    run = json.loads((tmp_path / "declared" / "run.json").read_text())
    assert len(run["warnings"]) == 1 and "evaluated with the encoder it was trained on: biased" in run["warnings"][0]
    assert "'offline'" in run["warnings"][0] and "sidecars" in run["warnings"][0]
    assert "biased" in capsys.readouterr().err
    # --generator-encoder overrides the sidecars; an unrelated encoder gives no warning
    _run(ds, folders["declared"], tmp_path / "other_enc", offline, generator_encoder="arcface-antelopev2")
    assert "warnings" not in json.loads((tmp_path / "other_enc" / "run.json").read_text())
    _run(ds, folders["obama_copy"], tmp_path / "flag", offline, generator_encoder="dlib")
    assert "--generator-encoder" in json.loads((tmp_path / "flag" / "run.json").read_text())["warnings"][0]
    _run(ds, folders["obama_copy"], tmp_path / "plain", offline)
    assert "warnings" not in json.loads((tmp_path / "plain" / "run.json").read_text())
    assert main(["report", str(tmp_path / "declared"), "--format", "md"]) == 0
    assert "evaluated with the encoder it was trained on: biased" in capsys.readouterr().out


def test_metrics_list_shows_fdfr_and_cps(capsys):
    assert main(["metrics", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fdfr = next(line for line in lines if line.startswith("fdfr "))
    cps = next(line for line in lines if line.startswith("cps "))
    for line in (fdfr, cps):
        assert " lower " in line and " image " in line and "faces" in line
