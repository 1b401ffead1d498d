"""Miniature CelebAMask-HQ / CelebA-Dialog sources and gated Stellar files, for the build tests.

The text files have the header shapes of the real releases (count line, attribute-name line, rows
with runs of spaces; mapping header ``idx orig_idx orig_file``; CelebA identity rows ``000001.jpg 2880``;
tab-separated fine-grained table with a file-column header). Photos are 64x64 noise JPEGs, masks
32x32 label maps drawn as rectangles, so the expected mask of every photo is known exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from stellar.data.build import PALETTE, PART_NAMES
from stellar.data.layout import CELEBA_ATTRIBUTES

#: HQ index -> (CelebA identity, split or None when not in Stellar). 0, 1, 3 are distractors.
PHOTOS: dict[int, tuple[str, str | None]] = {
    0: ("77", None),
    1: ("2880", None),  # same person as 2/7 but not listed in celebahq_ids.txt
    2: ("2880", "test"),
    3: ("5", None),
    4: ("100", "val"),
    7: ("2880", "test"),
    9: ("900", "test"),
    11: ("100", "val"),
    2005: ("900", "test"),  # lives in CelebAMask-HQ-mask-anno/1/
}
#: Expected subjects: test by identity (900 < 2880 numerically, not as strings), then val.
EXPECTED = {"000": ("900", "test", [9, 2005]), "001": ("2880", "test", [2, 7]), "002": ("100", "val", [4, 11])}
FINEGRAINED_NAMES = ("Bangs", "Eyeglasses", "No_Beard", "Smiling", "Young")
MASK_SIZE = 32


def celeba_index(k: int) -> int:
    """A CelebA image number (1-based) for HQ index k, far from k so a mix-up shows."""
    return 5000 + 37 * k


def attribute_values(k: int) -> list[int]:
    rng = np.random.default_rng(1000 + k)
    return [int(v) for v in rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))]


def finegrained_values(k: int) -> list[int]:
    return [(k + i) % 6 for i in range(len(FINEGRAINED_NAMES))]


def expected_labels(k: int) -> np.ndarray:
    """The label map of photo k: skin block, hair over part of it, an eye, cloth at the bottom."""
    lab = np.zeros((MASK_SIZE, MASK_SIZE), dtype=np.uint8)
    o = k % 4
    lab[6 + o : 26, 8:24] = 1  # skin
    lab[4 + o : 12 + o, 6:26] = 13  # hair, overwrites skin (13 > 1 in combination order)
    lab[14 + o : 16 + o, 11:14] = 4  # l_eye
    lab[28:, :] = 18  # cloth
    return lab


def part_masks(k: int) -> dict[str, np.ndarray]:
    """Binary part masks whose combination (later parts win) is :func:`expected_labels`.

    The skin mask also covers the hair region, as real annotations overlap.
    """
    lab = expected_labels(k)
    parts = {}
    for label, name in enumerate(PART_NAMES, 1):
        on = lab == label
        if name == "skin":
            on = on | (lab == 13)
        if on.any():
            parts[name] = on
    return parts


@dataclass
class Miniature:
    root: Path
    gated: Path
    celeba_identity: Path | None = None
    extra: dict = field(default_factory=dict)


def _write_photos(folder: Path) -> None:
    folder.mkdir(parents=True)
    for k in PHOTOS:
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(folder / f"{k}.jpg", quality=85)


def _attribute_file(path: Path, indices) -> None:
    lines = [str(len(indices)), " ".join(CELEBA_ATTRIBUTES)]
    for k in indices:
        values = attribute_values(k)
        # The release separates a file name and values with runs of spaces of varying width.
        lines.append(f"{k}.jpg  " + " ".join(f"{v:d}" if v < 0 else f" {v:d}" for v in values))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def palette_mask(labels: np.ndarray) -> Image.Image:
    im = Image.fromarray(labels, "P")
    im.putpalette([v for c in PALETTE for v in c] + [0, 0, 0] * (256 - len(PALETTE)))
    return im


def write_gated(gated: Path, *, ids_rows: list[str] | None = None, t: dict | None = None, h: dict | None = None) -> Path:
    gated.mkdir(parents=True, exist_ok=True)
    if ids_rows is None:
        # Scrambled on purpose: the build orders by (split, identity), then HQ index.
        ids_rows = [f"{k}.jpg,{split}" for k in (11, 7, 2005, 4, 2, 9) for split in [PHOTOS[k][1]]]
    (gated / "celebahq_ids.txt").write_text("celebahq_filename,split\n" + "\n".join(ids_rows) + "\n")
    if t is None:
        t = {
            sid: {
                "prompts": [f"{{}} riding a horse {sid}", "{} holding an umbrella"],
                "detectables": [["horse"], ["umbrella"]],
                "categories": [["animal"], ["object"]],
            }
            for sid in EXPECTED
        }
    if h is None:
        h = {sid: {"prompts": [f"a portrait of {{}} number {sid}"]} for sid, (_, split, _) in EXPECTED.items() if split == "test"}
    (gated / "stellar_t.json").write_text(json.dumps(t))
    (gated / "stellar_h.json").write_text(json.dumps(h))
    (gated / "objects.txt").write_text("horse\numbrella\n")
    return gated


def make_celebamask_hq(tmp: Path) -> Miniature:
    """The original CelebAMask-HQ release layout + a CelebA identity file outside it."""
    root = tmp / "CelebAMask-HQ"
    _write_photos(root / "CelebA-HQ-img")
    for k in PHOTOS:
        folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for name, on in part_masks(k).items():
            # Real part masks are 0/255 greyscale PNGs.
            Image.fromarray(on.astype(np.uint8) * 255, "L").save(folder / f"{k:05d}_{name}.png")
    _attribute_file(root / "CelebAMask-HQ-attribute-anno.txt", sorted(PHOTOS))
    mapping = ["idx orig_idx orig_file"] + [f"{k} {celeba_index(k) - 1} {celeba_index(k)}.jpg" for k in sorted(PHOTOS)]
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    (root / "README.txt").write_text("CelebAMask-HQ miniature\n")
    celeba = tmp / "CelebA" / "Anno" / "identity_CelebA.txt"
    celeba.parent.mkdir(parents=True)
    rows = [f"{celeba_index(k):06d}.jpg {ident}" for k, (ident, _) in sorted(PHOTOS.items())]
    rows.insert(2, "000001.jpg 2880")  # CelebA images that are not in CelebA-HQ
    celeba.write_text("\n".join(rows) + "\n")
    return Miniature(root, write_gated(tmp / "gated"), celeba)


def make_celeba_dialog(tmp: Path, *, nested_masks: bool = False, rgb_mask_for: int | None = None) -> Miniature:
    """The CelebA-Dialog (HQ) layout. ``nested_masks`` puts the colour masks in the deep folder the
    release zip unpacks to; ``rgb_mask_for`` writes that photo's mask as RGB colours with one
    off-palette pixel."""
    root = tmp / "CelebA-Dialog"
    _write_photos(root / "image")
    (root / "identity").mkdir()
    rows = [f"{k}.jpg {ident}" for k, (ident, _) in sorted(PHOTOS.items())]
    (root / "identity" / "identity_CelebA-HQ.txt").write_text("\n".join(rows) + "\n")
    _attribute_file(root / "classification_label" / "CelebAMask-HQ-attribute-anno.txt", sorted(PHOTOS))
    fine = ["image_name\t" + "\t".join(FINEGRAINED_NAMES)]
    fine += [f"{k}.jpg\t" + "\t".join(str(v) for v in finegrained_values(k)) for k in sorted(PHOTOS) if k != 4]  # 4 has none
    (root / "classification_label" / "combined_annotation_hq.txt").write_text("\n".join(fine) + "\n")
    masks = root / "mask" / "CelebAMask-HQ-mask-color-palette"
    if nested_masks:
        masks = root / "masks_r" / "colorized_r" / "mnt" / "share" / "mask" / "CelebAMask-HQ-mask-color-palette"
    masks.mkdir(parents=True)
    for k in PHOTOS:
        labels = expected_labels(k)
        if k == rgb_mask_for:
            rgb = np.asarray(PALETTE, dtype=np.uint8)[labels]
            rgb[0, 0] = (10, 20, 30)  # not a palette colour -> kept as subject (label 255)
            Image.fromarray(rgb, "RGB").save(masks / f"{k}.png")
        else:
            palette_mask(labels).save(masks / f"{k}.png")
    return Miniature(root, write_gated(tmp / "gated"))
