"""FaceAnalyzer orchestration (with scripted components), presets, errors and the ``stellar faces`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stellar.cli import main
from stellar.errors import ImageDecodeError, StellarError
from stellar.models.faces import (
    DETECTORS,
    EMBEDDERS,
    PRESETS,
    Detection,
    FaceAnalyzer,
    UnknownFaceModelError,
    cosine_similarity,
    similarity,
)


class ScriptedDetector:
    """Returns planted detections keyed by the image's top-left pixel value; records its calls."""

    name = "scripted"
    protocol = "scripted-det"

    def __init__(self, plan):
        self.plan = plan
        self.calls = []

    def detect(self, images):
        self.calls.append(len(images))
        return [list(self.plan.get(int(img[0, 0, 0]), [])) for img in images]


class ScriptedEmbedder:
    """Embedding = (box width, box height, 1) * 3 (not unit norm, to check normalisation)."""

    name = "scripted-emb"
    dim = 3
    protocol = "scripted-emb"

    def embed(self, images, detections):
        return [
            np.array([[(d.box[2] - d.box[0]) * 3, (d.box[3] - d.box[1]) * 3, 3.0] for d in dets], dtype=np.float64).reshape(-1, 3)
            for dets in detections
        ]


def _det(x1, y1, x2, y2, score=0.9):
    return Detection(box=np.array([x1, y1, x2, y2], np.float32), score=score, landmarks5=np.zeros((5, 2), np.float32))


def _img(tag, h=40, w=50):
    a = np.zeros((h, w, 3), np.uint8)
    a[0, 0, 0] = tag
    return a


PLAN = {
    1: [_det(0, 0, 10, 10), _det(0, 0, 30, 20), _det(5, 5, 25, 10, 0.99)],  # areas 100, 600, 100
    2: [],
    3: [_det(1, 1, 1, 9)],  # degenerate (zero width): dropped
    4: [_det(2, 2, 6, 6)],
}


def test_faces_sorted_by_area_with_normalised_float32_embeddings():
    an = FaceAnalyzer(ScriptedDetector(PLAN), ScriptedEmbedder())
    (faces,) = an.analyze([_img(1)])
    assert [f.area for f in faces] == [600.0, 100.0, 100.0]
    assert faces[0].box.tolist() == [0, 0, 30, 20]
    for f in faces:
        assert f.embedding.dtype == np.float32
        assert np.linalg.norm(f.embedding) == pytest.approx(1.0, abs=1e-6)
    w, h = 30, 20
    np.testing.assert_allclose(faces[0].embedding, np.array([w, h, 1]) / np.linalg.norm([w, h, 1]), atol=1e-6)


def test_no_face_is_empty_and_batches_keep_order():
    det = ScriptedDetector(PLAN)
    an = FaceAnalyzer(det, ScriptedEmbedder(), batch_size=2)
    out = an.analyze([_img(2), _img(4), _img(1), _img(3), _img(4)])
    assert [len(f) for f in out] == [0, 1, 3, 0, 1]
    assert det.calls == [2, 2, 1]
    assert an.timings["images"] == 5 and an.timings["faces"] == 5
    assert set(an.timings) >= {"decode", "detect", "align", "embed"}


def test_inputs_paths_pil_grey_and_rgba(tmp_path):
    an = FaceAnalyzer(ScriptedDetector(PLAN), ScriptedEmbedder())
    path = tmp_path / "a.png"
    Image.fromarray(_img(4)).save(path)
    grey = np.zeros((20, 20), np.uint8)
    grey[0, 0] = 1
    rgba = np.dstack([_img(1), np.full((40, 50), 255, np.uint8)])
    out = an.analyze([path, str(path), Image.fromarray(_img(1)), grey, rgba])
    assert [len(f) for f in out] == [1, 1, 3, 3, 3]


def test_unreadable_image_names_the_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    an = FaceAnalyzer(ScriptedDetector(PLAN), ScriptedEmbedder())
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        an.analyze([bad])
    with pytest.raises(StellarError, match="uint8"):
        an.analyze([np.zeros((4, 4, 3), np.float32)])


def test_unknown_names_list_valid_ones():
    with pytest.raises(UnknownFaceModelError, match="did you mean dlib-hog") as e:
        FaceAnalyzer("dlib-hgo", "dlib-resnet-v1")
    assert all(name in str(e.value) for name in DETECTORS)
    with pytest.raises(UnknownFaceModelError, match="arcface-buffalo-l"):
        FaceAnalyzer(ScriptedDetector(PLAN), "arcface-buffalo")
    with pytest.raises(UnknownFaceModelError, match="paper, arcface, offline"):
        FaceAnalyzer.from_preset("papr")


def test_preset_table():
    assert {n: (p.detector, p.embedder) for n, p in PRESETS.items()} == {
        "paper": ("mtcnn", "facenet-vggface2"),
        "arcface": ("scrfd", "arcface"),
        "offline": ("mtcnn", "dlib-resnet-v1"),
    }
    assert set(DETECTORS) == {"mtcnn", "scrfd", "dlib-hog", "dlib-cnn"}
    assert set(EMBEDDERS) == {"facenet-vggface2", "arcface", "arcface-buffalo-l", "dlib-resnet-v1"}


def test_offline_preset_builds_from_packages_and_has_a_protocol():
    pytest.importorskip("dlib")
    pytest.importorskip("torch")
    an = FaceAnalyzer.from_preset("offline", device="cpu")
    assert an.dim == 128 and an.device == "cpu"
    assert an.protocol.startswith("faces-v1/offline:mtcnn")
    assert "dlib_face_recognition_resnet_model_v1.dat" in an.protocol and "chip150" in an.protocol
    custom = FaceAnalyzer("dlib-hog", "dlib-resnet-v1", device="cpu")
    assert custom.protocol.startswith("faces-v1/custom:dlib-hog") and custom.protocol != an.protocol


@pytest.mark.parametrize("preset,card", [("paper", "facenet-vggface2"), ("arcface", "arcface-antelopev2")])
def test_missing_weights_offline_name_the_fetch_command_and_offline_preset(preset, card, tmp_path, monkeypatch):
    from stellar.models.registry import WeightsUnavailableError

    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsUnavailableError) as e:
        FaceAnalyzer.from_preset(preset, device="cpu")
    text = str(e.value)
    assert "stellar models fetch" in text and card in text
    assert "--faces offline" in text


def test_similarity_known_answers():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([1.0, 1.0, 0.0])
    assert similarity(a, b) == pytest.approx(1 / np.sqrt(2))
    assert similarity(a, -a) == pytest.approx(-1.0)
    m = cosine_similarity(np.stack([a, b]), np.stack([b, a * 5]))
    np.testing.assert_allclose(m, [[1 / np.sqrt(2), 1.0], [1.0, 1 / np.sqrt(2)]])


# ---------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    skdata = pytest.importorskip("skimage.data")
    d = tmp_path_factory.mktemp("cli")
    face = d / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(face)
    blank = d / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 127, np.uint8)).save(blank)
    return face, blank


def test_cli_detect_json_and_table(photo_files, capsys):
    pytest.importorskip("dlib")
    face, blank = photo_files
    assert main(["faces", "detect", str(face), str(blank), "--preset", "offline", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"].startswith("faces-v1/offline")
    first, second = out["images"]
    assert first["n_faces"] == 1 and second["n_faces"] == 0 and second["faces"] == []
    f = first["faces"][0]
    assert set(f) >= {"box", "score", "landmarks5", "area", "embedding_dim"} and f["embedding_dim"] == 128
    assert 150 < (f["box"][0] + f["box"][2]) / 2 < 260 and f["score"] > 0.9
    assert main(["faces", "detect", str(face), "--preset", "offline", "--detector", "dlib-hog", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "custom:dlib-hog" in text and "2 face(s)" in text  # the mission patch: dlib-hog's known false positive


def test_cli_similarity_and_no_face_exit_1(photo_files, capsys):
    pytest.importorskip("dlib")
    face, blank = photo_files
    assert main(["faces", "similarity", str(face), str(face), "--preset", "offline", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["similarity"] == pytest.approx(1.0, abs=1e-5) and out["no_face"] == []
    assert main(["faces", "similarity", str(face), str(blank), "--preset", "offline", "--device", "cpu"]) == 1
    text = capsys.readouterr().out
    assert "blank.png: no face found" in text and "not computed" in text


def test_cli_unknown_detector_and_missing_file_exit_2(photo_files, tmp_path, capsys):
    face, _ = photo_files
    assert main(["faces", "detect", str(face), "--detector", "retinaface"]) == 2
    assert "valid: mtcnn, scrfd, dlib-hog, dlib-cnn" in capsys.readouterr().err
