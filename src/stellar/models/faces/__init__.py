"""Face analysis: detectors, embedders and :class:`FaceAnalyzer` (DESIGN §4).

Importing this package loads no model and no heavy dependency: the backends (torch, dlib,
onnxruntime) are imported when a detector / embedder is built.

>>> from stellar.models.faces import FaceAnalyzer, similarity
>>> analyzer = FaceAnalyzer.from_preset("offline")            # doctest: +SKIP
>>> a, b = analyzer.analyze(["a.jpg", "b.jpg"])              # doctest: +SKIP
>>> similarity(a[0], b[0]) if a and b else None              # doctest: +SKIP
"""

from stellar.models.faces.analyzer import (
    DEFAULT_PRESET,
    DETECTORS,
    EMBEDDERS,
    PRESETS,
    FaceAnalyzer,
    FacePreset,
    UnknownFaceModelError,
    build_detector,
    build_embedder,
    cosine_similarity,
    list_presets,
    presets_from_names,
    similarity,
)
from stellar.models.faces.base import Detection, Face, FaceDetector, FaceEmbedder

__all__ = [
    "DEFAULT_PRESET",
    "DETECTORS",
    "EMBEDDERS",
    "PRESETS",
    "Detection",
    "Face",
    "FaceAnalyzer",
    "FaceDetector",
    "FaceEmbedder",
    "FacePreset",
    "UnknownFaceModelError",
    "build_detector",
    "build_embedder",
    "cosine_similarity",
    "list_presets",
    "presets_from_names",
    "similarity",
]
