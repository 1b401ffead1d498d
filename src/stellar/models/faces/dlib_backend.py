"""dlib face models: HOG and CNN (MMOD) detectors and the ResNet 128-d embedder.

All four model files ship on PyPI inside ``face-recognition-models==0.3.0`` (dlib's models, CC0 /
public domain per its README), so this backend works offline once the packages are installed
(King, *Dlib-ml*, JMLR 2009; the ResNet descriptor reaches 99.38% on LFW per dlib's release notes).

- ``dlib-hog`` (:class:`DlibHOGDetector`): ``dlib.get_frontal_face_detector()`` run with
  ``upsample`` (default 1) and ``adjust_threshold`` (default 0, dlib's decision threshold).
- ``dlib-cnn`` (:class:`DlibCNNDetector`): ``mmod_human_face_detector.dat`` with ``upsample``
  (default 1). On CPU it is slow (seconds per 512² image on 2 cores).
- **Scores.** Both detectors return an SVM-style margin (any real number; > 0 = face at dlib's
  default threshold). :class:`~stellar.models.faces.base.Detection` wants a confidence in [0, 1],
  so ``score = sigmoid(margin)``: monotone, 0.5 at dlib's threshold. It is *not* a calibrated
  probability and is not comparable with MTCNN's or SCRFD's scores.
- **Landmarks.** dlib's 5-point predictor (``shape_predictor_5_face_landmarks.dat``) gives the two
  corners of each eye and the bottom of the nose (parts 0-1: image-right eye, 2-3: image-left eye,
  4: nose). We report left eye = mean(p2, p3), right eye = mean(p0, p1), nose = p4 (below the tip
  other detectors report) and *estimate* the two mouth corners: the similarity fitted from the
  ArcFace template's eyes+nose to these three points maps the template's mouth corners into the
  image. This keeps the shared 5-point order so that every detector can feed every embedder; the
  estimated corners are only as good as that rigid model.
- ``dlib-resnet-v1`` (:class:`DlibResNetEmbedder`): for each detection, from *any* detector, the
  5-point predictor runs inside the detection's box; ``dlib.get_face_chip(img, shape, size=150,
  padding=0.25)`` gives the aligned chip and ``face_recognition_model_v1.compute_face_descriptor``
  embeds a batch of chips. This is bit-identical to passing the shape directly (which builds the same
  chip internally; tested). dlib's raw 128-d descriptors are *not* unit norm (≈0.9-1.5 measured
  here), so they are L2-normalised; cosine similarity is then the analyzer's similarity.
  The shape predictor was trained on dlib-detector boxes; MTCNN boxes are looser (forehead, chin),
  which the 5-point predictor tolerates (see ``tests/test_faces_real.py`` for the behaviour).

Weights come from the registry cards ``dlib-shape-predictor-5``, ``dlib-mmod-cnn`` and
``dlib-resnet-v1`` (or an explicit ``models_dir`` holding the ``.dat`` files, e.g. the
``face_recognition_models/models`` folder of the installed package).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.errors import MissingDependencyError, StellarError
from stellar.models.faces.arcface import ARCFACE_TEMPLATE_112, l2_normalise, umeyama_similarity
from stellar.models.faces.base import Detection, regroup

#: file name -> registry card that provides it.
DLIB_FILES = {
    "shape_predictor_5_face_landmarks.dat": "dlib-shape-predictor-5",
    "mmod_human_face_detector.dat": "dlib-mmod-cnn",
    "dlib_face_recognition_resnet_model_v1.dat": "dlib-resnet-v1",
}


def _dlib():
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError("dlib-bin", "dlib", "The dlib face models (dlib-hog, dlib-cnn, dlib-resnet-v1)") from None
    return dlib


def dlib_weights(filename: str, models_dir: str | Path | None = None) -> Path:
    """Path of a dlib ``.dat`` file: ``models_dir/filename`` when given, else the registry's cached copy."""
    if models_dir is not None:
        path = Path(models_dir) / filename
        if not path.is_file():
            raise StellarError(f"{path}: dlib model file not found\n  fix: point models_dir at a folder holding {filename}")
        return path
    from stellar.models.registry import resolve_file

    return Path(resolve_file(DLIB_FILES[filename], filename))


def packaged_models_dir() -> Path | None:
    """The ``models/`` folder of the installed ``face_recognition_models`` package, if any."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models"
    return path if path.is_dir() else None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-float(x)))


def _rect(box: np.ndarray):
    dlib = _dlib()
    x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
    return dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))


def landmarks5_from_dlib_shape(shape) -> np.ndarray:
    """Shared 5-point order from dlib's 5-point shape; mouth corners estimated (module docstring)."""
    p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
    eyes_nose = np.stack([(p[2] + p[3]) / 2, (p[0] + p[1]) / 2, p[4]])
    m = umeyama_similarity(ARCFACE_TEMPLATE_112[:3], eyes_nose)
    mouth = ARCFACE_TEMPLATE_112[3:] @ m[:, :2].T + m[:, 2]
    return np.vstack([eyes_nose, mouth]).astype(np.float32)


class _DlibDetectorBase:
    name = "dlib"

    def __init__(self, models_dir: str | Path | None, upsample: int):
        dlib = _dlib()
        self.upsample = int(upsample)
        sp = dlib_weights("shape_predictor_5_face_landmarks.dat", models_dir)
        self.shape_predictor = dlib.shape_predictor(str(sp))
        self.weight_files: tuple[Path, ...] = (sp,)  # what the analyzer's protocol identifies (sha256)

    def _detections(self, img: np.ndarray, rects_scores) -> list[Detection]:
        out = []
        for rect, margin in rects_scores:
            shape = self.shape_predictor(img, rect)
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float32)
            out.append(Detection(box=box, score=_sigmoid(margin), landmarks5=landmarks5_from_dlib_shape(shape)))
        return out


class DlibHOGDetector(_DlibDetectorBase):
    """dlib's HOG + linear-SVM frontal face detector (``dlib-hog``)."""

    name = "dlib-hog"

    def __init__(self, models_dir: str | Path | None = None, upsample: int = 1, adjust_threshold: float = 0.0, device: str | None = None):
        super().__init__(models_dir, upsample)
        self.adjust_threshold = float(adjust_threshold)
        self.detector = _dlib().get_frontal_face_detector()
        self.protocol = f"dlib-hog:upsample{self.upsample},thr{self.adjust_threshold:g},sp5"

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        results = []
        for img in images:
            img = np.ascontiguousarray(img, dtype=np.uint8)
            rects, margins, _ = self.detector.run(img, self.upsample, self.adjust_threshold)
            results.append(self._detections(img, zip(rects, margins)))
        return results


class DlibCNNDetector(_DlibDetectorBase):
    """dlib's max-margin object detector CNN (``mmod_human_face_detector.dat``, ``dlib-cnn``)."""

    name = "dlib-cnn"

    def __init__(self, models_dir: str | Path | None = None, upsample: int = 1, device: str | None = None):
        super().__init__(models_dir, upsample)
        mmod = dlib_weights("mmod_human_face_detector.dat", models_dir)
        self.detector = _dlib().cnn_face_detection_model_v1(str(mmod))
        self.weight_files = (*self.weight_files, mmod)
        self.protocol = f"dlib-cnn[mmod_human_face_detector.dat]:upsample{self.upsample},sp5"

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        results = []
        for img in images:
            img = np.ascontiguousarray(img, dtype=np.uint8)
            dets = self.detector(img, self.upsample)
            results.append(self._detections(img, ((d.rect, d.confidence) for d in dets)))
        return results


class DlibResNetEmbedder:
    """dlib's ResNet face descriptor (``dlib-resnet-v1``, 128-d) on 150×150 5-point chips.

    Args:
        models_dir: folder holding the ``.dat`` files; default: the registry.
        device: ignored (the ``dlib-bin`` wheel is CPU-only); accepted for a uniform interface.
        padding: chip padding (dlib's default 0.25).
    """

    name = "dlib-resnet-v1"
    dim = 128

    def __init__(self, models_dir: str | Path | None = None, device: str | None = None, padding: float = 0.25):
        dlib = _dlib()
        self.padding = float(padding)
        sp = dlib_weights("shape_predictor_5_face_landmarks.dat", models_dir)
        net = dlib_weights("dlib_face_recognition_resnet_model_v1.dat", models_dir)
        self.shape_predictor = dlib.shape_predictor(str(sp))
        self.model = dlib.face_recognition_model_v1(str(net))
        self.weight_files = (sp, net)  # what the analyzer's protocol identifies (sha256)
        self.protocol = f"dlib-resnet-v1[dlib_face_recognition_resnet_model_v1.dat]:sp5-in-box,chip150,pad{self.padding:g},l2"

    def shapes(self, image: np.ndarray, detections: Sequence[Detection]) -> list:
        """dlib 5-point shapes predicted inside each detection box."""
        return [self.shape_predictor(image, _rect(d.box)) for d in detections]

    def align(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[list[np.ndarray]]:
        """Per image, the 150×150 uint8 dlib chip of each detection."""
        dlib = _dlib()
        crops = []
        for img, dets in zip(images, detections):
            img = np.ascontiguousarray(img, dtype=np.uint8)
            crops.append([dlib.get_face_chip(img, s, size=150, padding=self.padding) for s in self.shapes(img, dets)])
        return crops

    def embed_aligned(self, crops: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        flat = [np.ascontiguousarray(c) for row in crops for c in row]
        if flat:
            vecs = l2_normalise(np.array([np.array(v) for v in self.model.compute_face_descriptor(flat)], dtype=np.float32))
        else:
            vecs = np.zeros((0, self.dim), dtype=np.float32)
        return regroup(vecs, crops)

    def embed(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[np.ndarray]:
        return self.embed_aligned(self.align(images, detections))

    def raw_descriptors(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """dlib's un-normalised descriptors computed from the shapes directly (dlib builds the chip)."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        vecs = [np.array(self.model.compute_face_descriptor(image, s, 0, self.padding)) for s in self.shapes(image, detections)]
        return np.array(vecs, dtype=np.float32).reshape(len(vecs), self.dim)
