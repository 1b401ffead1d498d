"""Sanity methods copy / noise / paste, the Method protocol, job seeds and the method registry."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from stellar.data.dataset import StellarDataset, load_mask
from stellar.errors import StellarError
from stellar.generate import Method, UnknownMethodError, create_method, job_seed, list_methods, resolve_device
from stellar.images import load_image


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def _job(ds: StellarDataset, subject: str, photo: int, prompt: int = 0):
    return next(j for j in ds.jobs("test") if j.subject == subject and j.photo.index == photo and j.prompt.index == prompt)


# ------------------------------------------------------------------------------------------- registry
def test_registry_lists_and_creates_methods():
    assert list_methods() == ["copy", "noise", "paste", "stellarnet"]
    for name in ("copy", "noise", "paste"):
        method = create_method(name, size=64)
        assert isinstance(method, Method) and method.name == name
        assert method.settings["size"] == 64


def test_unknown_method_lists_valid_names():
    with pytest.raises(UnknownMethodError) as info:
        create_method("noize")
    assert "copy, noise, paste" in str(info.value) and "Did you mean 'noise'" in str(info.value)


def test_bad_settings_are_typed_errors():
    with pytest.raises(StellarError):
        create_method("copy", size=0)
    with pytest.raises(StellarError):
        create_method("noise", size=64, cell=0)
    with pytest.raises(StellarError, match="scene"):
        create_method("paste", scene="beach")
    with pytest.raises(StellarError, match="does not take setting.*size"):
        create_method("stellarnet", checkpoint="ckpt", size=64)


def test_resolve_device():
    torch = pytest.importorskip("torch")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")


def test_job_seed_is_stable_and_distinct(synthetic):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test", seeds=2)
    seeds = [job_seed(0, j) for j in jobs]
    assert len(set(seeds)) == len(jobs)
    assert all(0 <= s < 2**63 for s in seeds)
    j = jobs[3]
    expected = int.from_bytes(hashlib.sha256(f"7|{j.subject}|{j.photo.index}|{j.prompt.index}|{j.seed}".encode()).digest()[:8], "big") >> 1
    assert job_seed(7, j) == expected != job_seed(8, j)


# ------------------------------------------------------------------------------------------- noise
def test_noise_is_deterministic_per_job_and_seed(synthetic):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test")[:4]
    a = create_method("noise", size=48, cell=1)
    b = create_method("noise", size=48, cell=1)
    first = [_arr(im) for im in a.generate(jobs, seed=0)]
    again = [_arr(im) for im in b.generate(jobs[2:3], seed=0)]  # other instance, other batch
    assert np.array_equal(first[2], again[0])
    assert all(im.shape == (48, 48, 3) for im in first)
    for i in range(len(first)):
        for k in range(i + 1, len(first)):
            assert not np.array_equal(first[i], first[k])
    other_seed = _arr(a.generate(jobs[:1], seed=1)[0])
    assert not np.array_equal(first[0], other_seed)
    # uniform noise: mean near 127.5, all values used
    assert abs(first[0].mean() - 127.5) < 5 and len(np.unique(first[0])) > 200


def test_noise_cells_are_constant_blocks(synthetic):
    ds = StellarDataset(synthetic)
    im = _arr(create_method("noise", size=50, cell=4).generate(ds.jobs("test")[:1], seed=0)[0])
    assert im.shape == (50, 50, 3)
    assert np.array_equal(im[0:4, 0:4], np.broadcast_to(im[0, 0], (4, 4, 3)))
    assert not np.array_equal(im[0, 0], im[0, 4]) or not np.array_equal(im[0, 0], im[4, 0])


# ------------------------------------------------------------------------------------------- copy
def test_copy_returns_the_square_input_photo_unchanged(demo_dataset):
    ds = StellarDataset(demo_dataset)
    job = _job(ds, "000", 0)  # the astronaut photo is 512x512
    out = create_method("copy", size=512).generate([job], seed=0)[0]
    assert np.array_equal(_arr(out), _arr(load_image(job.photo.path)))


def test_copy_crops_a_tall_photo_around_the_subject(demo_dataset):
    ds = StellarDataset(demo_dataset)
    job = _job(ds, "004", 1)  # obama2.jpg: 626 x 1200, head in the upper part
    photo = load_image(job.photo.path)
    w, h = photo.size
    ys, _ = np.nonzero(load_mask(job.photo))
    top = int(round(min(max((ys.min() + ys.max() + 1) / 2 - w / 2, 0), h - w)))
    expected = photo.crop((0, top, w, top + w))
    out = create_method("copy", size=w).generate([job], seed=0)[0]
    assert out.size == (w, w)
    assert np.array_equal(_arr(out), _arr(expected))
    small = create_method("copy", size=128).generate([job], seed=0)[0]
    assert small.size == (128, 128)
    assert np.abs(_arr(small) - _arr(expected.resize((128, 128), Image.LANCZOS))).mean() < 1.0
    # the whole head is in the copy: the mask rows fit in the crop
    assert top <= ys.min() and ys.max() < top + w


# ------------------------------------------------------------------------------------------- paste
def test_paste_contains_the_face_crop_on_the_scene(demo_dataset):
    ds = StellarDataset(demo_dataset)
    size, fraction = 256, 0.5
    method = create_method("paste", size=size, fraction=fraction)
    method.setup("cpu")
    jobs = [_job(ds, "001", 0), _job(ds, "005", 0)]
    outs = [_arr(im) for im in method.generate(jobs, seed=0)]
    for job, out in zip(jobs, outs):
        assert out.shape == (size, size, 3)
        photo = load_image(job.photo.path)
        ys, xs = np.nonzero(load_mask(job.photo))
        face = photo.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        scale = fraction * size / max(face.size)
        fw, fh = round(face.width * scale), round(face.height * scale)
        left, top = (size - fw) // 2, (size - fh) // 2
        expected = _arr(face.resize((fw, fh), Image.LANCZOS))
        region = out[top : top + fh, left : left + fw]
        assert np.abs(region - expected).mean() < 1.0
    # outside the face box both outputs show the same scene, and it is not a flat image
    corner = (slice(0, 40), slice(0, 40))
    assert np.array_equal(outs[0][corner], outs[1][corner])
    assert outs[0][corner].std() > 5
    # the same job twice gives the same image (nothing random in paste)
    assert np.array_equal(outs[0], _arr(method.generate(jobs[:1], seed=5)[0]))
