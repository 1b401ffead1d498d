"""MTCNN's vectorised R-/O-Net crop (summed-area table) vs the per-box ``F.interpolate(mode="area")``
loop it replaces (facenet-pytorch's crop, kept as ``mtcnn.crop_resize_per_box``).

Documented tolerance (mtcnn._crop_resize): one float32 ulp at 255, i.e. 2**-16 on the 0..255 scale,
2**-23 (1.2e-7) after MTCNN's normalisation; on the CPU the two are measured bit-identical.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from stellar.models.faces import mtcnn
from stellar.models.faces.mtcnn import _crop_resize, _integral_image, crop_resize_per_box

TOL = 2.0**-23  # on normalised crops: one float32 ulp at 255, divided by 128


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    # NHWC uint8 -> NCHW float view, exactly as MTCNNDetector builds its input
    return torch.as_tensor(arr).permute(0, 3, 1, 2).float()


def _compare(images, boxes, image_idx, size):
    ref, ref_valid = crop_resize_per_box(images, boxes, image_idx, size)
    got, valid = _crop_resize(_integral_image(images), boxes, image_idx, size)
    assert torch.equal(valid, ref_valid)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert got.is_contiguous()  # same memory layout as the loop's output -> same convolution path
    diff = (got - ref).abs().max().item() if ref.numel() else 0.0
    assert diff <= TOL, diff
    return diff


def _border_and_size_boxes(height: int, width: int) -> torch.Tensor:
    """Boxes touching and overhanging every border, tiny (1-3 px, sub-pixel), huge (larger than the
    image), wholly outside (dropped), with fractional coordinates (truncated like the reference)."""
    rows = [
        (0, 0, 10, 10),  # top-left corner, x=0 clipped to 1
        (-15.7, -3.2, 20.9, 33.1),  # overhangs top and left
        (width - 12, height - 12, width + 0.0, height + 0.0),  # touches bottom-right
        (width - 30, 5, width + 40.5, 75),  # overhangs right
        (5, height - 20, 60, height + 100),  # overhangs bottom
        (-500, -500, width + 500, height + 500),  # huge: whole image
        (-3, 40, width + 3, 41.9),  # 1-2 rows tall, full width
        (17, 17, 17.9, 17.9),  # sub-pixel -> one pixel
        (30, 30, 31, 32),  # 2x3 px, upsampled to size
        (3.5, 2.5, 5.5, 4.5),  # tiny, fractional
        (width + 5, 10, width + 50, 40),  # wholly right of the image: invalid
        (10, -80, 40, -1),  # wholly above: invalid
        (-60, 10, -1, 40),  # wholly left: invalid
        (10, height, 40, height + 30),  # starts on the bottom edge row + 1: invalid
        (width // 3, height // 4, width // 3 + 137, height // 4 + 137),  # ordinary square face box
        (0.99, 0.99, width - 0.01, height - 0.01),  # almost the whole image
    ]
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("size", [24, 48])
@pytest.mark.parametrize("shape", [(97, 131), (512, 512), (300, 1024)])
def test_crop_matches_per_box_interpolation_on_border_tiny_and_huge_boxes(size, shape):
    height, width = shape
    images = _images(2, height, width, seed=height)
    boxes = _border_and_size_boxes(height, width)
    image_idx = torch.tensor([k % 2 for k in range(len(boxes))])
    assert _compare(images, boxes, image_idx, size) == 0.0  # bit-identical on the CPU (torch's kernel order)


@pytest.mark.parametrize("size", [24, 48])
def test_crop_matches_on_random_candidate_boxes(size):
    """Random boxes as the cascade makes them (square, fractional, some overhanging) on a batch."""
    height, width = 333, 457
    images = _images(3, height, width, seed=7)
    g = torch.Generator().manual_seed(size)
    n = 400
    side = torch.exp(torch.empty(n).uniform_(0.0, np.log(600.0), generator=g))  # 1 .. 600 px
    cx = torch.empty(n).uniform_(-40, width + 40, generator=g)
    cy = torch.empty(n).uniform_(-40, height + 40, generator=g)
    boxes = torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)
    image_idx = torch.randint(0, 3, (n,), generator=g)
    assert _compare(images, boxes, image_idx, size) == 0.0


def test_crop_of_large_image_uses_exact_sums_past_float32_integers():
    """Integral sums of a 1100² white image exceed 2**24 (the end of float32's exact integers); the
    crops still match the loop, since each sum is exact in the integer table."""
    images = torch.full((1, 3, 1100, 1100), 255.0).contiguous(memory_format=torch.channels_last)
    images[0, 1, 500:600, 700:1100] = 3.0
    table = _integral_image(images)
    assert table.dtype == torch.int32 and int(table[0, -1, -1, 0]) == 255 * 1100 * 1100 > 2**24
    boxes = torch.tensor([[900.0, 450.0, 1200.0, 750.0], [-10.0, -10.0, 1200.0, 1200.0], [690, 490, 701, 501]])
    for size in (24, 48):
        assert _compare(images, boxes, torch.zeros(3, dtype=torch.int64), size) == 0.0


def test_table_switches_to_int64_when_int32_could_overflow():
    """255 * H * W >= 2**31 (here one channel of 2900 x 2910, 8.4 Mpx) -> an int64 table, still exact."""
    images = torch.full((1, 1, 2900, 2910), 255.0)
    table = _integral_image(images)
    assert table.dtype == torch.int64 and int(table[0, -1, -1, 0]) == 255 * 2900 * 2910 >= 2**31
    boxes = torch.tensor([[-5.0, -5.0, 3000.0, 3000.0], [2800.0, 2800.0, 2950.0, 2950.0]])
    for size in (24, 48):
        assert _compare(images, boxes, torch.zeros(2, dtype=torch.int64), size) == 0.0


def test_no_valid_box_gives_an_empty_batch():
    images = _images(1, 50, 60)
    boxes = torch.tensor([[100.0, 100.0, 120.0, 120.0], [-30.0, -30.0, -5.0, -5.0]])
    got, valid = _crop_resize(_integral_image(images), boxes, torch.zeros(2, dtype=torch.int64), 24)
    assert got.shape == (0, 3, 24, 24) and valid.tolist() == [False, False]


def _oracle_weights() -> dict[str, Path] | None:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        return None
    data = Path(spec.submodule_search_locations[0]) / "data"
    return {n: data / f"{n}.pt" for n in ("pnet", "rnet", "onet")}


def test_detector_with_vectorised_crop_equals_the_per_box_loop(monkeypatch):
    """End to end on real photos: the cascade gives identical detections with either crop."""
    weights = _oracle_weights()
    if weights is None:
        pytest.skip("facenet-pytorch (the MTCNN weights' wheel) is not installed")
    skimage_data = pytest.importorskip("skimage.data")
    det = mtcnn.MTCNNDetector(device="cpu", weights=weights)
    photos = [skimage_data.astronaut(), np.ascontiguousarray(skimage_data.chelsea()), np.ascontiguousarray(skimage_data.coffee())]
    fast = [det.detect([p])[0] for p in photos]

    # the cascade as before: the float images go straight to the per-box loop
    monkeypatch.setattr(mtcnn, "_integral_image", lambda images: images)
    monkeypatch.setattr(mtcnn, "_crop_resize", crop_resize_per_box)
    slow = [det.detect([p])[0] for p in photos]
    assert sum(len(f) for f in fast) >= 1
    for a, b in zip(fast, slow):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert np.array_equal(x.box, y.box) and x.score == y.score
            assert np.array_equal(x.landmarks5, y.landmarks5)
