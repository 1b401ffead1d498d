"""dlib backends with the real model files shipped in ``face-recognition-models`` (DESIGN §8)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")

from stellar.errors import StellarError  # noqa: E402
from stellar.models.faces.arcface import ARCFACE_TEMPLATE_112  # noqa: E402
from stellar.models.faces.base import Detection  # noqa: E402
from stellar.models.faces.dlib_backend import (  # noqa: E402
    DlibCNNDetector,
    DlibHOGDetector,
    DlibResNetEmbedder,
    landmarks5_from_dlib_shape,
    packaged_models_dir,
)

MODELS = packaged_models_dir()
pytestmark = pytest.mark.skipif(MODELS is None, reason="face_recognition_models is not installed")

# Eileen Collins' face in skimage.data.astronaut() (512x512): head ellipse centre (222, 88).
FACE_CENTRE = np.array([222.0, 110.0])


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


@pytest.fixture(scope="module")
def hog():
    return DlibHOGDetector(MODELS)


@pytest.fixture(scope="module")
def resnet():
    return DlibResNetEmbedder(MODELS)


def test_hog_finds_the_astronaut_with_ordered_landmarks(hog, astronaut):
    (dets,) = hog.detect([astronaut])
    # the real face and, at dlib's default threshold, the round mission patch on her arm (a known
    # false positive, margin ~0.12 -> score ~0.53)
    assert len(dets) == 2
    face = max(dets, key=lambda d: d.score)
    centre = (face.box[:2] + face.box[2:]) / 2
    assert np.linalg.norm(centre - FACE_CENTRE) < 25
    assert 0.5 < face.score < 1.0 and all(0.5 <= d.score < 1.0 for d in dets)
    lm = face.landmarks5
    assert lm.shape == (5, 2)
    assert lm[0, 0] < lm[2, 0] < lm[1, 0]  # left eye, nose, right eye from image left to right
    assert lm[3, 0] < lm[4, 0]  # mouth corners left to right
    assert lm[2, 1] > max(lm[0, 1], lm[1, 1]) and min(lm[3, 1], lm[4, 1]) > lm[2, 1]  # eyes above nose above mouth
    x1, y1, x2, y2 = face.box
    assert ((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)).all()


def test_hog_threshold_drops_the_weak_detection(astronaut):
    strict = DlibHOGDetector(MODELS, adjust_threshold=0.5)
    (dets,) = strict.detect([astronaut])
    assert len(dets) == 1


def test_dlib_shape_to_shared_landmark_order_known_answer():
    # parts: 0-1 image-right eye corners, 2-3 image-left eye corners, 4 nose, built from a
    # known similarity of the ArcFace template -> mouth corners must come out exactly mapped
    scale, angle, t = 1.7, np.deg2rad(12.0), np.array([50.0, 80.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = ARCFACE_TEMPLATE_112 @ rot.T + t
    left, right, nose = pts[0], pts[1], pts[2]
    d = np.array([3.0, 0.5])
    parts = [right + d, right - d, left + d, left - d, nose]
    shape = SimpleNamespace(part=lambda i: SimpleNamespace(x=parts[i][0], y=parts[i][1]))
    np.testing.assert_allclose(landmarks5_from_dlib_shape(shape), pts, atol=1e-4)


def test_resnet_chip_route_equals_shape_route_and_is_normalised(hog, resnet, astronaut):
    (dets,) = hog.detect([astronaut])
    (vecs,) = resnet.embed([astronaut], [dets])
    assert vecs.shape == (2, 128) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    raw = resnet.raw_descriptors(astronaut, dets)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.01)  # dlib's own vectors are not unit norm
    np.testing.assert_allclose(vecs, raw / norms[:, None], atol=1e-6)


def test_resnet_embedding_is_stable_under_box_jitter(hog, resnet, astronaut):
    (dets,) = hog.detect([astronaut])
    face = max(dets, key=lambda d: d.score)
    looser = Detection(box=face.box + np.array([-12, -20, 10, 18], np.float32), score=1.0)  # MTCNN-like box
    (vecs,) = resnet.embed([astronaut], [[face, looser]])
    assert float(vecs[0] @ vecs[1]) > 0.97


def test_resnet_without_detections(resnet, astronaut):
    out = resnet.embed([astronaut, astronaut], [[], []])
    assert [v.shape for v in out] == [(0, 128), (0, 128)]


def test_cnn_detector_finds_the_astronaut(astronaut):
    cnn = DlibCNNDetector(MODELS, upsample=0)  # upsample 0: ~1.5 s on 2 CPU cores
    (dets,) = cnn.detect([astronaut])
    assert len(dets) == 1  # no false positive on the patch
    centre = (dets[0].box[:2] + dets[0].box[2:]) / 2
    assert np.linalg.norm(centre - FACE_CENTRE) < 25
    assert dets[0].landmarks5.shape == (5, 2) and 0.5 < dets[0].score < 1


def test_detectors_on_blank_and_noise_return_empty(hog):
    blank = np.zeros((200, 300, 3), np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    assert hog.detect([blank, noise]) == [[], []]


def test_missing_model_file_names_the_path(tmp_path):
    with pytest.raises(StellarError, match="shape_predictor_5_face_landmarks.dat"):
        DlibHOGDetector(tmp_path)
