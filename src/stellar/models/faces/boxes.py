"""Box utilities shared by the face detectors: greedy non-maximum suppression in plain torch.

Two NMS conventions are in use in face detection code, and MTCNN needs both to reproduce
facenet-pytorch's outputs (the test oracle):

* ``"union"`` with continuous coordinates — the torchvision ``ops.nms`` convention: area
  ``(x2 - x1) * (y2 - y1)``, overlap = intersection / union. Candidates are visited in descending
  score order, ties broken by the lower index first (torchvision sorts with a stable sort).
* ``"min"`` with the inclusive-pixel ``+1`` convention of the original MATLAB MTCNN (Zhang et al.
  2016, ``nms.m``): area ``(x2 - x1 + 1) * (y2 - y1 + 1)``, overlap = intersection / min(area_i,
  area_j). facenet-pytorch's ``nms_numpy`` visits candidates in reverse ``np.argsort`` order,
  whose order among equal scores numpy leaves unspecified; we break such ties by the *higher*
  index first (``tie_break="last"``, the reverse of a stable ascending sort). Exactly equal
  O-Net probabilities on overlapping boxes are the only case where this choice can matter.

In both, a box is suppressed when its overlap with an already-kept box is strictly greater than the
threshold — compared in float64 for ``"union"`` (torchvision's C++ promotes the float overlap to the
double threshold) and in the boxes' dtype for ``"min"`` (numpy rounds a Python-float threshold to the
float32 array's dtype); the two differ only when an overlap rounds exactly to the threshold. The arithmetic is written in the same order as the reference implementations so that
float32 results are bit-identical.

Speed: the ``"union"`` / continuous / ``tie_break="first"`` case is exactly torchvision's
``ops.nms`` (the C++ kernel facenet-pytorch uses for its P- and R-Net stages), so on CPU tensors it
is delegated to that kernel when torchvision is importable (~8 % of an MTCNN run was this Python
loop); tests/test_boxes_nms.py checks both give identical indices on random boxes and ties.
torchvision stays optional (it is not in the ``faces`` extra: its wheels pin one torch version):
without it, or for GPU tensors (CUDA's kernel may contract ``a*b+c`` into one rounding, so
near-threshold overlaps are not guaranteed bit-equal), the plain torch loop below runs.

Choice: the greedy loop runs once per *kept* box over the remaining candidates (no N×N matrix), so
memory stays linear in the number of candidates; it runs on whatever device the tensors are on.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal

import torch

Criterion = Literal["union", "min"]
TieBreak = Literal["first", "last"]


def _visit_order(scores: torch.Tensor, tie_break: TieBreak) -> torch.Tensor:
    """Indices in descending score order; ties by ascending (``first``) or descending (``last``) index."""
    if tie_break == "first":
        return torch.sort(scores, descending=True, stable=True).indices
    # reverse of a stable ascending sort: equal scores come out highest index first
    return torch.sort(scores, descending=False, stable=True).indices.flip(0)


@functools.lru_cache(maxsize=1)
def torchvision_nms() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None:
    """``torchvision.ops.nms`` when torchvision imports (and its C++ ops load), else ``None``."""
    try:
        from torchvision.ops import nms as tv_nms
    except (ImportError, RuntimeError, OSError):  # absent, or built for another torch
        return None
    return tv_nms


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    criterion: Criterion = "union",
    pixel_offset: float = 0.0,
    tie_break: TieBreak = "first",
) -> torch.Tensor:
    """Greedy non-maximum suppression.

    The ``"union"`` / ``pixel_offset=0`` / ``tie_break="first"`` case on CPU tensors of one float
    dtype runs torchvision's C++ ``ops.nms`` when importable; everything else runs
    :func:`nms_reference`. Both give the same indices (see the module docstring).

    Args:
        boxes: ``(N, 4)`` float tensor ``x1, y1, x2, y2``.
        scores: ``(N,)`` float tensor.
        iou_threshold: suppress a box whose overlap with a kept box is ``> iou_threshold``.
        criterion: ``"union"`` (IoU = I / (A_i + A_j - I)) or ``"min"`` (I / min(A_i, A_j)).
        pixel_offset: ``0`` for continuous coordinates (torchvision), ``1`` for the inclusive pixel
            convention (widths ``x2 - x1 + 1``).
        tie_break: order among equal scores, see the module docstring.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, in the order they were kept (descending score).
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if criterion == "union" and not pixel_offset and tie_break == "first":
        fast = torchvision_nms()
        if fast is not None and boxes.device.type == "cpu" and scores.device.type == "cpu" and boxes.dtype == scores.dtype:
            return fast(boxes, scores, float(iou_threshold))
    return nms_reference(boxes, scores, iou_threshold, criterion, pixel_offset, tie_break)


def nms_reference(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    criterion: Criterion = "union",
    pixel_offset: float = 0.0,
    tie_break: TieBreak = "first",
) -> torch.Tensor:
    """:func:`nms` in plain torch (any device, no torchvision); same arguments and result."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    if pixel_offset:
        areas = (x2 - x1 + pixel_offset) * (y2 - y1 + pixel_offset)
    else:
        areas = (x2 - x1) * (y2 - y1)
    order = _visit_order(scores, tie_break)
    keep: list[torch.Tensor] = []
    while order.numel() > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if rest.numel() == 0:
            break
        xx1 = torch.maximum(x1[i], x1[rest])
        yy1 = torch.maximum(y1[i], y1[rest])
        xx2 = torch.minimum(x2[i], x2[rest])
        yy2 = torch.minimum(y2[i], y2[rest])
        if pixel_offset:
            w = (xx2 - xx1 + pixel_offset).clamp(min=0.0)
            h = (yy2 - yy1 + pixel_offset).clamp(min=0.0)
        else:
            w = (xx2 - xx1).clamp(min=0.0)
            h = (yy2 - yy1).clamp(min=0.0)
        inter = w * h
        if criterion == "min":
            # numpy (facenet-pytorch's nms_numpy) compares a float32 overlap with the threshold
            # rounded to float32
            suppress = inter / torch.minimum(areas[i], areas[rest]) > iou_threshold
        else:
            # torchvision compares the float overlap with the threshold as a double: an overlap
            # that rounds to float32(0.36) is > 0.36 there, not in float32
            suppress = (inter / (areas[i] + areas[rest] - inter)).double() > iou_threshold
        # `~(o > t)` rather than `o <= t`: a NaN overlap (zero-area boxes) must not suppress,
        # exactly as in torchvision.
        order = rest[~suppress]
    return torch.stack(keep)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    iou_threshold: float,
    criterion: Criterion = "union",
    pixel_offset: float = 0.0,
    tie_break: TieBreak = "first",
) -> torch.Tensor:
    """NMS run independently within each group (e.g. each image of a batch).

    Returns the kept indices merged in the order one global NMS visit would produce (descending
    score, ties as ``tie_break``), which is the order torchvision's ``batched_nms`` returns.

    Choice: groups are looped over explicitly instead of torchvision's coordinate-offset trick,
    whose float rounding can change overlaps slightly for boxes of the second image onwards; this
    makes a batch give exactly the per-image result.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    kept: list[torch.Tensor] = []
    for g in torch.unique(groups).tolist():
        idx = torch.nonzero(groups == g).flatten()
        k = nms(boxes[idx], scores[idx], iou_threshold, criterion, pixel_offset, tie_break)
        kept.append(idx[k])
    keep = torch.cat(kept)
    keep = torch.sort(keep).values  # ascending index, then a stable score sort keeps ties ordered
    return keep[_visit_order(scores[keep], tie_break)]


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square of side ``max(w, h)`` about its centre (``rerec`` in MTCNN).

    Only the first four columns change; any further columns (scores ...) are copied.
    """
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(N, M)`` of two sets of continuous-coordinate boxes ``x1, y1, x2, y2``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:4], b[None, :, 2:4])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))
