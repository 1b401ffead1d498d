"""DESIGN §6.9: the official code passed its face "confidence threshold" as the MTCNN pixel margin,
so no confidence filter was applied. Ours applies the stage thresholds to the face probability."""

import numpy as np
import pytest

pytest.importorskip("torch")

from stellar.models.faces.facenet import FaceNetEmbedder
from stellar.models.faces.mtcnn import MTCNNDetector


def test_paper_defaults_threshold_probability_and_crop_without_margin():
    det = MTCNNDetector(device="cpu")
    assert det.thresholds == (0.6, 0.7, 0.7)
    import inspect

    assert inspect.signature(FaceNetEmbedder).parameters["margin"].default == 0


def test_the_final_threshold_filters_low_confidence_faces(demo_dataset):
    from PIL import Image

    image = np.asarray(Image.open(demo_dataset / "004" / "0.jpg").convert("RGB"))
    loose = MTCNNDetector(device="cpu").detect([image])[0]
    strict = MTCNNDetector(device="cpu", thresholds=(0.6, 0.7, 0.9)).detect([image])[0]
    assert len(loose) == 2 and min(d.score for d in loose) < 0.9  # the background false positive (p ≈ 0.82)
    assert len(strict) == 1 and strict[0].score >= 0.9
    assert all(d.score >= 0.7 for d in loose)
