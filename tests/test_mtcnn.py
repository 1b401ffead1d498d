"""MTCNN: our cascade vs facenet-pytorch's (the test oracle, same weights) on real and synthetic photos.

The oracle is facenet-pytorch 2.6.0 (installed with --no-deps); its wheel also carries the MTCNN
weights (data/pnet.pt, rnet.pt, onet.pt), which our detector loads here. Acceptance tolerance of the
issue: boxes and landmarks within 1 px, probabilities within 1e-3 relative. Both implementations run
the same float32 operations, so we assert much tighter (0.05 px, 1e-5 relative): an off-by-one in
the ``+1`` pixel conventions would pass a 1 px tolerance but not this one.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

facenet_pytorch = pytest.importorskip("facenet_pytorch")
from PIL import Image  # noqa: E402

from stellar.errors import StellarError  # noqa: E402
from stellar.models.faces._torch import WeightsFileError  # noqa: E402
from stellar.models.faces.base import Detection, FaceDetector  # noqa: E402
from stellar.models.faces.boxes import batched_nms, nms, square_boxes  # noqa: E402
from stellar.models.faces.mtcnn import MTCNNDetector, ONet, PNet, RNet, pyramid_scales  # noqa: E402

BOX_TOL = 0.05  # px
PROB_RTOL = 1e-5


def _oracle_data_dir() -> Path:
    return Path(importlib.util.find_spec("facenet_pytorch").submodule_search_locations[0]) / "data"


# ----------------------------------------------------------------------------- photos
def _astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


def _luispedro() -> np.ndarray:
    import mahotas.demos

    return np.ascontiguousarray(mahotas.demos.load("luispedro"))


def _camera_rgb() -> np.ndarray:
    import skimage.data

    return np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)


def _face_recognition_photos() -> dict[str, np.ndarray]:
    """Obama ×3 and Biden from the face_recognition 1.3.0 sdist, when it is cached (never fetched
    here); the two full-length portraits are cut to the demo dataset's 900×900 head crops."""
    try:
        from stellar.data import samples

        sdist = samples.fetch_face_recognition_sdist(offline=True)
    except (ImportError, StellarError):
        return {}
    crops = {p.origin.split(":", 1)[1]: p.crop for p in samples.DEMO_PHOTOS if p.needs_face_recognition}
    out = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for name, crop in crops.items():
            data = tar.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}").read()
            im = Image.open(io.BytesIO(data)).convert("RGB")
            out[name] = np.asarray(im.crop(crop) if crop else im)
    return out


def _synthetic_canvas(size: tuple[int, int], placements: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Heads cut from the real photos, rescaled to the given heights and pasted on a smooth gradient.

    ``placements`` = (head index, x, y, height); heads may be cut by the border (negative x ...).
    """
    heads = [
        _astronaut()[0:180, 150:294],
        _grace_hopper()[30:340, 150:374],
        _luispedro()[5:345, 30:274],
    ]
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    canvas = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height, 140 - 50 * xx / width], -1).astype(np.uint8)
    for k, x, y, h in placements:
        head = heads[k]
        w = round(head.shape[1] * h / head.shape[0])
        im = np.asarray(Image.fromarray(head).resize((w, h), Image.BILINEAR))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        canvas[y0:y1, x0:x1] = im[y0 - y : y1 - y, x0 - x : x1 - x]
    return canvas


# six faces from ~20 px to ~190 px, one cut by the left border, one touching the right border
CANVAS_A = ((768, 1024), [(0, 80, 60, 300), (1, 500, 100, 180), (2, 800, 420, 110), (0, 450, 560, 40), (1, -20, 500, 150), (2, 960, 60, 90)])
CANVAS_B = ((512, 512), [(2, 40, 40, 200), (0, 300, 300, 120), (1, 330, 60, 60), (0, 100, 420, 36)])


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    out = {
        "astronaut": _astronaut(),
        "grace_hopper": _grace_hopper(),
        "luispedro": _luispedro(),
        "camera": _camera_rgb(),
        "canvas_a": _synthetic_canvas(*CANVAS_A),
        "canvas_b": _synthetic_canvas(*CANVAS_B),
    }
    out.update(_face_recognition_photos())
    return out


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector(device="cpu", weights={n: _oracle_data_dir() / f"{n}.pt" for n in ("pnet", "rnet", "onet")})


@pytest.fixture(scope="module")
def oracle():
    return facenet_pytorch.MTCNN(keep_all=True, device="cpu")


@pytest.fixture(scope="module")
def single(detector, photos) -> dict[str, list[Detection]]:
    """Our detections of each photo, one image per call (computed once, shared by the tests)."""
    return {name: detector.detect([image])[0] for name, image in photos.items()}


def _oracle_detect(oracle, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, probs, points = oracle.detect(Image.fromarray(image), landmarks=True)
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    return boxes.astype(np.float32), probs.astype(np.float32), points.astype(np.float32)


def _assert_same(mine: list[Detection], ref: tuple[np.ndarray, np.ndarray, np.ndarray], label: str) -> dict[str, float]:
    boxes, probs, points = ref
    assert len(mine) == len(boxes), f"{label}: {len(mine)} faces, oracle {len(boxes)}"
    diffs = {"box": 0.0, "prob_rel": 0.0, "landmarks": 0.0}
    for det in mine:
        assert det.box.dtype == np.float32 and det.box.shape == (4,)
        assert det.landmarks5 is not None and det.landmarks5.shape == (5, 2)
        # match each of ours to the nearest oracle box (order is by area in both; ties aside)
        j = int(np.argmin(np.abs(boxes - det.box).max(axis=1)))
        diffs["box"] = max(diffs["box"], float(np.abs(boxes[j] - det.box).max()))
        diffs["prob_rel"] = max(diffs["prob_rel"], abs(det.score - float(probs[j])) / float(probs[j]))
        diffs["landmarks"] = max(diffs["landmarks"], float(np.abs(points[j] - det.landmarks5).max()))
    assert diffs["box"] <= BOX_TOL, (label, diffs)
    assert diffs["prob_rel"] <= PROB_RTOL, (label, diffs)
    assert diffs["landmarks"] <= BOX_TOL, (label, diffs)
    return diffs


def _assert_close_lists(a: list[Detection], b: list[Detection]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.box, y.box, atol=1e-3)
        np.testing.assert_allclose(x.landmarks5, y.landmarks5, atol=1e-3)
        assert x.score == pytest.approx(y.score, rel=1e-5)


# ----------------------------------------------------------------------------- parity
PHOTO_NAMES = ["astronaut", "grace_hopper", "luispedro", "camera", "canvas_a", "canvas_b", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
MIN_FACES = {"canvas_a": 6, "canvas_b": 4}


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_parity_with_facenet_pytorch(name, photos, single, oracle):
    if name not in photos:
        pytest.skip("face_recognition 1.3.0 sdist not cached (stellar.data.samples.fetch_command())")
    mine = single[name]
    _assert_same(mine, _oracle_detect(oracle, photos[name]), name)
    # the synthetic canvases must find every pasted face, including the ~20 px and border ones
    assert len(mine) >= MIN_FACES.get(name, 1), (name, len(mine))
    areas = [d.area for d in mine]
    assert areas == sorted(areas, reverse=True)  # largest first, facenet-pytorch's select_largest order
    for d in mine:
        x1, y1, x2, y2 = d.box
        assert np.all(d.landmarks5[:, 0] > x1 - 0.1 * (x2 - x1)) and np.all(d.landmarks5[:, 0] < x2 + 0.1 * (x2 - x1))
        # left eye image-left of the right eye; eyes above the mouth corners
        assert d.landmarks5[0, 0] < d.landmarks5[1, 0]
        assert d.landmarks5[:2, 1].max() < d.landmarks5[3:, 1].min()


def test_real_photo_face_counts(single):
    """Each single-person photo has its face (camera = a profile, which MTCNN still finds)."""
    for name in ("astronaut", "grace_hopper", "luispedro", "camera"):
        dets = single[name]
        assert len(dets) == 1, (name, [(d.box.round(), d.score) for d in dets])
        assert dets[0].score > 0.99
    # the astronaut's face is where a person would put it (head ellipse centred at 222, 88)
    [face] = single["astronaut"]
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    assert abs(cx - 222) < 25 and abs(cy - 110) < 30


def test_batch_equals_one_by_one(photos, single):
    # four 512x512 images in chunks of two; then mixed sizes, grouped by size, answered in input order
    chunked = MTCNNDetector(device="cpu", weights=_oracle_data_dir(), batch_size=2)
    names = ["astronaut", "camera", "canvas_b", "astronaut"]
    for name, dets in zip(names, chunked.detect([photos[n] for n in names])):
        _assert_close_lists(dets, single[name])
    names = ["luispedro", "astronaut", "grace_hopper", "camera", "luispedro"]
    for name, dets in zip(names, chunked.detect([photos[n] for n in names])):
        _assert_close_lists(dets, single[name])


def test_no_face_and_tiny_images_give_empty_lists(detector):
    blank = np.full((300, 400, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    tiny = np.zeros((10, 15, 3), np.uint8)  # smaller than one pyramid level
    assert detector.detect([blank, noise, tiny]) == [[], [], []]
    assert detector.detect([]) == []


def test_implements_protocol_and_accepts_pil(detector, photos):
    assert isinstance(detector, FaceDetector)
    assert detector.name == "mtcnn"
    [dets] = detector.detect([Image.fromarray(photos["luispedro"])])
    [ref] = detector.detect([photos["luispedro"]])
    assert len(dets) == len(ref) == 1 and np.array_equal(dets[0].box, ref[0].box)


def test_bad_input_is_a_typed_error(detector):
    with pytest.raises(StellarError, match="image #1"):
        detector.detect([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)])
    with pytest.raises(StellarError, match="uint8"):
        detector.detect([np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(StellarError, match="thresholds"):
        MTCNNDetector(device="cpu", weights=_oracle_data_dir(), thresholds=(0.6, 0.7))


def test_weights_errors_name_the_file(tmp_path):
    data = _oracle_data_dir()
    with pytest.raises(StellarError, match="onet"):
        MTCNNDetector(device="cpu", weights={"pnet": data / "pnet.pt", "rnet": data / "rnet.pt"})
    bad = tmp_path / "onet.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match=str(bad)) as err:
        MTCNNDetector(device="cpu", weights={"pnet": data / "pnet.pt", "rnet": data / "rnet.pt", "onet": bad})
    assert "stellar models fetch mtcnn" in str(err.value)
    with pytest.raises(WeightsFileError, match="does not fit"):  # R-Net weights given as P-Net
        MTCNNDetector(device="cpu", weights={"pnet": data / "rnet.pt", "rnet": data / "rnet.pt", "onet": data / "onet.pt"})
    with pytest.raises(WeightsFileError, match="not found"):
        MTCNNDetector(device="cpu", weights=tmp_path)


def test_state_dict_keys_and_shapes_equal_facenet_pytorch():
    for ours, theirs in ((PNet(), facenet_pytorch.PNet(pretrained=False)), (RNet(), facenet_pytorch.RNet(pretrained=False)), (ONet(), facenet_pytorch.ONet(pretrained=False))):
        a, b = ours.state_dict(), theirs.state_dict()
        assert list(a) == list(b)
        assert all(a[k].shape == b[k].shape for k in a)


# ----------------------------------------------------------------------------- pieces
def test_pyramid_scales_known_answer():
    # 100 px, min face 20: 12/20 = 0.6; shorter side 60 -> 42.5 -> 30.2 -> 21.4 -> 15.2 (-> 10.7 stops)
    scales = pyramid_scales(100, 120, 20, 0.709)
    assert scales == pytest.approx([0.6 * 0.709**k for k in range(5)])
    assert pyramid_scales(19, 500) == []


def test_nms_matches_torchvision_including_ties():
    torchvision_ops = pytest.importorskip("torchvision.ops")
    gen = torch.Generator().manual_seed(0)
    for n in (1, 7, 300):
        xy = torch.rand(n, 2, generator=gen) * 100
        wh = torch.rand(n, 2, generator=gen) * 40 + 1
        boxes = torch.cat([xy, xy + wh], 1)
        scores = torch.randint(0, 4, (n,), generator=gen).float()  # many ties
        for thr in (0.3, 0.5, 0.7):
            assert torch.equal(nms(boxes, scores, thr), torchvision_ops.nms(boxes, scores, thr))
        groups = torch.randint(0, 3, (n,), generator=gen)
        assert torch.equal(batched_nms(boxes, scores, groups, 0.5), torchvision_ops.batched_nms(boxes, scores, groups, 0.5))


def test_min_nms_matches_facenet_pytorch_numpy_variant():
    from facenet_pytorch.models.utils.detect_face import nms_numpy

    rng = np.random.default_rng(1)
    for n in (2, 9, 40, 200):  # distinct scores: np.argsort's order among ties is unspecified
        xy = rng.uniform(0, 60, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2)).astype(np.float32)], 1)
        scores = rng.permutation(n).astype(np.float32) / n
        ref = nms_numpy(boxes, scores, 0.5, "Min")
        ours = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5, "min", 1.0, "last")
        assert ours.tolist() == ref.tolist()


def test_nms_known_answer_and_square_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81 / 119 = 0.68: suppressed at 0.5, kept at 0.7; box 3 lies inside box 0 (IoU 0.16)
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [3, 0, 1, 2]
    # "min" criterion: box 3 is wholly inside box 0 -> overlap 1 -> suppressed by it
    assert nms(boxes, scores, 0.7, "min", 1.0).tolist() == [3, 1, 2]
    sq = square_boxes(torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.5]]))
    assert sq.tolist() == [[0.0, 20.0, 40.0, 60.0, 0.5]]


# ----------------------------------------------------------------------------- registry wiring
def test_default_weights_resolve_through_the_registry(tmp_path, monkeypatch):
    registry = pytest.importorskip("stellar.models.registry")
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    # offline, the registry takes the files from the installed facenet-pytorch 2.6.0 into its cache
    det = MTCNNDetector(device="cpu")
    assert det.weights == {net: str(registry.models_dir() / "mtcnn" / f"{net}.pt") for net in ("pnet", "rnet", "onet")}
    # the same files under $STELLAR_WEIGHTS_DIR/mtcnn/ (sha256-checked by the registry)
    local = tmp_path / "weights" / "mtcnn"
    local.mkdir(parents=True)
    for net in ("pnet", "rnet", "onet"):
        (local / f"{net}.pt").write_bytes((_oracle_data_dir() / f"{net}.pt").read_bytes())
    monkeypatch.setenv("STELLAR_WEIGHTS_DIR", str(tmp_path / "weights"))
    det = MTCNNDetector(device="cpu")
    assert det.weights == {net: str(local / f"{net}.pt") for net in ("pnet", "rnet", "onet")}
    assert len(det.detect([np.asarray(Image.fromarray(_astronaut()).resize((256, 256)))])[0]) == 1
