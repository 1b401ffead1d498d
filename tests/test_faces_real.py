"""Real-photo behaviour of the face stack (offline preset = MTCNN + dlib-resnet-v1, real weights).

Photos: the demo dataset of ``stellar.data.samples`` (fixture ``demo_dataset``): Eileen Collins,
Grace Hopper, Lav Varshney (profile, grey), Luis Pedro Coelho, Barack Obama ×3, Joe Biden.
What each detector does on them (pinned below, measured with the package-shipped weights):

======================  =====  ======  =======  =======  ======  ======  ======  =====
photo                   000/0  001/0   002/0    003/0    004/0   004/1   004/2   005/0
======================  =====  ======  =======  =======  ======  ======  ======  =====
mtcnn                   1      1       1        1        2 (a)   1       1       1
dlib-hog                2 (b)  1       0 (c)    1        1       1       1       1
dlib-cnn (d)            1      1       1        1        1       1       1       1
======================  =====  ======  =======  =======  ======  ======  ======  =====

(a) plus a small false positive in the blurred background (score 0.82); the largest face is Obama.
(b) plus the round mission patch on her sleeve (margin 0.12, score 0.53), almost as large as her face.
(c) the camera photo is a profile: HOG (a frontal-face model) misses it; MTCNN and the CNN find it.
(d) upsample 0 on photos scaled to at most 512 px (CPU time); at full size with upsample 1, also 1 each.
"""

from __future__ import annotations

import io
from itertools import combinations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

pytest.importorskip("dlib")
pytest.importorskip("torch")

from stellar.data.samples import DEMO_PHOTOS  # noqa: E402
from stellar.images import load_image  # noqa: E402
from stellar.models.faces import FaceAnalyzer, cosine_similarity  # noqa: E402

EXPECTED_FACES = {
    "mtcnn": [1, 1, 1, 1, 2, 1, 1, 1],
    "dlib-hog": [2, 1, 0, 1, 1, 1, 1, 1],
    "dlib-cnn": [1, 1, 1, 1, 1, 1, 1, 1],
}


@pytest.fixture(scope="module")
def photos(demo_dataset):
    return [np.asarray(load_image(demo_dataset / p.subject / f"{p.index}.jpg")) for p in DEMO_PHOTOS]


@pytest.fixture(scope="module")
def offline():
    return FaceAnalyzer.from_preset("offline", device="cpu")


@pytest.fixture(scope="module")
def offline_faces(offline, photos):
    return offline.analyze(photos)


def _head_distance(photo, face) -> float:
    """Distance of the face box centre from the photo's head ellipse centre, in ellipse radii."""
    cx, cy, rx, ry = photo.head
    if photo.crop is not None:
        cx, cy = cx - photo.crop[0], cy - photo.crop[1]
    x = (face.box[0] + face.box[2]) / 2
    y = (face.box[1] + face.box[3]) / 2
    return float(np.hypot((x - cx) / rx, (y - cy) / ry))


def test_mtcnn_face_counts_and_largest_face_is_the_person(offline_faces):
    assert [len(f) for f in offline_faces] == EXPECTED_FACES["mtcnn"]
    for photo, faces in zip(DEMO_PHOTOS, offline_faces):
        assert _head_distance(photo, faces[0]) < 0.6, photo.origin
        assert faces[0].embedding.shape == (128,)
        assert np.linalg.norm(faces[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_same_person_pairs_beat_every_different_person_pair(offline_faces):
    emb = np.stack([f[0].embedding for f in offline_faces])
    sims = cosine_similarity(emb, emb)
    subjects = [p.subject for p in DEMO_PHOTOS]
    same = [sims[i, j] for i, j in combinations(range(len(subjects)), 2) if subjects[i] == subjects[j]]
    different = [sims[i, j] for i, j in combinations(range(len(subjects)), 2) if subjects[i] != subjects[j]]
    assert len(same) == 3 and len(different) == 25
    assert min(same) > max(different), (sorted(same), sorted(different)[-3:])


def _augment(img: np.ndarray, kind: str) -> np.ndarray:
    im = Image.fromarray(img)
    if kind == "flip":
        im = ImageOps.mirror(im)
    elif kind == "crop90":
        w, h = im.size
        dx, dy = round(w * 0.05), round(h * 0.05)
        im = im.crop((dx, dy, w - dx, h - dy))
    elif kind == "bright1.3":
        im = ImageEnhance.Brightness(im).enhance(1.3)
    elif kind == "jpeg30":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=30)
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(im)


AUGMENTED = [1, 3, 4, 7]  # Hopper, Coelho, Obama 0, Biden (frontal photos of four people)


def test_augmented_copies_stay_above_every_different_person_pair(offline, offline_faces, photos):
    emb = np.stack([f[0].embedding for f in offline_faces])
    sims = cosine_similarity(emb, emb)
    subjects = [p.subject for p in DEMO_PHOTOS]
    max_different = max(sims[i, j] for i, j in combinations(range(8), 2) if subjects[i] != subjects[j])
    kinds = ["flip", "crop90", "bright1.3", "jpeg30"]
    augmented = [_augment(photos[i], k) for i in AUGMENTED for k in kinds]
    faces = offline.analyze(augmented)
    for n, (i, kind) in enumerate((i, k) for i in AUGMENTED for k in kinds):
        assert faces[n], (DEMO_PHOTOS[i].origin, kind)
        s = float(faces[n][0].embedding @ emb[i])
        assert s > max_different, (DEMO_PHOTOS[i].origin, kind, s, max_different)


def test_dlib_hog_face_counts(photos):
    an = FaceAnalyzer("dlib-hog", "dlib-resnet-v1", device="cpu")
    faces = an.analyze(photos)
    assert [len(f) for f in faces] == EXPECTED_FACES["dlib-hog"]
    for photo, f in zip(DEMO_PHOTOS, faces):
        if f:  # the largest is the person (on the astronaut, her face beats the patch by 90 px²)
            assert _head_distance(photo, f[0]) < 0.6, photo.origin


def test_dlib_cnn_face_counts(photos):
    from stellar.models.faces.dlib_backend import DlibCNNDetector

    small = []
    for img in photos:
        im = Image.fromarray(img)
        im.thumbnail((512, 512), Image.BILINEAR)
        small.append(np.asarray(im))
    det = DlibCNNDetector(upsample=0)
    assert [len(d) for d in det.detect(small)] == EXPECTED_FACES["dlib-cnn"]


def test_no_face_on_blank_or_noise(offline):
    from stellar.models.faces.dlib_backend import DlibCNNDetector, DlibHOGDetector

    blank = np.full((256, 256, 3), 200, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert offline.analyze([blank, noise]) == [[], []]
    assert DlibHOGDetector().detect([blank, noise]) == [[], []]
    assert DlibCNNDetector(upsample=0).detect([blank, noise]) == [[], []]
