"""Sanity "methods": the reference points every metric must order correctly.

- ``copy``: returns the input photo (square crop around the subject, resized to ``size``²). Perfect
  identity, ignores the prompt — what the exclusion rule (DESIGN §6.4) exists to catch.
- ``noise``: uniform random RGB noise, seeded per job (:func:`~stellar.generate.base.job_seed`):
  no face, nothing of the prompt — the floor of every metric.
- ``paste``: the subject's face region (the bounding box of its mask; the whole photo when it has
  none) pasted in the middle of a fixed non-face scene (``skimage.data.coffee()``, CC0) — identity
  present, prompt still ignored.

Choices: outputs are square ``size``×``size`` like the generators Stellar evaluates. ``copy``
crops the largest square centred on the subject mask's centre (clamped inside the photo) instead
of squashing the aspect ratio or cutting the head off tall portraits. ``noise`` draws one value
per ``cell``×``cell`` block (default 4) — still i.i.d. random, but its PNGs are ~16× smaller than
per-pixel noise; ``cell=1`` gives per-pixel noise. None of them uses a model, so ``setup`` only
records the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from stellar.data.dataset import Job, Photo, Subject, load_mask
from stellar.errors import MissingDependencyError, StellarError
from stellar.generate.base import MethodBase, job_seed
from stellar.images import load_image

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 8:
        raise StellarError(f"output size must be an integer ≥ 8, got {size!r}")
    return size


def subject_box(photo: Photo, image_size: tuple[int, int]) -> Box:
    """Bounding box of ``photo``'s subject mask (value > 0) in a photo of ``image_size``; whole image without a mask."""
    w, h = image_size
    if photo.mask_path is None:
        return (0, 0, w, h)
    mask = load_mask(photo, (w, h))
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:  # an empty mask names no region: fall back on the whole photo
        return (0, 0, w, h)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def square_box(image_size: tuple[int, int], center: tuple[float, float]) -> Box:
    """The largest square inside ``image_size`` centred as close to ``center`` as the borders allow."""
    w, h = image_size
    side = min(w, h)
    left = int(round(min(max(center[0] - side / 2, 0), w - side)))
    top = int(round(min(max(center[1] - side / 2, 0), h - side)))
    return (left, top, left + side, top + side)


def paste_box(crop_size: tuple[int, int], size: int, fraction: float) -> Box:
    """Where ``paste`` puts a crop of ``crop_size`` in a ``size``² canvas: longer side = ``fraction``·size, centred."""
    cw, ch = crop_size
    scale = fraction * size / max(cw, ch)
    w, h = max(1, round(cw * scale)), max(1, round(ch * scale))
    left, top = (size - w) // 2, (size - h) // 2
    return (left, top, left + w, top + h)


class _PhotoCache:
    """Decoded photos of the current subject (``prepare_subject`` resets it, so memory stays bounded)."""

    def __init__(self) -> None:
        self._items: dict[Path, tuple[Image.Image, Box]] = {}

    def reset(self) -> None:
        self._items.clear()

    def get(self, photo: Photo) -> tuple[Image.Image, Box]:
        item = self._items.get(photo.path)
        if item is None:
            image = load_image(photo.path)
            item = (image, subject_box(photo, image.size))
            self._items[photo.path] = item
        return item


class CopyMethod(MethodBase):
    """``copy``: the input photo, square-cropped around the subject and resized to ``size``²."""

    name = "copy"

    def __init__(self, size: int = 512):
        super().__init__(size=_check_size(size))
        self.size = size
        self._cache = _PhotoCache()

    def prepare_subject(self, subject: Subject) -> None:
        self._cache.reset()

    def generate(self, jobs: Sequence[Job], seed: int) -> list[Image.Image]:
        out = []
        for job in jobs:
            image, (l, t, r, b) = self._cache.get(job.photo)
            box = square_box(image.size, ((l + r) / 2, (t + b) / 2))
            out.append(image.crop(box).resize((self.size, self.size), Image.LANCZOS))
        return out


class NoiseMethod(MethodBase):
    """``noise``: uniform RGB noise, one value per ``cell``² block, seeded by :func:`job_seed`."""

    name = "noise"

    def __init__(self, size: int = 512, cell: int = 4):
        if not isinstance(cell, int) or not 1 <= cell <= size:
            raise StellarError(f"noise cell must be an integer in [1, size], got {cell!r}")
        super().__init__(size=_check_size(size), cell=cell)
        self.size, self.cell = size, cell

    def generate(self, jobs: Sequence[Job], seed: int) -> list[Image.Image]:
        n = -(-self.size // self.cell)  # ceil
        out = []
        for job in jobs:
            rng = np.random.default_rng(job_seed(seed, job))
            cells = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
            arr = np.repeat(np.repeat(cells, self.cell, axis=0), self.cell, axis=1)[: self.size, : self.size]
            out.append(Image.fromarray(np.ascontiguousarray(arr), "RGB"))
        return out


def coffee_scene() -> Image.Image:
    """``skimage.data.coffee()`` (CC0, Rachel Michetti): a scene with no face in it."""
    try:
        import skimage.data
    except ImportError:
        raise MissingDependencyError("scikit-image", "fixtures", "The paste sanity method's scene") from None
    return Image.fromarray(skimage.data.coffee())


class PasteMethod(MethodBase):
    """``paste``: the subject's face box pasted, ``fraction``·size on its longer side, onto the centre of a scene."""

    name = "paste"

    def __init__(self, size: int = 512, fraction: float = 0.5, scene: str = "coffee"):
        if scene != "coffee":
            raise StellarError(f"unknown paste scene {scene!r}\n  fix: use scene='coffee'")
        if not 0.05 <= float(fraction) <= 1.0:
            raise StellarError(f"paste fraction must be in [0.05, 1], got {fraction!r}")
        super().__init__(size=_check_size(size), fraction=float(fraction), scene=scene)
        self.size, self.fraction = size, float(fraction)
        self._cache = _PhotoCache()
        self._scene: Image.Image | None = None

    def setup(self, device: str) -> None:
        super().setup(device)
        scene = coffee_scene()
        self._scene = scene.crop(square_box(scene.size, (scene.width / 2, scene.height / 2))).resize(
            (self.size, self.size), Image.LANCZOS
        )

    def prepare_subject(self, subject: Subject) -> None:
        self._cache.reset()

    def generate(self, jobs: Sequence[Job], seed: int) -> list[Image.Image]:
        if self._scene is None:
            self.setup("cpu")
        assert self._scene is not None  # set by setup (internal invariant, not user input)
        out = []
        for job in jobs:
            image, box = self._cache.get(job.photo)
            face = image.crop(box)
            l, t, r, b = paste_box(face.size, self.size, self.fraction)
            canvas = self._scene.copy()
            canvas.paste(face.resize((r - l, b - t), Image.LANCZOS), (l, t))
            out.append(canvas)
        return out
