"""ArcFace alignment (known answers), the ONNX recognition path and SCRFD decoding.

The ONNX models here are tiny torch modules exported with the *same input / output signature* as
the released insightface files (documented in ``stellar.models.faces.arcface`` / ``scrfd``), so the
pre- and post-processing is tested exactly; the networks themselves are stand-ins.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from stellar.models.faces.arcface import (  # noqa: E402
    ARCFACE_TEMPLATE_112,
    ArcFaceEmbedder,
    align_face,
    alignment_matrix,
    umeyama_similarity,
    warp_affine,
)
from stellar.models.faces.base import Detection  # noqa: E402
from stellar.models.faces.scrfd import SCRFDDetector, anchor_centers, letterbox  # noqa: E402


def _similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    return np.hstack([r, [[tx], [ty]]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _export(module, path, input_shape, output_names, dynamic_batch: bool):
    dynamic_axes = {"input.1": {0: "N"}} if dynamic_batch else None
    if dynamic_batch:
        dynamic_axes.update({n: {0: "N"} for n in output_names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            torch.zeros(*input_shape),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["input.1"],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
    return path


# ------------------------------------------------------------------------------------ alignment
@pytest.mark.parametrize("scale,deg,tx,ty", [(2.3, 17.0, 140.0, 95.0), (0.7, -40.0, 10.0, 300.0), (1.0, 0.0, 0.0, 0.0)])
def test_umeyama_recovers_known_similarity(scale, deg, tx, ty):
    s = _similarity(scale, deg, tx, ty)
    landmarks = _apply(s, ARCFACE_TEMPLATE_112)
    m = alignment_matrix(landmarks)  # image -> template: the inverse of s
    inv = np.linalg.inv(np.vstack([s, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(m, inv, atol=1e-9)
    np.testing.assert_allclose(_apply(m, landmarks), ARCFACE_TEMPLATE_112, atol=1e-9)


def test_umeyama_matches_skimage_on_noisy_points():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    src = ARCFACE_TEMPLATE_112 * 1.9 + [200, 120] + rng.normal(0, 2.0, (5, 2))
    if hasattr(transform.SimilarityTransform, "from_estimate"):
        ref = transform.SimilarityTransform.from_estimate(src, ARCFACE_TEMPLATE_112)
    else:
        ref = transform.SimilarityTransform()
        ref.estimate(src, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(umeyama_similarity(src, ARCFACE_TEMPLATE_112), ref.params[:2], atol=1e-9)


def test_alignment_never_mirrors():
    mirrored = ARCFACE_TEMPLATE_112.copy()
    mirrored[:, 0] = 112 - mirrored[:, 0]  # a reflection fits exactly; a similarity must not use it
    m = alignment_matrix(mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_aligned_crop_known_answer_scale_and_rotation():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    # scale 2, no rotation: crop pixel (u, v) samples image pixel (2u + 30, 2v + 40) exactly
    crop = align_face(img, ARCFACE_TEMPLATE_112 * 2 + [30, 40])
    v, u = np.mgrid[0:112, 0:112]
    np.testing.assert_array_equal(crop, img[2 * v + 40, 2 * u + 30])
    # rotation by 90° + translation: (u, v) -> (-v + 200, u + 50), integer again
    s = _similarity(1.0, 90.0, 200.0, 50.0)
    crop = align_face(img, _apply(s, ARCFACE_TEMPLATE_112))
    np.testing.assert_array_equal(crop, img[np.rint(u + 50).astype(int), np.rint(-v + 200).astype(int)])


def test_warp_matches_skimage_bilinear_and_black_border():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    m = _similarity(0.83, 23.0, 15.3, -20.7)
    ours = warp_affine(img, m, (112, 112))
    inv = transform.AffineTransform(matrix=np.linalg.inv(np.vstack([m, [0, 0, 1]])))
    ref = transform.warp(img.astype(np.float64), inv, output_shape=(112, 112), order=1, mode="constant", cval=0, preserve_range=True)
    inside = ref.sum(-1) > 0
    assert inside.mean() > 0.3 and (~inside).mean() > 0.05  # both the image and the border are exercised
    assert np.abs(ours.astype(float) - np.rint(ref))[inside].max() <= 1
    assert ours[~inside].max() <= 255 * 0  # outside the image: black


def test_alignment_at_crop_size_128_follows_insightface_shift():
    m = alignment_matrix(ARCFACE_TEMPLATE_112, crop_size=128)
    np.testing.assert_allclose(_apply(m, ARCFACE_TEMPLATE_112), ARCFACE_TEMPLATE_112 * (128 / 128) + [8, 0], atol=1e-9)


# ------------------------------------------------------------------------------------ arcface onnx
class _TinyRecognizer(torch.nn.Module):
    """Real I/O signature: [N, 3, 112, 112] float32 -> [N, 512]."""

    def __init__(self, normalise_inside: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.fc = torch.nn.Linear(8 * 14 * 14, 512)
        self.normalise_inside = normalise_inside

    def forward(self, x):
        if self.normalise_inside:
            x = (x - 127.5) * (1 / 127.5)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def recognizer_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("arcface")
    return {
        "dynamic": _export(_TinyRecognizer().eval(), d / "tiny_r.onnx", (1, 3, 112, 112), ["embedding"], True),
        "fixed1": _export(_TinyRecognizer().eval(), d / "tiny_r_b1.onnx", (1, 3, 112, 112), ["embedding"], False),
        "inside": _export(_TinyRecognizer(True).eval(), d / "tiny_r_in.onnx", (1, 3, 112, 112), ["embedding"], True),
    }


def _crops(n, seed=3):
    return [np.random.default_rng(seed + i).integers(0, 256, (112, 112, 3), dtype=np.uint8) for i in range(n)]


def test_arcface_onnx_normalisation_rgb_and_l2(recognizer_files):
    emb = ArcFaceEmbedder("arcface", model_path=recognizer_files["dynamic"], device="cpu")
    assert emb.dim == 512 and (emb.input_mean, emb.input_std) == (127.5, 127.5)
    crops = _crops(3)
    got = emb.embed_crops(crops)
    net = _TinyRecognizer().eval()
    x = torch.from_numpy((np.stack(crops).astype(np.float32) - 127.5) / 127.5).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(net(x), dim=1).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    with torch.no_grad():  # the test can tell channel orders apart
        bgr = torch.nn.functional.normalize(net(x.flip(1)), dim=1).numpy()
    assert np.abs(got - bgr).max() > 1e-3


def test_arcface_batch_equals_one_by_one_and_fixed_batch_file(recognizer_files):
    crops = _crops(5)
    batched = ArcFaceEmbedder("arcface", model_path=recognizer_files["dynamic"], device="cpu", batch_size=4).embed_crops(crops)
    single = ArcFaceEmbedder("arcface", model_path=recognizer_files["dynamic"], device="cpu", batch_size=1).embed_crops(crops)
    fixed = ArcFaceEmbedder("arcface", model_path=recognizer_files["fixed1"], device="cpu", batch_size=4)
    assert fixed.fixed_batch == 1
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(fixed.embed_crops(crops), single, atol=1e-5)


def test_arcface_model_normalising_inside_gets_raw_pixels(recognizer_files):
    inside = ArcFaceEmbedder("arcface", model_path=recognizer_files["inside"], device="cpu")
    assert (inside.input_mean, inside.input_std) == (0.0, 1.0)
    plain = ArcFaceEmbedder("arcface", model_path=recognizer_files["dynamic"], device="cpu")
    crops = _crops(2)
    np.testing.assert_allclose(inside.embed_crops(crops), plain.embed_crops(crops), atol=1e-5)


def test_arcface_embed_aligns_by_landmarks(recognizer_files):
    emb = ArcFaceEmbedder("arcface", model_path=recognizer_files["dynamic"], device="cpu")
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    lm = (ARCFACE_TEMPLATE_112 * 2 + [20, 30]).astype(np.float32)
    det = Detection(box=np.array([20, 30, 244, 254], np.float32), score=0.9, landmarks5=lm)
    (vecs,) = emb.embed([img], [[det]])
    np.testing.assert_allclose(vecs[0], emb.embed_crops([img[30:254:2, 20:244:2]])[0], atol=1e-6)
    empty = emb.embed([img], [[]])
    assert empty[0].shape == (0, 512)


# ------------------------------------------------------------------------------------ scrfd
INPUT = 640
N8, N16, N32 = (INPUT // 8) ** 2 * 2, (INPUT // 16) ** 2 * 2, (INPUT // 32) ** 2 * 2
# Planted anchors (stride, anchor index, score, distances in stride units).
A_IDX = (10 * 40 + 12) * 2 + 1  # stride 16, row 10, col 12, 2nd anchor: centre (192, 160)
B_IDX = (20 * 80 + 24) * 2  # stride 8, row 20, col 24: centre (192, 160) - same box as A, lower score
C_IDX = (3 * 20 + 4) * 2  # stride 32, row 3, col 4: centre (128, 96)
D_IDX = 1  # stride 32, location (0, 0), 2nd anchor: below the threshold
KPS_A = np.array([-1, -1, 1, -1, 0, 0, -1, 1.5, 1, 1.5], np.float32)


class _TinySCRFD(torch.nn.Module):
    """Real SCRFD I/O: [1, 3, 640, 640] -> 9 outputs [A, 1] x3, [A, 4] x3, [A, 10] x3 (strides 8, 16, 32).

    Outputs are planted constants, except the score of stride-8 anchor 0 = (x[0, 0, 0, 0] + 1) / 2:
    the normalised *red* value of the top-left input pixel (so the channel order and the
    normalisation are observable).
    """

    def __init__(self):
        super().__init__()
        s8, s16, s32 = torch.zeros(N8, 1), torch.zeros(N16, 1), torch.zeros(N32, 1)
        b8, b16, b32 = torch.zeros(N8, 4), torch.zeros(N16, 4), torch.zeros(N32, 4)
        k8, k16, k32 = torch.zeros(N8, 10), torch.zeros(N16, 10), torch.zeros(N32, 10)
        s16[A_IDX], b16[A_IDX], k16[A_IDX] = 0.9, torch.tensor([2.0, 3, 2, 3]), torch.from_numpy(KPS_A)
        s8[B_IDX], b8[B_IDX] = 0.8, torch.tensor([4.0, 6, 4, 6])
        s32[C_IDX], b32[C_IDX] = 0.7, torch.tensor([1.0, 1, 1, 1])
        s32[D_IDX], b32[D_IDX] = 0.49, torch.tensor([1.0, 1, 1, 1])
        b8[0] = torch.tensor([1.0, 1, 1, 1])
        self.outs = [s8, s16, s32, b8, b16, b32, k8, k16, k32]
        self.probe = torch.zeros(N8, 1)
        self.probe[0] = 1.0

    def forward(self, x):
        zero = x.mean() * 0
        outs = [o + zero for o in self.outs]
        outs[0] = outs[0] + self.probe * (x[0, 0, 0, 0] + 1) / 2
        return tuple(outs)


@pytest.fixture(scope="module")
def scrfd_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scrfd") / "tiny_scrfd.onnx"
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    return _export(_TinySCRFD().eval(), path, (1, 3, INPUT, INPUT), names, False)


def test_scrfd_decoding_nms_and_rescaling(scrfd_file):
    img = np.zeros((320, 480, 3), np.uint8)  # letterboxed to 640 x 426, scale 426/320
    img[:16, :16, 0] = 255  # red corner: the RGB probe anchor fires
    det = SCRFDDetector(model_path=scrfd_file, device="cpu")
    (faces,) = det.detect([img])
    scale = 426 / 320
    assert len(faces) == 3  # B suppressed by A (same box), D below 0.5
    e, a, c = faces
    assert e.score == pytest.approx((1 + 127.5 / 128) / 2, abs=1e-5)  # RGB order and (x - 127.5) / 128
    np.testing.assert_allclose(e.box, np.array([-8, -8, 8, 8]) / scale, atol=1e-4)
    assert a.score == pytest.approx(0.9)
    np.testing.assert_allclose(a.box, np.array([160, 112, 224, 208]) / scale, atol=1e-4)
    kps = (np.array([192, 160]) + KPS_A.reshape(5, 2) * 16) / scale
    np.testing.assert_allclose(a.landmarks5, kps, atol=1e-4)
    assert c.score == pytest.approx(0.7)
    np.testing.assert_allclose(c.box, np.array([96, 64, 160, 128]) / scale, atol=1e-4)


def test_scrfd_bgr_input_would_not_fire_the_probe(scrfd_file):
    img = np.zeros((320, 480, 3), np.uint8)
    img[:16, :16, 2] = 255  # blue corner: the model's channel 0 (red) is black
    (faces,) = SCRFDDetector(model_path=scrfd_file, device="cpu").detect([img])
    assert [round(f.score, 2) for f in faces] == [0.9, 0.7]


def test_scrfd_higher_threshold_and_portrait_letterbox(scrfd_file):
    img = np.zeros((500, 250, 3), np.uint8)  # portrait: height fills 640, scale 640/500
    (faces,) = SCRFDDetector(model_path=scrfd_file, device="cpu", score_threshold=0.85).detect([img])
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, np.array([160, 112, 224, 208]) * 500 / 640, atol=1e-4)


def test_letterbox_and_anchor_layout():
    img = np.full((100, 200, 3), 200, np.uint8)
    canvas, scale = letterbox(img, 640)
    assert scale == pytest.approx(320 / 100)
    assert (canvas[:320] == 200).all() and (canvas[320:] == 0).all()
    c = anchor_centers(2, 3, 8)
    np.testing.assert_array_equal(c[:4], [[0, 0], [0, 0], [8, 0], [8, 0]])
    np.testing.assert_array_equal(c[-1], [16, 8])
