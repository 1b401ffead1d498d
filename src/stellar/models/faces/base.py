"""Face-analysis interfaces shared by detectors, embedders and :class:`FaceAnalyzer` (DESIGN §4).

Coordinates are in pixels of the *original* image, ``(x1, y1, x2, y2)``; landmarks are 5 points
``(x, y)`` in the order left eye, right eye, nose, left mouth corner, right mouth corner (image left /
right, i.e. as facenet-pytorch's MTCNN and insightface order them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face found by a detector."""

    box: np.ndarray  # (4,) float32: x1, y1, x2, y2
    score: float  # detector confidence in [0, 1]
    landmarks5: np.ndarray | None = None  # (5, 2) float32, or None when the detector gives none

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@dataclass(frozen=True)
class Face:
    """A detected face with its identity embedding (L2-normalised)."""

    box: np.ndarray
    score: float
    landmarks5: np.ndarray | None
    embedding: np.ndarray  # (D,) float32, unit norm
    area: float = field(default=0.0)

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks5": None if self.landmarks5 is None else np.round(self.landmarks5, 2).tolist(),
            "area": round(float(self.area), 1),
            "embedding_dim": int(self.embedding.shape[0]),
        }


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces. ``images`` are HxWx3 uint8 RGB arrays; returns one list of detections per image."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]: ...


@runtime_checkable
class FaceEmbedder(Protocol):
    """Embeds detected faces. Returns one (n_faces, D) float32 L2-normalised array per image."""

    name: str
    dim: int

    def embed(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[np.ndarray]: ...


def regroup(flat: np.ndarray, groups: Sequence[Sequence[object]]) -> list[np.ndarray]:
    """Split rows of ``flat`` (one per item of every group, in order) back into one array per group.

    Embedders run all faces of a batch of images through the network at once; this returns the
    per-image ``(n_faces, D)`` arrays the :class:`FaceEmbedder` protocol promises.
    """
    out, i = [], 0
    for group in groups:
        out.append(flat[i : i + len(group)])
        i += len(group)
    return out
