"""MTCNN face detector: the three-stage cascade of Zhang et al. 2016, with facenet-pytorch's weights.

Method (K. Zhang, Z. Zhang, Z. Li, Y. Qiao, "Joint Face Detection and Alignment using Multi-task
Cascaded Convolutional Networks", IEEE SPL 2016):

1. **Image pyramid.** Scales ``s_k = (12 / min_face_size) * factor**k`` while
   ``min(H, W) * s_k >= 12`` (``factor = 0.709``, ``min_face_size = 20``); each level is the image
   resized to ``(int(H*s + 1), int(W*s + 1))`` by area averaging and normalised to
   ``(x - 127.5) / 128``.
2. **P-Net** (fully convolutional, 12×12 receptive field, stride 2) scores every window; windows
   with face probability ``>= t1`` (0.6) become boxes ``floor((2*(x,y) + 1) / s)`` to
   ``floor((2*(x,y) + 12) / s)``; NMS (IoU 0.5) per scale, then NMS (IoU 0.7) across scales;
   box regression ``x1 + dx1 * (x2 - x1)`` ...; boxes squared about their centre.
3. **R-Net** on 24×24 crops: keep probability ``> t2`` (0.7), NMS (IoU 0.7), regression with
   inclusive widths ``x2 - x1 + 1``, square again.
4. **O-Net** on 48×48 crops: keep probability ``> t3`` (0.7); 5 landmarks
   ``x1 + (x2 - x1 + 1) * u - 1`` (left eye, right eye, nose, left mouth, right mouth, image
   left first) from the O-Net input box; box regression; NMS with the "Min" criterion
   (intersection / smaller area, inclusive pixels, threshold 0.7).

Outputs are in pixels of the original image: ``Detection(box=(x1, y1, x2, y2), score=O-Net
probability, landmarks5=(5, 2))``. An image without faces yields ``[]``.

Parity: the networks have facenet-pytorch's ``PNet``/``RNet``/``ONet`` parameter names and shapes,
so ``pnet.pt``/``rnet.pt``/``onet.pt`` (shipped in the MIT-licensed ``facenet-pytorch==2.6.0``
wheel; registry card ``mtcnn``) load with ``strict=True``; the arithmetic follows facenet-pytorch's
``detect_face`` operation by operation so that, on the CPU, boxes, scores and landmarks match it to
float32 rounding (tests/test_mtcnn.py measures this). Choices and deviations, all deliberate:

* Crops for R-Net/O-Net follow facenet-pytorch, not the MATLAB original: the square box is
  truncated to integers, clipped to the image (``x >= 1``, ``x2 <= W``, 1-based) and the in-image
  part is area-resized to 24/48 — no zero padding of the outside part. Boxes themselves are not
  clipped, so a returned box may extend past the image border (as in facenet-pytorch).
* The crops are computed for all candidates at once from one summed-area table per batch (shared
  by R- and O-Net) instead of one ``F.interpolate(mode="area")`` per box (38 % of an MTCNN run);
  on the CPU they are bit-identical to the per-box resize, see :func:`_crop_resize` for the
  documented tolerance.
* A candidate whose clipped crop is empty (a box wholly outside the image) is dropped. (facenet-
  pytorch skips its crop but keeps the box, misaligning later boxes and scores; this only happens
  for degenerate boxes.)
* NMS (:mod:`.boxes`: torchvision's C++ kernel when importable, else plain torch, same indices)
  runs per image rather than via torchvision's batched coordinate-offset trick, so a batch gives
  exactly the per-image result.
* Detections of an image are ordered by box area, largest first — facenet-pytorch's default
  ``select_largest=True`` order — so ``detections[0]`` is the face facenet-pytorch's single-face
  ``MTCNN()`` returns.
* Images of the same size are processed as one batch (in chunks of ``batch_size``); mixed sizes
  are grouped by size. An image too small for one pyramid level (``min(H, W) < min_face_size``)
  yields ``[]`` instead of an error.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stellar.errors import StellarError
from stellar.models.faces._torch import load_exact, read_state_dict, resolve_device
from stellar.models.faces.base import Detection
from stellar.models.faces.boxes import batched_nms, square_boxes

NET_NAMES = ("pnet", "rnet", "onet")
_WEIGHTS_FIX = (
    "run `stellar models fetch mtcnn`, or pass weights={'pnet': ..., 'rnet': ..., 'onet': ...} "
    "pointing at facenet-pytorch 2.6.0's data/*.pt"
)
# R-/O-Net forward passes are chunked so that thousands of candidates never exhaust GPU memory.
_STAGE_CHUNK = 512


class PNet(nn.Module):
    """Proposal network: fully convolutional, input ``(B, 3, H, W)`` -> box offsets ``(B, 4, h, w)``,
    face probabilities ``(B, 2, h, w)`` (softmax; channel 1 = face)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


def _flatten_caffe(x: torch.Tensor) -> torch.Tensor:
    # The weights were converted from the original Caffe/TF model, whose dense layers read the
    # feature map in (W, H, C) order; flatten the same way so the dense weights apply unchanged.
    return x.permute(0, 3, 2, 1).contiguous().view(x.shape[0], -1)


class RNet(nn.Module):
    """Refinement network on 24×24 crops -> box offsets ``(N, 4)``, probabilities ``(N, 2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_caffe(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output network on 48×48 crops -> box offsets ``(N, 4)``, landmarks ``(N, 10)`` (5 x then
    5 y, relative to the crop), probabilities ``(N, 2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_caffe(x)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """MTCNN input scaling: ``(x - 127.5) / 128`` (written as ``* 0.0078125`` like the reference)."""
    return (x - 127.5) * 0.0078125


def pyramid_scales(height: int, width: int, min_face_size: float = 20, factor: float = 0.709) -> list[float]:
    """Scales of the P-Net image pyramid: ``m * factor**k`` with ``m = 12 / min_face_size``, while
    the shorter side at that scale is at least 12 px (P-Net's window)."""
    m = 12.0 / min_face_size
    shortest = min(height, width) * m
    scales: list[float] = []
    scale = m
    while shortest >= 12:
        scales.append(scale)
        scale = scale * factor
        shortest = shortest * factor
    return scales


def _regress_inclusive(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """R-/O-Net box regression with inclusive-pixel widths: ``x1 + dx1 * (x2 - x1 + 1)`` ..."""
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + offsets[:, 0] * w
    out[:, 1] = boxes[:, 1] + offsets[:, 1] * h
    out[:, 2] = boxes[:, 2] + offsets[:, 2] * w
    out[:, 3] = boxes[:, 3] + offsets[:, 3] * h
    return out


def _integral_image(images: torch.Tensor) -> torch.Tensor:
    """Summed-area table ``(B, H + 1, W + 1, 3)`` of integer-valued ``(B, 3, H, W)`` images.

    ``table[b, y, x] = sum(images[b, :, :y, :x])`` per channel, in exact integer arithmetic (int32
    while ``255 * H * W`` fits, else int64), so that any rectangle's sum costs four lookups and is
    exact. Built once per batch and shared by the R-Net and O-Net crops.
    """
    b, c, h, w = images.shape
    dtype = torch.int32 if 255 * h * w < 2**31 else torch.int64
    table = torch.zeros((b, h + 1, w + 1, c), dtype=dtype, device=images.device)
    inner = table[:, 1:, 1:]
    inner.copy_(images.permute(0, 2, 3, 1))
    # in place: 3x cheaper than out-of-place cumsums plus a copy (22 vs 70 ms for 1024², 1 thread)
    torch.cumsum(inner, 1, out=inner)
    torch.cumsum(inner, 2, out=inner)
    return table


def _area_bins(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges of an area resize of ``length`` pixels starting at ``start`` to ``size`` bins:
    bin ``i`` covers ``[start + floor(i*n/size), start + ceil((i+1)*n/size))`` (torch's adaptive
    average pooling bins, in exact integer arithmetic). Shapes ``(K,) -> (K, size)``."""
    i = torch.arange(size, device=length.device)
    n = length[:, None]
    lo = (i * n) // size
    hi = ((i + 1) * n + size - 1) // size
    return start[:, None] + lo, start[:, None] + hi


def _crop_resize(
    table: torch.Tensor, boxes: torch.Tensor, image_idx: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each (square) box out of its image, clipped to the image, area-resized to ``size``².

    ``table`` is :func:`_integral_image` of the batch. Returns the normalised crops
    ``(K, 3, size, size)`` and the boolean mask of boxes whose clipped crop is non-empty (the
    others are dropped by the caller).

    This is facenet-pytorch's per-box ``F.interpolate(patch, (size, size), mode="area")``
    (= ``adaptive_avg_pool2d``) computed for all boxes at once: each output pixel is the sum of its
    bin read from the summed-area table, divided by the bin height and then the bin width in
    float32, the order of torch's CPU kernel. The sums are exact integers in both; the per-box
    kernel accumulates in float32, which is exact while a bin holds < 2**24 / 255 pixels (crops up
    to ~255·size px a side), so on the CPU the crops are bit-identical to the loop (measured on
    torch 2.14, tests/test_mtcnn_crop.py); the documented tolerance, for other kernels and devices,
    is one float32 ulp at 255 (2**-16 on the 0..255 scale, 1.2e-7 after normalisation).
    (Not ``torchvision.ops.roi_align``: it averages bilinear samples at fixed sub-pixel points,
    which only approximates bins of 1-2 px differing sizes, and it would make torchvision required.)
    """
    height, width = table.shape[1] - 1, table.shape[2] - 1
    ints = boxes[:, :4].trunc().to(torch.int64)
    # 1-based inclusive pixel boxes, as in the reference: rows y-1 .. ey-1, columns x-1 .. ex-1
    x0 = ints[:, 0].clamp(min=1) - 1
    y0 = ints[:, 1].clamp(min=1) - 1
    ex = ints[:, 2].clamp(max=width)
    ey = ints[:, 3].clamp(max=height)
    valid = (ey > y0) & (ex > x0)
    keep = torch.nonzero(valid).flatten()
    image_idx = image_idx.to(boxes.device)
    # one row of `pixels` per table entry (its channels); a corner (b, r, c) is row (b*(H+1) + r)*(W+1) + c
    pixels = table.view(-1, table.shape[3])
    crops = []
    # chunked so that the four (K*size*size, 3) gathers stay small for thousands of candidates
    for part in keep.split(_STAGE_CHUNK):
        k = part.numel()
        r0, r1 = _area_bins(y0[part], ey[part] - y0[part], size)
        c0, c1 = _area_bins(x0[part], ex[part] - x0[part], size)
        kh = (r1 - r0).to(torch.float32)[:, :, None].expand(k, size, size).reshape(-1, 1)
        kw = (c1 - c0).to(torch.float32)[:, None, :].expand(k, size, size).reshape(-1, 1)
        first_row = (image_idx[part] * (height + 1))[:, None]
        r0 = ((first_row + r0) * (width + 1))[:, :, None]
        r1 = ((first_row + r1) * (width + 1))[:, :, None]
        c0, c1 = c0[:, None, :], c1[:, None, :]

        def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            return pixels.index_select(0, (rows + cols).reshape(-1).to(table.device))

        sums = corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)
        mean = sums.to(torch.float32) / kh.to(table.device) / kw.to(table.device)
        crops.append(mean.view(k, size, size, pixels.shape[1]).permute(0, 3, 1, 2).contiguous())
    if not crops:
        return torch.zeros((0, 3, size, size), device=table.device), valid
    return _normalise(torch.cat(crops, dim=0)), valid


def crop_resize_per_box(
    images: torch.Tensor, boxes: torch.Tensor, image_idx: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference for :func:`_crop_resize`: facenet-pytorch's loop, one
    ``F.interpolate(mode="area")`` per box, on the float ``(B, 3, H, W)`` images (kept for the tests
    and benchmarks/faces.py, which compare and time the two)."""
    height, width = images.shape[2], images.shape[3]
    ints = boxes[:, :4].trunc().to(torch.int64).cpu()
    x = ints[:, 0].clamp(min=1)
    y = ints[:, 1].clamp(min=1)
    ex = ints[:, 2].clamp(max=width)
    ey = ints[:, 3].clamp(max=height)
    valid = (ey > y - 1) & (ex > x - 1)
    idx, x, y, ex, ey = (t.tolist() for t in (image_idx.cpu(), x, y, ex, ey))
    crops = []
    for k in torch.nonzero(valid).flatten().tolist():
        patch = images[idx[k], :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]].unsqueeze(0)
        crops.append(F.interpolate(patch, size=(size, size), mode="area"))
    if not crops:
        return images.new_zeros((0, 3, size, size)), valid.to(boxes.device)
    return _normalise(torch.cat(crops, dim=0)), valid.to(boxes.device)


def _run_chunked(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outs = [net(x[i : i + _STAGE_CHUNK]) for i in range(0, x.shape[0], _STAGE_CHUNK)]
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))


class MTCNNDetector:
    """MTCNN face detector (implements :class:`~stellar.models.faces.base.FaceDetector`).

    Args:
        device: ``None``/``"auto"`` (cuda if available, else cpu), or a torch device.
        weights: ``None`` to resolve the ``mtcnn`` card through the model registry; a mapping
            ``{"pnet": path, "rnet": path, "onet": path}``; or a folder holding ``pnet.pt``,
            ``rnet.pt`` and ``onet.pt`` (facenet-pytorch's state dicts).
        thresholds: per-stage face-probability thresholds (P-, R-, O-Net).
        min_face_size: smallest face searched for, in pixels.
        factor: pyramid scale step.
        batch_size: images of equal size run through the cascade together, at most this many.

    Example:
        >>> det = MTCNNDetector(device="cpu")  # doctest: +SKIP
        >>> [faces] = det.detect([rgb_uint8_array])  # doctest: +SKIP
        >>> faces[0].box, faces[0].score, faces[0].landmarks5  # doctest: +SKIP
    """

    name = "mtcnn"

    def __init__(
        self,
        device: str | torch.device | None = None,
        weights: Mapping[str, str | Path] | str | Path | None = None,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        min_face_size: float = 20,
        factor: float = 0.709,
        batch_size: int = 8,
    ) -> None:
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise StellarError(f"MTCNN thresholds must be three probabilities in [0, 1], got {thresholds}")
        if not min_face_size > 0:
            raise StellarError(f"MTCNN min_face_size must be positive, got {min_face_size}")
        if not 0.0 < factor < 1.0:
            raise StellarError(f"MTCNN pyramid factor must be in (0, 1), got {factor}")
        if batch_size < 1:
            raise StellarError(f"MTCNN batch_size must be >= 1, got {batch_size}")
        self.thresholds = thresholds
        self.min_face_size = min_face_size
        self.factor = factor
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        paths = _weight_paths(weights)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net_name, net in zip(NET_NAMES, (self.pnet, self.rnet, self.onet)):
            state = read_state_dict(paths[net_name], f"MTCNN {net_name}", _WEIGHTS_FIX)
            load_exact(net, state, paths[net_name], f"MTCNN {net_name}", _WEIGHTS_FIX)
            net.to(self.device).eval()
        self.weights = {k: str(v) for k, v in paths.items()}
        self.weight_files = tuple(Path(paths[n]) for n in NET_NAMES)  # what the analyzer's protocol identifies (sha256)

    # ------------------------------------------------------------------ public API
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect faces in HxWx3 uint8 RGB images; one list of detections per image (largest first)."""
        arrays = [_as_rgb_uint8(img, i) for i, img in enumerate(images)]
        results: list[list[Detection]] = [[] for _ in arrays]
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, arr in enumerate(arrays):
            by_size[arr.shape[:2]].append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, dets in zip(chunk, self._detect_same_size([arrays[i] for i in chunk])):
                    results[i] = dets
        return results

    # ------------------------------------------------------------------ the cascade
    @torch.inference_mode()
    def _detect_same_size(self, arrays: list[np.ndarray]) -> list[list[Detection]]:
        n_images = len(arrays)
        # NHWC uint8 -> NCHW float32 view (channels-last strides, like the reference, so the
        # resampling and convolutions see the same memory layout and round identically)
        images = torch.as_tensor(np.stack(arrays), device=self.device).permute(0, 3, 1, 2).float()
        height, width = images.shape[2], images.shape[3]
        t1, t2, t3 = self.thresholds

        # Stage 1: P-Net over the pyramid.
        candidates, cand_image = [], []
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            level = F.interpolate(images, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            offsets, probs = self.pnet(_normalise(level))
            boxes, img_idx = _proposals(offsets, probs[:, 1], scale, t1)
            keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.5)
            candidates.append(boxes[keep])
            cand_image.append(img_idx[keep])
        if not candidates:
            return [[] for _ in range(n_images)]
        boxes = torch.cat(candidates)
        img_idx = torch.cat(cand_image)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7)
        boxes, img_idx = boxes[keep], img_idx[keep]
        # P-Net regression uses exclusive widths (x2 - x1), unlike the later stages
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack(
            [
                boxes[:, 0] + boxes[:, 5] * w,
                boxes[:, 1] + boxes[:, 6] * h,
                boxes[:, 2] + boxes[:, 7] * w,
                boxes[:, 3] + boxes[:, 8] * h,
                boxes[:, 4],
            ],
            dim=1,
        )
        boxes = square_boxes(boxes)

        # Stage 2: R-Net on 24×24 crops.
        if boxes.shape[0] == 0:
            return [[] for _ in range(n_images)]
        table = _integral_image(images)  # shared by the R- and O-Net crops
        crops, valid = _crop_resize(table, boxes, img_idx, 24)
        boxes, img_idx = boxes[valid], img_idx[valid]
        if boxes.shape[0] == 0:
            return [[] for _ in range(n_images)]
        offsets, probs = _run_chunked(self.rnet, crops)
        passed = probs[:, 1] > t2
        boxes = torch.cat([boxes[passed, :4], probs[passed, 1:2]], dim=1)
        img_idx, offsets = img_idx[passed], offsets[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7)
        boxes, img_idx, offsets = boxes[keep], img_idx[keep], offsets[keep]
        boxes = square_boxes(_regress_inclusive(boxes, offsets))

        # Stage 3: O-Net on 48×48 crops.
        if boxes.shape[0] == 0:
            return [[] for _ in range(n_images)]
        crops, valid = _crop_resize(table, boxes, img_idx, 48)
        boxes, img_idx = boxes[valid], img_idx[valid]
        if boxes.shape[0] == 0:
            return [[] for _ in range(n_images)]
        offsets, marks, probs = _run_chunked(self.onet, crops)
        passed = probs[:, 1] > t3
        boxes = torch.cat([boxes[passed, :4], probs[passed, 1:2]], dim=1)
        img_idx, offsets, marks = img_idx[passed], offsets[passed], marks[passed]
        # landmarks are relative to the O-Net input box (before its regression)
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points_x = bw * marks[:, :5] + boxes[:, 0:1] - 1
        points_y = bh * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([points_x, points_y], dim=2)
        boxes = _regress_inclusive(boxes, offsets)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img_idx, 0.7, criterion="min", pixel_offset=1.0, tie_break="last")
        boxes, img_idx, points = boxes[keep], img_idx[keep], points[keep]

        boxes_np = boxes.cpu().numpy().astype(np.float32)
        points_np = points.cpu().numpy().astype(np.float32)
        idx_np = img_idx.cpu().numpy()
        out: list[list[Detection]] = []
        for b in range(n_images):
            rows = np.nonzero(idx_np == b)[0]
            area = (boxes_np[rows, 2] - boxes_np[rows, 0]) * (boxes_np[rows, 3] - boxes_np[rows, 1])
            rows = rows[np.argsort(-area, kind="stable")]
            out.append(
                [
                    Detection(box=boxes_np[r, :4].copy(), score=float(boxes_np[r, 4]), landmarks5=points_np[r].copy())
                    for r in rows
                ]
            )
        return out


def _proposals(
    offsets: torch.Tensor, face_prob: torch.Tensor, scale: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net windows with probability ``>= threshold`` as rows ``x1, y1, x2, y2, score, dx1..dy2``
    in original-image pixels, plus their image index.

    A P-Net output cell ``(x, y)`` sees the 12×12 window at ``(2x, 2y)`` of the scaled image, i.e.
    ``floor((2x + 1) / s)`` .. ``floor((2x + 12) / s)`` in the original (1-based, as the reference).
    """
    mask = face_prob >= threshold
    cells = torch.nonzero(mask)  # (n, 3): image, y, x in row-major order
    score = face_prob[mask]
    reg = offsets.permute(0, 2, 3, 1)[mask]
    xy = cells[:, 1:].to(offsets.dtype).flip(1)
    top_left = ((2 * xy + 1) / scale).floor()
    bottom_right = ((2 * xy + 12) / scale).floor()
    rows = torch.cat([top_left, bottom_right, score.unsqueeze(1), reg], dim=1)
    return rows, cells[:, 0]


def _weight_paths(weights: Mapping[str, str | Path] | str | Path | None) -> dict[str, Path]:
    if weights is None:
        from stellar.models.registry import resolve_file  # lazy: the registry may fetch files

        return {net: Path(resolve_file("mtcnn", f"{net}.pt")) for net in NET_NAMES}
    if isinstance(weights, (str, Path)):
        folder = Path(weights)
        if not folder.is_dir():
            raise StellarError(
                f"{folder}: MTCNN weights must be a folder holding pnet.pt, rnet.pt and onet.pt, "
                "or a mapping {'pnet': path, 'rnet': path, 'onet': path}"
            )
        return {net: folder / f"{net}.pt" for net in NET_NAMES}
    missing = [net for net in NET_NAMES if net not in weights]
    if missing:
        raise StellarError(f"MTCNN weights mapping lacks {missing}; it needs the keys {list(NET_NAMES)}")
    return {net: Path(weights[net]) for net in NET_NAMES}


def _as_rgb_uint8(image: object, index: int) -> np.ndarray:
    """Validate one input image; PIL images are converted to RGB arrays for convenience."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise StellarError(f"image #{index}: expected an HxWx3 uint8 RGB numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise StellarError(
            f"image #{index}: expected an HxWx3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}; "
            "load images with stellar.images.load_image(path) and np.asarray(...)"
        )
    return image
