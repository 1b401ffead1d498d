"""NMS: torchvision's C++ kernel (used when importable, CPU) vs the plain torch loop (the fallback):
identical kept indices, in the same order, on random boxes, ties and degenerate boxes; batched
results equal per-image results; MTCNN detections identical with and without torchvision."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from stellar.models.faces import boxes as boxes_mod
from stellar.models.faces.boxes import batched_nms, nms, nms_reference

tv_ops = pytest.importorskip("torchvision.ops")


def _random_boxes(n: int, gen: torch.Generator, spread: float = 100.0, dtype=torch.float32) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * spread
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 40 + 0.5
    return torch.cat([xy, xy + wh], 1).to(dtype)


@pytest.fixture
def without_torchvision(monkeypatch):
    monkeypatch.setattr(boxes_mod, "torchvision_nms", lambda: None)


def test_the_fast_path_is_torchvision_when_importable():
    assert boxes_mod.torchvision_nms() is tv_ops.nms


@pytest.mark.parametrize("n", [1, 2, 7, 300, 2000])
@pytest.mark.parametrize("ties", [False, True])
def test_reference_loop_equals_torchvision_on_random_boxes_and_ties(n, ties):
    gen = torch.Generator().manual_seed(n + 1000 * ties)
    boxes = _random_boxes(n, gen)
    scores = torch.randint(0, 4, (n,), generator=gen).float() if ties else torch.rand(n, generator=gen)
    for thr in (0.0, 0.3, 0.5, 0.7, 1.0):
        ref = nms_reference(boxes, scores, thr)
        assert torch.equal(ref, tv_ops.nms(boxes, scores, thr)), (n, ties, thr)
        assert torch.equal(nms(boxes, scores, thr), ref)


def test_union_nms_compares_overlap_with_threshold_in_double_like_torchvision():
    """Regression: IoU 36/100 rounds to float32(0.36) > 0.36 (double); torchvision (facenet-pytorch's
    P/R-stage NMS) suppresses the box, the torch loop compared in float32 and kept it."""
    boxes = torch.tensor([[0, 0, 10, 10], [2, 2, 8, 8]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8])
    assert nms_reference(boxes, scores, 0.36).tolist() == [0] == tv_ops.nms(boxes, scores, 0.36).tolist()
    # the "min" criterion keeps numpy's float32 comparison (facenet-pytorch's nms_numpy keeps both):
    # inclusive-pixel overlap 36 / 100 = float32(0.36), not > float32(0.36)
    boxes = torch.tensor([[0, 0, 9, 9], [4, 4, 13, 13]], dtype=torch.float32)
    assert nms_reference(boxes, scores, 0.36, "min", 1.0, "last").tolist() == [0, 1]


def test_identical_boxes_degenerate_boxes_and_float64():
    # exact duplicates (IoU 1), zero-area boxes (0/0 = NaN overlap must not suppress), and nested boxes
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5], [5, 5, 5, 5], [2, 2, 8, 8], [0, 0, 10, 10.0001], [20, 20, 20, 30]],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.9, 0.8, 0.8, 0.9, 0.5, 0.9])
    for thr in (0.3, 0.36, 0.5, 0.9999):
        assert torch.equal(nms_reference(boxes, scores, thr), tv_ops.nms(boxes, scores, thr))
    gen = torch.Generator().manual_seed(5)
    b64 = _random_boxes(500, gen, dtype=torch.float64)
    s64 = torch.rand(500, generator=gen, dtype=torch.float64)
    assert torch.equal(nms(b64, s64, 0.5), nms_reference(b64, s64, 0.5))


@pytest.mark.parametrize("with_torchvision", [True, False])
def test_batched_nms_equals_per_image_nms(with_torchvision, monkeypatch):
    """Each image's kept boxes are exactly those of NMS on that image alone (no coordinate offsets)."""
    if not with_torchvision:
        monkeypatch.setattr(boxes_mod, "torchvision_nms", lambda: None)
    gen = torch.Generator().manual_seed(3)
    boxes = _random_boxes(900, gen, spread=3000.0)
    scores = torch.randint(0, 50, (900,), generator=gen).float() / 50
    groups = torch.randint(0, 5, (900,), generator=gen)
    keep = batched_nms(boxes, scores, groups, 0.5)
    for g in range(5):
        idx = torch.nonzero(groups == g).flatten()
        alone = idx[nms_reference(boxes[idx], scores[idx], 0.5)]
        assert keep[groups[keep] == g].tolist() == alone.tolist()
    # the merged order is descending score, ties by index: what one global visit produces
    ks = scores[keep]
    assert all(ks[i] > ks[i + 1] or (ks[i] == ks[i + 1] and keep[i] < keep[i + 1]) for i in range(len(keep) - 1))


def test_batched_nms_same_with_and_without_torchvision(monkeypatch):
    gen = torch.Generator().manual_seed(11)
    boxes = _random_boxes(1500, gen, spread=400.0)
    scores = torch.randint(0, 8, (1500,), generator=gen).float()
    groups = torch.randint(0, 3, (1500,), generator=gen)
    fast = batched_nms(boxes, scores, groups, 0.7)
    monkeypatch.setattr(boxes_mod, "torchvision_nms", lambda: None)
    assert torch.equal(batched_nms(boxes, scores, groups, 0.7), fast)


def test_min_criterion_never_goes_to_torchvision(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("torchvision has no 'min' / +1 / tie_break='last' NMS")

    monkeypatch.setattr(boxes_mod, "torchvision_nms", lambda: boom)
    gen = torch.Generator().manual_seed(2)
    boxes, scores = _random_boxes(50, gen), torch.rand(50, generator=gen)
    nms(boxes, scores, 0.7, criterion="min", pixel_offset=1.0, tie_break="last")
    nms(boxes, scores, 0.7, pixel_offset=1.0)
    nms(boxes, scores, 0.7, tie_break="last")


def test_mtcnn_detections_identical_without_torchvision(monkeypatch):
    spec = importlib.util.find_spec("facenet_pytorch")
    skimage_data = pytest.importorskip("skimage.data")
    if spec is None:
        pytest.skip("facenet-pytorch (the MTCNN weights' wheel) is not installed")
    from stellar.models.faces.mtcnn import MTCNNDetector

    data = Path(spec.submodule_search_locations[0]) / "data"
    det = MTCNNDetector(device="cpu", weights={n: data / f"{n}.pt" for n in ("pnet", "rnet", "onet")})
    photos = [skimage_data.astronaut(), np.ascontiguousarray(skimage_data.coffee())]
    fast = det.detect(photos)
    monkeypatch.setattr(boxes_mod, "torchvision_nms", lambda: None)
    slow = det.detect(photos)
    assert sum(len(f) for f in fast) >= 1
    for a, b in zip(fast, slow):
        assert [(d.box.tolist(), d.score, d.landmarks5.tolist()) for d in a] == [
            (d.box.tolist(), d.score, d.landmarks5.tolist()) for d in b
        ]
