"""Training data for StellarNet: face photos with subject masks, minus the benchmark's identities.

Sources (:func:`discover_training_photos`, detected in this order):

1. a **Stellar-layout dataset** (``NNN/0.jpg`` + ``0_bg.png`` + ``0_attributes.json`` with ``identity``);
2. a **CelebAMask-HQ / CelebA-Dialog** copy, located exactly as ``stellar dataset build`` does
   (:func:`stellar.data.build.locate_source`): photos ``{k}.jpg``, colour or part masks, CelebA
   identities from the HQ identity file or the HQ→CelebA mapping + ``identity_CelebA.txt``;
3. a **folder of photos + masks**: ``NAME.jpg`` with ``NAME_mask.png``, ``NAME_bg.png`` or
   ``masks/NAME.png`` (photos may also sit in ``images/``); optional identities in
   ``identities.txt`` or ``identity_CelebA.txt`` (``NAME.jpg IDENTITY`` per line, CelebA's format).

Masks: subject = value > 0 (palette/greyscale), any non-black colour (RGB), or the union of the
CelebAMask-HQ part masks — the same readers as the dataset builder. Photos without a mask are
skipped (the loss is defined on the mask) and counted.

Exclusion (:func:`exclude_identities`): every CelebA identity that appears in the excluded Stellar
dataset (``identity`` in its attribute files) is removed before the data loader is built; photos
with no known identity cannot be checked and are kept, and both counts are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from stellar.data import layout
from stellar.errors import DatasetError
from stellar.images import IMAGE_EXTENSIONS, is_image_file, load_image

MASK_SUFFIXES = ("_mask", "_bg")
IDENTITY_FILES = ("identities.txt", "identity_CelebA.txt")


@dataclass(frozen=True)
class TrainingPhoto:
    """One training photo: its file, its mask file(s) and its CelebA identity when known."""

    path: Path
    masks: tuple[Path, ...]  # one combined mask, or CelebAMask-HQ part masks to unite
    identity: str | None = None
    mask_kind: str = "single"  # "single" | "parts"


@dataclass(frozen=True)
class SelectionReport:
    """What :func:`exclude_identities` kept and removed (logged by the trainer)."""

    source: str
    found: int
    kept: int
    excluded: int  # photos whose identity is in the excluded dataset
    excluded_identities: int  # distinct identities removed
    unknown_identity: int  # kept photos whose identity is unknown (cannot be checked)
    without_mask: int  # skipped: no mask
    excluded_dataset_identities: int = 0

    def __str__(self) -> str:
        return (
            f"training photos from {self.source}: {self.found} found, {self.without_mask} without mask skipped, "
            f"{self.excluded} excluded ({self.excluded_identities} identities of the excluded dataset's "
            f"{self.excluded_dataset_identities}), {self.unknown_identity} of unknown identity kept, {self.kept} used"
        )


def load_subject_mask(photo: TrainingPhoto, size: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) subject mask of ``photo`` resized (nearest) to ``size`` = (W, H)."""
    from stellar.data.build import labels_from_colour_mask, labels_from_part_masks

    try:
        if photo.mask_kind == "parts":
            labels = labels_from_part_masks([(i + 1, p) for i, p in enumerate(photo.masks)])
        else:
            labels, _ = labels_from_colour_mask(photo.masks[0])
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read mask ({exc})", photo.masks[0], "replace or delete the mask") from None
    mask = labels > 0
    if (mask.shape[1], mask.shape[0]) != tuple(size):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    return mask


# ------------------------------------------------------------------------------------ discovery
def _from_stellar(root: Path) -> list[TrainingPhoto] | None:
    from stellar.data.dataset import StellarDataset

    has_subjects = any(
        p.is_dir() and layout.is_valid_subject_id(p.name) and any(layout.photo_index_of(f.name) is not None for f in p.iterdir())
        for p in root.iterdir()
    )
    if not has_subjects:
        return None
    ds = StellarDataset(root, strict=False)
    out = []
    for photo in ds.photos:
        masks = (photo.mask_path,) if photo.mask_path is not None else ()
        out.append(TrainingPhoto(photo.path, masks, photo.identity))
    return out


def _from_celebahq(root: Path) -> list[TrainingPhoto] | None:
    from stellar.data import build

    if build._first_existing(root, "images", want_dir=True) is None:
        return None
    src = build.locate_source(root)
    problems: list = []
    images = {}
    for p in src.images.iterdir():
        k = build._index_of(p.name) if p.is_file() and is_image_file(p) else None
        if k is not None:
            images[k] = p
    wanted = set(images)
    if src.hq_identity is not None:
        identity = build.read_index_to_value(src.hq_identity, wanted, problems, columns=2)
    else:
        # HQ index -> CelebA file ("119614.jpg"), then CelebA file -> identity
        mapping = build.read_index_to_value(src.mapping, wanted, problems, columns=3, value_col=2)
        files = {k: build._index_of(v) for k, v in mapping.items()}
        celeba = build.read_index_to_value(src.celeba_identity, {f for f in files.values() if f is not None}, problems, columns=2)
        identity = {k: celeba[f] for k, f in files.items() if f in celeba}
    out = []
    for k in sorted(images):
        if src.mask_kind == "parts":
            masks = tuple(p for _, p in build.part_mask_paths(src.masks, k))
            kind = "parts"
        else:
            candidates = (src.masks / f"{k}.png", src.masks / f"{k:05d}.png")
            masks = tuple(p for p in candidates if p.is_file())[:1]
            kind = "single"
        out.append(TrainingPhoto(images[k], masks, identity.get(k), kind))
    return out


def _read_identities(folder: Path) -> dict[str, str]:
    for name in IDENTITY_FILES:
        path = folder / name
        if path.is_file():
            out = {}
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise DatasetError(f"line {number}: expected 'NAME.jpg IDENTITY', got {line!r}", path, "fix that line")
                out[Path(parts[0]).stem] = parts[1]
            return out
    return {}


def _from_folder(root: Path) -> list[TrainingPhoto]:
    folder = root / "images" if (root / "images").is_dir() else root
    identities = _read_identities(root) or _read_identities(folder)
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not is_image_file(p) or p.stem.endswith(MASK_SUFFIXES):
            continue
        masks: tuple[Path, ...] = ()
        candidates = [p.with_name(p.stem + s + ext) for s in MASK_SUFFIXES for ext in (".png", *IMAGE_EXTENSIONS)]
        candidates += [root / "masks" / (p.stem + ".png"), folder / "masks" / (p.stem + ".png")]
        for c in candidates:
            if c.is_file() and c != p:
                masks = (c,)
                break
        out.append(TrainingPhoto(p, masks, identities.get(p.stem)))
    return out


def discover_training_photos(source: str | Path) -> tuple[list[TrainingPhoto], str]:
    """Every photo of ``source`` with its mask(s) and identity, and the detected source kind.

    Raises:
        DatasetError: the folder does not exist or holds no photo.
    """
    root = Path(source)
    if not root.is_dir():
        raise DatasetError("training images folder not found", root, "pass a CelebAMask-HQ copy, a Stellar dataset or a folder of photos + masks")
    for kind, finder in (("stellar", _from_stellar), ("celebamask-hq", _from_celebahq)):
        found = finder(root)
        if found is not None:
            break
    else:
        kind, found = "folder", _from_folder(root)
    if not found:
        raise DatasetError(
            "no training photos found",
            root,
            "put NAME.jpg + NAME_mask.png pairs there (or masks/NAME.png), or pass a CelebAMask-HQ copy or a Stellar dataset",
        )
    return found, kind


def dataset_identities(root: str | Path) -> set[str]:
    """CelebA identities of every photo of a Stellar-layout dataset (``identity`` in the attribute files)."""
    from stellar.data.dataset import StellarDataset

    ds = StellarDataset(root, strict=False)
    return {p.identity for p in ds.photos if p.identity is not None}


def exclude_identities(
    photos: Sequence[TrainingPhoto], excluded: set[str], source: str = ""
) -> tuple[list[TrainingPhoto], SelectionReport]:
    """Drop photos without a mask and photos whose identity is in ``excluded``."""
    with_mask = [p for p in photos if p.masks]
    kept = [p for p in with_mask if p.identity is None or p.identity not in excluded]
    removed = [p for p in with_mask if p.identity is not None and p.identity in excluded]
    report = SelectionReport(
        source=source,
        found=len(photos),
        kept=len(kept),
        excluded=len(removed),
        excluded_identities=len({p.identity for p in removed}),
        unknown_identity=sum(1 for p in kept if p.identity is None),
        without_mask=len(photos) - len(with_mask),
        excluded_dataset_identities=len(excluded),
    )
    return kept, report


# ------------------------------------------------------------------------------------ torch dataset
@dataclass
class MaskedFaceDataset(torch.utils.data.Dataset):
    """Items: ``pixel_values`` (3, R, R) in [-1, 1], ``mask`` (1, R, R) in {0, 1}, ``clip_pixels``
    (3, S, S) masked + CLIP-normalised, ``time_ids`` (6,) SDXL micro-conditioning (original size,
    crop top-left, target size). Photos are centre-cropped to a square, resized to R (bicubic;
    masks nearest) and flipped horizontally with probability 1/2 when ``flip``."""

    photos: Sequence[TrainingPhoto]
    resolution: int
    clip_size: int
    flip: bool = True

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from stellar.generate.stellarnet.encoders import masked_pixels

        photo = self.photos[index]
        image = load_image(photo.path)
        mask = load_subject_mask(photo, image.size)
        w, h = image.size
        s = min(w, h)
        top, left = (h - s) // 2, (w - s) // 2
        image = image.crop((left, top, left + s, top + s)).resize((self.resolution,) * 2, Image.BICUBIC)
        mask = np.asarray(Image.fromarray(mask[top : top + s, left : left + s].astype(np.uint8) * 255).resize((self.resolution,) * 2, Image.NEAREST)) > 0
        if self.flip and torch.rand(()) < 0.5:  # torch RNG: seeded per worker by the DataLoader
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            mask = mask[:, ::-1]
        arr = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        scale = self.resolution / s
        return {
            "pixel_values": torch.from_numpy(arr).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            "clip_pixels": masked_pixels(image, mask, self.clip_size),
            "time_ids": torch.tensor([h, w, top * scale, left * scale, self.resolution, self.resolution], dtype=torch.float32),
        }
