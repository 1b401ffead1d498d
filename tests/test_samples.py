"""The real-photo demo dataset (stellar.data.samples): contents, masks, labels, idempotence, download checks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from stellar.data import layout
from stellar.data.dataset import StellarDataset, load_mask
from stellar.data.samples import (
    DEMO_H_PROMPTS,
    DEMO_PHOTOS,
    DEMO_T_PROMPTS,
    FACE_RECOGNITION_SDIST,
    FACE_RECOGNITION_SDIST_SHA256,
    DownloadError,
    DownloadHashError,
    default_download_dir,
    demo_identities,
    fetch_face_recognition_sdist,
    materialize_demo_dataset,
)
from stellar.images import load_image


def _files(root):
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def test_six_identities_eight_photos(demo_dataset):
    ds = StellarDataset(demo_dataset)
    assert sorted(ds.subjects) == ["000", "001", "002", "003", "004", "005"]
    assert len(ds.photos) == 8
    assert [p.index for p in ds.subject("004").photos] == [0, 1, 2]
    assert all(len(ds.subject(s).photos) == 1 for s in ("000", "001", "002", "003", "005"))
    people = {s: i.person for s, i in demo_identities().items()}
    assert people["004"] == "Barack Obama" and people["000"] == "Eileen Collins"
    assert len(set(people.values())) == 6
    for photo in ds.photos:
        assert photo.identity == people[photo.subject]
        assert photo.original_filename
    assert ds.subject("004").photos[2].original_filename.endswith("tests/test_images/obama3.jpg")
    assert ds.subject("000").photos[0].original_filename == "skimage.data.astronaut()"
    assert {s.split for s in ds.subjects.values()} == {"test"}
    assert len(ds.jobs("test")) == 8 * (len(DEMO_T_PROMPTS) + len(DEMO_H_PROMPTS))


def test_strict_load_and_check_have_no_errors(demo_dataset):
    ds = StellarDataset(demo_dataset)  # strict: raises on any error
    problems = ds.check()
    assert [p for p in problems if p.severity == "error"] == []
    # the only warnings: single-photo subjects (SIS = IPS there)
    assert sorted(p.path.rsplit("/", 1)[-1] for p in problems) == ["000", "001", "002", "003", "005"]


def test_prompts_are_stellar_t_and_h_style(demo_dataset):
    ds = StellarDataset(demo_dataset)
    assert 10 <= len(DEMO_T_PROMPTS) <= 14
    for subject in ds.subjects.values():
        t, h = subject.prompts_of("T"), subject.prompts_of("H")
        assert len(t) == len(DEMO_T_PROMPTS) and len(h) == len(DEMO_H_PROMPTS)
        assert [p.index for p in subject.prompts] == list(range(len(t) + len(h)))
        for p in t:
            assert p.template.count("{}") == 1 and p.detectables and len(p.categories) == len(p.detectables)
            assert p.triplets and all(tr[0] == "person" for tr in p.triplets)
            # every annotated object is one of the prompt's detectables and appears in the text
            assert all(tr[2] in p.detectables and tr[2] in p.template for tr in p.triplets)
        assert all(p.template.count("{}") == 1 and not p.detectables for p in h)
    assert len({p for p, _, _, _ in DEMO_T_PROMPTS}) == len(DEMO_T_PROMPTS)
    objects = (demo_dataset / layout.OBJECTS_FILE).read_text().split("\n")
    assert "horse" in objects and "laptop" in objects


def test_aps_attributes_hand_labelled_with_both_classes(demo_dataset):
    ds = StellarDataset(demo_dataset)
    for photo in ds.photos:
        assert set(photo.attributes) == set(layout.APS_ATTRIBUTES)
        assert set(photo.attributes.values()) <= {-1, 1}
    for name in layout.APS_ATTRIBUTES:
        assert {p.attributes[name] for p in ds.photos} == {-1, 1}, name  # APS needs both classes
    male = {p.subject: p.attributes["Male"] for p in ds.photos}
    assert male["000"] == male["001"] == -1 and male["004"] == male["005"] == 1
    assert all(row.reason for row in DEMO_PHOTOS)


def test_masks_are_nonempty_head_ellipses_inside_the_photo(demo_dataset):
    ds = StellarDataset(demo_dataset)
    for photo in ds.photos:
        image = load_image(photo.path)
        with Image.open(photo.mask_path) as m:
            assert m.mode == "P" and m.size == image.size
        mask = load_mask(photo)
        assert mask.shape == (image.height, image.width)
        frac = mask.mean()
        assert 0.02 < frac < 0.7, (photo.path, frac)
        ys, xs = np.nonzero(mask)
        # the head is not cut by the bottom or sides: the ellipse's lowest point is inside the photo
        assert ys.max() < image.height - 1 and xs.min() > 0 and xs.max() < image.width - 1


def test_masks_contain_the_face_a_real_detector_finds(demo_dataset):
    """dlib's HOG frontal detector (no weights needed) finds each frontal face inside the hand-placed mask."""
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    ds = StellarDataset(demo_dataset)
    for photo in ds.photos:
        if photo.subject == "002":  # Lav Varshney is in profile: a frontal detector is not expected to fire
            continue
        image = np.asarray(load_image(photo.path))
        mask = load_mask(photo)
        inside = []
        for d in detector(image, 1):
            cx = min(max((d.left() + d.right()) // 2, 0), mask.shape[1] - 1)
            cy = min(max((d.top() + d.bottom()) // 2, 0), mask.shape[0] - 1)
            inside.append(bool(mask[cy, cx]))
        assert inside.count(True) == 1, (photo.path, inside)


def test_rerun_writes_nothing(demo_dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(demo_dataset, root)
    before = _files(root)
    materialize_demo_dataset(root, progress=False, offline=True)
    assert _files(root) == before
    # a damaged file is repaired, and only that one
    (root / "004" / "1.jpg").write_bytes(b"broken")
    (root / "004" / "1_bg.png").unlink()
    materialize_demo_dataset(root, progress=False, offline=True)
    after = _files(root)
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == ["004/1.jpg", "004/1_bg.png"]
    assert after["004/1.jpg"][1] == before["004/1.jpg"][1]
    assert not list(root.rglob("*.tmp"))


def test_photos_used_whole_are_byte_copies(demo_dataset):
    from matplotlib import cbook

    source = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    assert (demo_dataset / "001" / "0.jpg").read_bytes() == open(source, "rb").read()


def test_cached_sdist_has_the_pinned_hash(demo_dataset):
    cached = default_download_dir() / FACE_RECOGNITION_SDIST
    assert layout.sha256_file(cached) == FACE_RECOGNITION_SDIST_SHA256


def test_tampered_sdist_is_an_error_naming_both_hashes(demo_dataset, tmp_path):
    cache = tmp_path / "downloads"
    cache.mkdir()
    tampered = cache / FACE_RECOGNITION_SDIST
    shutil.copyfile(default_download_dir() / FACE_RECOGNITION_SDIST, tampered)
    with open(tampered, "ab") as f:
        f.write(b"\0")
    actual = layout.sha256_file(tampered)
    with pytest.raises(DownloadHashError) as info:
        fetch_face_recognition_sdist(cache, offline=True)
    message = str(info.value)
    assert FACE_RECOGNITION_SDIST_SHA256 in message and actual in message and str(tampered) in message
    with pytest.raises(DownloadHashError):
        materialize_demo_dataset(tmp_path / "ds", cache_dir=cache, progress=False, offline=True)
    assert not (tmp_path / "ds").exists()  # nothing written before verification


def test_offline_without_cache_names_the_fetch_command(tmp_path):
    cache = tmp_path / "empty-cache"
    with pytest.raises(DownloadError) as info:
        materialize_demo_dataset(tmp_path / "ds", cache_dir=cache, progress=False, offline=True)
    assert f"pip download --no-deps --no-binary :all: face_recognition==1.3.0 -d {cache}" in str(info.value)
    assert "include_face_recognition=False" in str(info.value)


def test_without_face_recognition_only_when_asked(tmp_path):
    root = materialize_demo_dataset(
        tmp_path / "ds", cache_dir=tmp_path / "empty-cache", include_face_recognition=False, progress=False, offline=True
    )
    ds = StellarDataset(root)
    assert sorted(ds.subjects) == ["000", "001", "002", "003"]
    assert sorted(demo_identities(include_face_recognition=False)) == ["000", "001", "002", "003"]
    assert [p for p in ds.check() if p.severity == "error"] == []
    assert not (tmp_path / "empty-cache").exists()  # nothing fetched
