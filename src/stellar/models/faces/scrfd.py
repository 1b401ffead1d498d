"""SCRFD face detector (insightface ONNX models) through onnxruntime.

SCRFD (Guo et al., *Sample and Computation Redistribution for Efficient Face Detection*, ICLR 2022)
is an anchor-based single-stage detector; this module implements its inference from the
specification of insightface's release, with numpy + onnxruntime:

1. **Letterbox.** The image is resized, keeping its aspect ratio, to fit ``input_size`` (640×640),
   placed at the top-left corner and padded with black at the bottom / right. Resizing is bilinear
   with half-pixel centres and no antialiasing (``torch.nn.functional.interpolate``,
   ``align_corners=False``), as ``cv2.resize(INTER_LINEAR)`` does, rounded to uint8.
   ``det_scale = new_height / height``.
2. **Normalisation.** NCHW float32 RGB, ``(x - 127.5) / 128`` (insightface: ``blobFromImage(...,
   1/128, mean 127.5, swapRB=True)`` on a BGR image, i.e. RGB).
3. **Outputs.** 9 tensors, in this order: scores for strides 8, 16, 32; box distances for strides
   8, 16, 32; keypoint offsets for strides 8, 16, 32. Per stride ``s`` on a 640² input there are
   ``(640/s)² · 2`` anchors (2 anchors per location, row-major over locations, the two anchors of a
   location adjacent): scores ``[A, 1]`` (already sigmoid probabilities), boxes ``[A, 4]``,
   keypoints ``[A, 10]``. Files exported with a batch axis give ``[N, A, k]``; both are accepted.
   ``antelopev2/scrfd_10g_bnkps.onnx`` and ``buffalo_l/det_10g.onnx``: input ``input.1``
   ``[1, 3, ?, ?]``, outputs named ``448, 471, 494, 451, 474, 497, 454, 477, 500`` (names are not
   relied on: order is).
4. **Decoding.** Anchor centre of location (i, j) at stride s: ``(j·s, i·s)``. Box =
   ``(cx - d0·s, cy - d1·s, cx + d2·s, cy + d3·s)`` (``distance2bbox``), keypoint k =
   ``(cx + o_{2k}·s, cy + o_{2k+1}·s)`` (``distance2kps``). Anchors with score >= ``score_threshold``
   (0.5) are kept, boxes and keypoints divided by ``det_scale``, sorted by score and suppressed
   greedily at IoU > ``nms_threshold`` (0.4), with insightface's ``+1`` pixel area convention.

Images are run one at a time (the released files have a fixed batch of 1; the letterbox makes every
input 640² anyway). Boxes are not clipped to the image, as in insightface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.models.faces.arcface import onnx_session, resolve_weights
from stellar.models.faces.base import Detection

SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS_PER_LOCATION = 2

#: Default weights: the detector of insightface's antelopev2 pack.
SCRFD_DEFAULT = ("arcface-antelopev2", "scrfd_10g_bnkps.onnx")


def letterbox(image: np.ndarray, input_size: int = 640) -> tuple[np.ndarray, float]:
    """Resize keeping aspect ratio into an ``input_size``² black canvas (top-left); return it and the scale."""
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    if h / w > 1.0:
        new_h = input_size
        new_w = int(new_h / (h / w))
    else:
        new_w = input_size
        new_h = int(new_w * (h / w))
    new_h, new_w = max(new_h, 1), max(new_w, 1)
    scale = new_h / h
    t = torch.tensor(np.asarray(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()  # a copy: inputs may be read-only
    resized = F.interpolate(t, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
    resized = resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    canvas = np.zeros((input_size, input_size, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, scale


def anchor_centers(height: int, width: int, stride: int, num_anchors: int = SCRFD_ANCHORS_PER_LOCATION) -> np.ndarray:
    """``(height·width·num_anchors, 2)`` anchor centres ``(x, y)``, row-major, anchors of a location adjacent."""
    ys, xs = np.mgrid[:height, :width]
    centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
    return np.repeat(centers, num_anchors, axis=0)


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Box ``(x1, y1, x2, y2)`` from a point and its distances to the left, top, right, bottom edges."""
    return np.stack(
        [points[:, 0] - distance[:, 0], points[:, 1] - distance[:, 1], points[:, 0] + distance[:, 2], points[:, 1] + distance[:, 3]],
        axis=-1,
    )


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """``(n, k, 2)`` keypoints from a point and its ``(dx, dy)`` offsets."""
    offsets = distance.reshape(distance.shape[0], distance.shape[1] // 2, 2)
    return points[:, None, :] + offsets


def nms_plus1(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS, insightface's convention (areas ``(x2-x1+1)(y2-y1+1)``); keeps IoU <= threshold."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= threshold]
    return keep


def decode_scrfd(
    outputs: Sequence[np.ndarray],
    input_size: int,
    score_threshold: float = 0.5,
    nms_threshold: float = 0.4,
    scale: float = 1.0,
) -> list[Detection]:
    """Detections from the 9 (or 6, without keypoints) raw SCRFD outputs of one image."""
    fmc = len(SCRFD_STRIDES)
    use_kps = len(outputs) == 3 * fmc
    boxes_all, scores_all, kps_all = [], [], []
    for idx, stride in enumerate(SCRFD_STRIDES):
        scores = np.asarray(outputs[idx]).reshape(-1)
        deltas = np.asarray(outputs[idx + fmc]).reshape(-1, 4) * stride
        size = input_size // stride
        centers = anchor_centers(size, size, stride, SCRFD_ANCHORS_PER_LOCATION)
        if centers.shape[0] != scores.shape[0]:
            raise ValueError(
                f"SCRFD output for stride {stride} has {scores.shape[0]} anchors, expected {centers.shape[0]} "
                f"for a {input_size}² input with {SCRFD_ANCHORS_PER_LOCATION} anchors per location"
            )
        pos = np.where(scores >= score_threshold)[0]
        boxes_all.append(distance2bbox(centers[pos], deltas[pos]))
        scores_all.append(scores[pos])
        if use_kps:
            kps = np.asarray(outputs[idx + 2 * fmc]).reshape(-1, 10) * stride
            kps_all.append(distance2kps(centers[pos], kps[pos]))
    boxes = np.concatenate(boxes_all).astype(np.float32) / scale
    scores = np.concatenate(scores_all).astype(np.float32)
    kpss = np.concatenate(kps_all).astype(np.float32) / scale if use_kps else None
    if boxes.shape[0] == 0:
        return []
    keep = nms_plus1(boxes, scores, nms_threshold)
    return [
        Detection(box=boxes[i].copy(), score=float(scores[i]), landmarks5=None if kpss is None else kpss[i].copy())
        for i in keep
    ]


class SCRFDDetector:
    """SCRFD (insightface ONNX) implementing :class:`~stellar.models.faces.base.FaceDetector`.

    Args:
        model_path: explicit ``.onnx`` file; default: ``scrfd_10g_bnkps.onnx`` of the
            ``arcface-antelopev2`` registry card.
        device: None/"auto" (CUDA provider when available, else CPU), "cpu" or "cuda".
        input_size: letterbox side (640).
        score_threshold, nms_threshold: 0.5 and 0.4, insightface's defaults.
    """

    name = "scrfd"

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str | None = None,
        input_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
    ):
        card, filename = SCRFD_DEFAULT
        self.path = resolve_weights(card, filename, model_path)
        self.weight_files = (Path(self.path),)  # what the analyzer's protocol identifies (sha256)
        self.session = onnx_session(self.path, device)
        self.input_name = self.session.get_inputs()[0].name
        self.input_size = int(input_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.protocol = (
            f"scrfd[{self.path.name}]:letterbox{self.input_size},rgb,(x-127.5)/128,"
            f"score>={self.score_threshold:g},nms{self.nms_threshold:g}"
        )

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        results = []
        for img in images:
            canvas, scale = letterbox(img, self.input_size)
            blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
            outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})
            results.append(decode_scrfd(outputs, self.input_size, self.score_threshold, self.nms_threshold, scale))
        return results
