"""What ``stellar dataset build`` reads: a local CelebAMask-HQ / CelebA-Dialog copy and the gated id list.

The source side of :mod:`stellar.data.build`, kept apart from the planning and writing there because
StellarNet's training data (:mod:`stellar.generate.stellarnet.data`) reads the same copy: locating
each input among its documented candidate places (:func:`locate_source`), the whitespace text
tables (:func:`read_label_table`, :func:`read_index_to_value`, :func:`read_stellar_ids`) and the
source masks (:func:`labels_from_colour_mask`, :func:`part_mask_paths`, :func:`labels_from_part_masks`).
Nothing here writes. The formats are described in :mod:`stellar.data.build`'s docstring.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from stellar.data import layout
from stellar.data.problems import Problem, error
from stellar.errors import DatasetError

#: CelebAMask-HQ label names; the index is the label id (0 = background).
LABEL_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip

#: The 18 part names of ``CelebAMask-HQ-mask-anno`` in combination order (label = position + 1).
PART_NAMES: tuple[str, ...] = LABEL_NAMES[1:]

#: CelebA-Dialog colour of each label (README "color-to-label parsing").
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
    (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
    (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
)  # fmt: skip

#: Label written for subject pixels of an unknown colour (drawn white).
UNKNOWN_LABEL = 255

#: Documented candidate locations of each source input, relative to the source root, in order.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "images": ("CelebA-HQ-img", "image", "image/image", "images"),
    "attributes": (
        "CelebAMask-HQ-attribute-anno.txt",
        "classification_label/CelebAMask-HQ-attribute-anno.txt",
    ),
    "hq_identity": ("identity/identity_CelebA-HQ.txt", "identity_CelebA-HQ.txt"),
    "mapping": ("CelebA-HQ-to-CelebA-mapping.txt",),
    "celeba_identity": ("identity_CelebA.txt", "Anno/identity_CelebA.txt"),
    "finegrained": (
        "classification_label/combined_annotation_hq.txt",
        "classification_label/combined_annotation.txt",
        "combined_annotation_hq.txt",
        "combined_annotation.txt",
    ),
    "colour_masks": (
        "mask/CelebAMask-HQ-mask-color-palette",
        "CelebAMask-HQ-mask-color-palette",
        "mask/colorized",
    ),
    "part_masks": ("CelebAMask-HQ-mask-anno", "mask/CelebAMask-HQ-mask-anno", "mask/binary"),
}
_MASK_DIR_NAMES = {"CelebAMask-HQ-mask-color-palette": "colour", "CelebAMask-HQ-mask-anno": "parts"}
_MASK_SEARCH_DEPTH = 10
_INDEX_RE = re.compile(r"^0*(\d+)(?:\.(?:jpg|jpeg|png))?$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class SourceFiles:
    """Where each input of a CelebAMask-HQ / CelebA-Dialog copy was found."""

    root: Path
    layout: str  # "CelebAMask-HQ" or "CelebA-Dialog"
    images: Path
    attributes: Path
    hq_identity: Path | None  # "k.jpg identity" (Dialog); else mapping + celeba_identity
    mapping: Path | None
    celeba_identity: Path | None
    finegrained: Path | None
    masks: Path | None
    mask_kind: str | None  # "colour" (one combined PNG per photo) or "parts" (per-part PNGs)



# ---------------------------------------------------------------------------------- source lookup
def _first_existing(root: Path, key: str, *, want_dir: bool) -> Path | None:
    for rel in _CANDIDATES[key]:
        p = root / rel
        if (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def _expected(root: Path, key: str) -> str:
    return " or ".join(str(root / rel) for rel in _CANDIDATES[key])


def _search_mask_dir(root: Path) -> tuple[Path, str] | None:
    """Breadth-first search for a folder named like a mask release, skipping photo folders."""
    frontier = [root]
    for _ in range(_MASK_SEARCH_DEPTH):
        nxt = []
        for folder in frontier:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if not e.is_dir(follow_symlinks=False) or e.name.startswith("."):
                    continue
                if e.name in _MASK_DIR_NAMES:
                    return Path(e.path), _MASK_DIR_NAMES[e.name]
                if e.name.isdigit():  # CelebAMask-HQ-mask-anno/0..14 or an output subject folder
                    continue
                nxt.append(Path(e.path))
        frontier = nxt
        if not frontier:
            break
    return None


def _required(root: Path, key: str, want_dir: bool, what: str, fix: str) -> Path:
    """The first existing candidate of ``key``, or a :class:`DatasetError` listing where it was looked for."""
    found = _first_existing(root, key, want_dir=want_dir)
    if found is None:
        raise DatasetError(f"no {what}: expected {_expected(root, key)}", root, fix)
    return found


def locate_source(root: str | Path, celeba_identity: str | Path | None = None) -> SourceFiles:
    """Find the photos, labels, identities and masks of a CelebAMask-HQ or CelebA-Dialog copy.

    Raises:
        DatasetError: a required input is missing; the message lists where it was looked for.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("source folder not found", root, "pass the CelebAMask-HQ or CelebA-Dialog (HQ) folder with --celebahq")
    images = _required(root, "images", True, "photo folder", "unpack CelebA-HQ-img (CelebAMask-HQ) or image.zip (CelebA-Dialog) inside this folder")
    attributes = _required(
        root, "attributes", False, "CelebA attribute file", "copy CelebAMask-HQ-attribute-anno.txt from the CelebAMask-HQ or CelebA-Dialog release there"
    )
    hq_identity = _first_existing(root, "hq_identity", want_dir=False)
    mapping = _first_existing(root, "mapping", want_dir=False)
    celeba_id: Path | None = None
    if celeba_identity is not None:
        celeba_id = Path(celeba_identity)
        if not celeba_id.is_file():
            raise DatasetError("CelebA identity file not found", celeba_id, "pass CelebA's Anno/identity_CelebA.txt with --celeba-identity")
        hq_identity = None  # the user asked for the CelebA route explicitly
        if mapping is None:
            raise DatasetError(
                f"--celeba-identity needs the CelebA-HQ to CelebA mapping: expected {_expected(root, 'mapping')}",
                root,
                "copy CelebA-HQ-to-CelebA-mapping.txt from the CelebAMask-HQ release there",
            )
    elif hq_identity is None:
        celeba_id = _first_existing(root, "celeba_identity", want_dir=False)
        if mapping is None or celeba_id is None:
            raise DatasetError(
                "no identity labels: expected an HQ identity file "
                f"({_expected(root, 'hq_identity')}) or CelebA-HQ-to-CelebA-mapping.txt plus CelebA's identity_CelebA.txt"
                f" (mapping {'found' if mapping else 'missing'}, identity_CelebA.txt {'found' if celeba_id else 'missing'})",
                root,
                "pass CelebA's Anno/identity_CelebA.txt with --celeba-identity (CelebAMask-HQ), or use the CelebA-Dialog "
                "release that ships identity/identity_CelebA-HQ.txt",
            )
    masks = _first_existing(root, "colour_masks", want_dir=True)
    mask_kind = "colour" if masks is not None else None
    if masks is None:
        masks = _first_existing(root, "part_masks", want_dir=True)
        mask_kind = "parts" if masks is not None else None
    if masks is None:
        found = _search_mask_dir(root)
        if found is not None:
            masks, mask_kind = found
    if masks is None:
        raise DatasetError(
            "no segmentation masks: expected "
            f"{_expected(root, 'colour_masks')} (one {{k}}.png per photo) or {_expected(root, 'part_masks')} "
            "({k//2000}/{k:05d}_{part}.png)",
            root,
            "unpack CelebAMask-HQ-mask-anno (CelebAMask-HQ) or the colorized mask zip (CelebA-Dialog) inside this folder",
        )
    dialog = images.name != "CelebA-HQ-img" or hq_identity is not None
    return SourceFiles(
        root=root,
        layout="CelebA-Dialog" if dialog else "CelebAMask-HQ",
        images=images,
        attributes=attributes,
        hq_identity=hq_identity,
        mapping=mapping if hq_identity is None else None,
        celeba_identity=celeba_id if hq_identity is None else None,
        finegrained=_first_existing(root, "finegrained", want_dir=False),
        masks=masks,
        mask_kind=mask_kind,
    )


# ------------------------------------------------------------------------------------ text tables
def _index_of(token: str) -> int | None:
    """``"119614.jpg"``, ``"000123.jpg"``, ``"42"`` -> the integer; anything else -> None."""
    m = _INDEX_RE.match(token.strip())
    return int(m.group(1)) if m else None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of each non-blank line; a BOM is dropped."""
    try:
        with open(path, encoding="utf-8-sig", errors="strict") as f:
            for number, text in enumerate(f, 1):
                text = text.strip()
                if text:
                    yield number, text
    except UnicodeDecodeError:
        raise DatasetError("not UTF-8 / ASCII text", path, "use the file as released (plain text)") from None
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror or exc})", path, "check the file's permissions") from None


def _where(path: Path, line: int) -> str:
    return f"{path}:{line}"


def read_stellar_ids(path: str | Path, problems: list[Problem]) -> list[tuple[int, str, int]]:
    """``celebahq_ids.txt`` -> ``[(celebahq_index, split, line number), ...]`` in file order."""
    path = Path(path)
    rows: list[tuple[int, str, int]] = []
    seen: dict[int, int] = {}
    for number, text in _lines(path):
        parts = [p.strip() for p in text.split(",")]
        index = _index_of(parts[0]) if len(parts) == 2 else None
        split = parts[1].lower() if len(parts) == 2 else ""
        if index is None or split not in layout.SPLITS:
            if not rows and number == 1:  # the header line
                continue
            problems.append(
                error(
                    _where(path, number),
                    f"malformed line {text!r}: expected '<celebahq_index>.jpg,<test|val>'",
                    "restore the line from the gated Stellar download",
                )
            )
            continue
        if index in seen:
            problems.append(error(_where(path, number), f"{index}.jpg is listed again (first on line {seen[index]})", "list each photo once"))
            continue
        seen[index] = number
        rows.append((index, split, number))
    if not rows and not problems:
        problems.append(error(path, "lists no photos", "use the celebahq_ids.txt of the gated Stellar download"))
    return rows


def _table_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Lines of a whitespace table as token lists, with a leading count line ("30000") dropped."""
    first = True
    for number, text in _lines(path):
        tokens = text.split()
        if first and len(tokens) == 1 and tokens[0].isdigit():
            first = False
            continue
        first = False
        yield number, tokens


def read_label_table(
    path: str | Path, wanted: set[int], problems: list[Problem], *, kind: str
) -> tuple[list[str], dict[int, dict[str, int]], set[int]]:
    """A CelebA-style table: [count line], names line, ``k.jpg v1 v2 ...`` rows.

    Returns (value names, {k: {name: value}} for the valid wanted rows, every wanted k that has a
    row, valid or not). ``kind="binary"``: values must be ±1 (0 is read as -1, as
    :mod:`stellar.data.dataset` does); ``kind="finegrained"``: integers (degrees). Only rows whose
    index is in ``wanted`` are validated. The header may also name the file column (one more name
    than values), as the fine-grained file does.
    """
    path = Path(path)
    names: list[str] | None = None
    value_names: list[str] | None = None
    out: dict[int, dict[str, int]] = {}
    seen: set[int] = set()
    for number, tokens in _table_rows(path):
        index = _index_of(tokens[0])
        if names is None:
            if index is not None and all(_is_int(t) for t in tokens[1:]):
                problems.append(error(_where(path, number), "no attribute-name header line before the first row", "use the file as released"))
                return [], {}, set()
            names = tokens
            continue
        if index is None:
            problems.append(error(_where(path, number), f"row does not start with an image name: {tokens[0]!r}", "restore the line from the release"))
            continue
        if value_names is None:
            value_names = names[1:] if len(names) == len(tokens) else names
        if index not in wanted:
            continue
        seen.add(index)
        values = tokens[1:]
        if len(values) != len(value_names):
            problems.append(
                error(_where(path, number), f"{len(values)} values for {len(value_names)} attribute names", "restore the line from the release")
            )
            continue
        row: dict[str, int] = {}
        for name, value in zip(value_names, values):
            if not _is_int(value) or (kind == "binary" and int(value) not in (-1, 0, 1)):
                expected = "a ±1 label" if kind == "binary" else "an integer"
                problems.append(error(_where(path, number), f"{name} = {value!r} is not {expected}", "restore the line from the release"))
                break
            v = int(value)
            row[name] = (1 if v == 1 else -1) if kind == "binary" else v
        else:
            out[index] = row
    if names is None:
        problems.append(error(path, "empty table", "use the file as released"))
        return [], {}, set()
    return (value_names if value_names is not None else names), out, seen


def _is_int(token: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", token))


def read_index_to_value(path: str | Path, wanted: set[int], problems: list[Problem], *, columns: int, key_col: int = 0, value_col: int = 1) -> dict[int, str]:
    """Rows of ``columns`` whitespace tokens keyed by the image index in ``key_col``; a header row is skipped."""
    path = Path(path)
    out: dict[int, str] = {}
    first = True
    for number, text in _lines(path):
        tokens = text.split()
        index = _index_of(tokens[key_col]) if len(tokens) == columns else None
        if index is None:
            if first:
                first = False
                continue  # header ("idx orig_idx orig_file") or a count line
            problems.append(error(_where(path, number), f"malformed line {text!r}: expected {columns} columns", "restore the line from the release"))
            continue
        first = False
        if index in wanted:
            out[index] = tokens[value_col]
    return out


# ------------------------------------------------------------------------------------------ masks
_COLOUR_TO_LABEL = {c: i for i, c in enumerate(PALETTE)}


def labels_from_colour_mask(path: Path) -> tuple[np.ndarray, int]:
    """A combined mask file -> (uint8 label map, number of pixels of an unknown non-black colour)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode == "P":
            idx = np.asarray(im)
            if idx.max(initial=0) <= len(PALETTE) - 1:
                return idx.astype(np.uint8), 0
            rgb = np.asarray(im.convert("RGB"))
        elif im.mode in ("L", "I", "I;16"):
            arr = np.asarray(im).astype(np.int64)
            labels = np.where(arr <= len(PALETTE) - 1, arr, UNKNOWN_LABEL).astype(np.uint8)
            return labels, 0
        else:
            rgb = np.asarray(im.convert("RGB"))
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    labels = np.full(code.shape, UNKNOWN_LABEL, dtype=np.uint8)
    labels[code == 0] = 0
    for label, (r, g, b) in enumerate(PALETTE):
        labels[code == ((r << 16) | (g << 8) | b)] = label
    unknown = int((labels == UNKNOWN_LABEL).sum())
    return labels, unknown


def part_mask_paths(folder: Path, celebahq_index: int) -> list[tuple[int, Path]]:
    """``(label, path)`` of the part masks that exist for a photo, in combination order."""
    sub = folder / str(celebahq_index // 2000)
    out = []
    for label, part in enumerate(PART_NAMES, 1):
        p = sub / f"{celebahq_index:05d}_{part}.png"
        if p.is_file():
            out.append((label, p))
    return out


def labels_from_part_masks(parts: list[tuple[int, Path]]) -> np.ndarray:
    """Combine binary part masks as CelebAMask-HQ's ``g_mask.py``: non-zero = part, later parts win."""
    from PIL import Image

    labels: np.ndarray | None = None
    for label, path in parts:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "1", "RGB", "RGBA") else im)
        on = (arr.max(axis=-1) if arr.ndim == 3 else arr) != 0
        if labels is None:
            labels = np.zeros(on.shape, dtype=np.uint8)
        if on.shape != labels.shape:
            raise ValueError(f"{path.name} is {on.shape[1]}x{on.shape[0]} but earlier parts are {labels.shape[1]}x{labels.shape[0]}")
        labels[on] = label
    if labels is None:
        raise ValueError("no part masks")
    return labels
