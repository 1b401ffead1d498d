"""Build the official Stellar layout from CelebAMask-HQ (or CelebA-Dialog HQ) + the gated Stellar files.

``stellar dataset build --celebahq SRC --stellar-files GATED --out STELLAR [--link]``

The Stellar dataset (DESIGN §5) is 400 CelebAMask-HQ identities with two photos each. The photos,
masks and CelebA labels are not redistributed: this module assembles them from a local copy of
CelebAMask-HQ plus the gated files the Stellar authors hand out. It only *reads* the source.

Inputs
======

Gated Stellar files (``GATED/``):

- ``celebahq_ids.txt``: one header line, then ``<celebahq_index>.jpg,<test|val>`` per line. A first
  line that already parses as a row is taken as data (some copies lack the header).
- ``stellar_t.json``: ``{"000": {"prompts": [...], "detectables": [[...]], "categories": [[...]]}, ...}``
  keyed by the subject folder it belongs to; every subject must have an entry.
- ``stellar_h.json``: ``{"000": {"prompts": [...]} or [...], ...}``; every *test* subject must have
  an entry (val subjects have Stellar-T prompts only in the official release, but an entry is
  written if present).
- ``objects.txt``: the detectable vocabulary, copied byte for byte.

Source, CelebAMask-HQ release (Lee et al., MaskGAN, CVPR 2020; its ``README.txt``)::

    SRC/CelebA-HQ-img/{k}.jpg                               1024x1024 photos, k = 0..29999
    SRC/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png   512x512 binary part masks
    SRC/CelebAMask-HQ-attribute-anno.txt                    "30000" / 40 names / "k.jpg v1 ... v40" (±1)
    SRC/CelebA-HQ-to-CelebA-mapping.txt                     "idx orig_idx orig_file" / "0 119613 119614.jpg"
    identity_CelebA.txt (CelebA, --celeba-identity)         "000001.jpg 2880" = CelebA file -> identity

Source, CelebA-Dialog HQ repackaging (Jiang et al., Talk-to-Edit, ICCV 2021; github
ziqihuangg/CelebA-Dialog README), which the official Stellar instructions use::

    SRC/image/{k}.jpg                                       the 30,000 CelebA-HQ photos
    SRC/identity/identity_CelebA-HQ.txt                     "k.jpg identity" per line
    SRC/classification_label/CelebAMask-HQ-attribute-anno.txt    as above
    SRC/classification_label/combined_annotation_hq.txt     fine-grained labels (header + "k.jpg\\t...")
    SRC/mask/CelebAMask-HQ-mask-color-palette/{k}.png       combined 512x512 "colorized" masks

Copies of both releases differ in where the zip files were unpacked, so every input has a short
list of documented candidate locations (:data:`_CANDIDATES`), tried in order; the mask folders are
also searched for by name (bounded depth) because the Dialog colour-mask zip unpacks into a deep
absolute path. A missing input raises :class:`~stellar.errors.DatasetError` naming what was expected
where. Identities come from an HQ identity file when the source has one, else from the
HQ->CelebA mapping plus CelebA's ``identity_CelebA.txt`` (``--celeba-identity``, or found in the
source). Text tables are parsed by whitespace (tabs or runs of spaces), with an optional count line
and an optional column-name header; rows are keyed by the integer of their file name, so
``119614.jpg`` and ``119614`` and zero-padded forms match. Only rows the build needs are validated, and
a malformed one is reported with its file and line number.

Masks
=====

The 19 CelebAMask-HQ labels: 0 background, 1 skin, 2 nose, 3 eye_g, 4 l_eye, 5 r_eye, 6 l_brow,
7 r_brow, 8 l_ear, 9 r_ear, 10 mouth, 11 u_lip, 12 l_lip, 13 hair, 14 hat, 15 ear_r, 16 neck_l,
17 neck, 18 cloth.

- Part masks are combined as CelebAMask-HQ's own ``g_mask.py`` does: parts in label order, a pixel
  belongs to a part where its mask is non-zero, later parts overwrite earlier ones.
- Colour masks: a palette PNG whose indices are all ≤ 18 is read as label indices (the Dialog README
  reads them with ``np.array(Image.open(f))``); otherwise (RGB, or other indices) each pixel's colour
  is mapped back through the Dialog colour list. A non-black colour that is not in the list is kept
  as subject with label 255 (white) and counted in a warning; black is background. Greyscale masks:
  values ≤ 18 are labels, larger values are subject (255).
- Output ``N_bg.png`` = palette PNG of label indices with the CelebA-Dialog colours, so the parts
  are preserved and "subject = value > 0" (DESIGN §5) holds. Masks keep their 512x512 resolution
  (readers resize with nearest neighbour). A photo with no mask file / no part files gets no
  ``_bg.png`` (the layout allows absent masks) and a warning.

Output and guarantees
=====================

Subjects are ordered by (split, CelebA identity id) with test first and numbered ``000``, ``001``,
...; a subject's photos by ascending CelebA-HQ index -> ``0.jpg``, ``1.jpg``. With the real files this
gives test = 000–199 and val = 200–399. When the split sizes differ from that (a partial or
miniature build), ``splits.json`` (our optional extension) records the split of every subject, since
the official rule would misclassify them; it is not written when the official rule is right (an
existing one, e.g. from an earlier build into the same folder, is rewritten, never left stale).

- The source is never written: photos are copied byte for byte (never re-encoded) or, with
  ``link=True``, hard-linked (falling back to a copy, with one warning, where the file system
  refuses, e.g. across devices). Every output file is written atomically (temp file + rename), so a
  hard-linked photo is never modified in place. The output folder may not lie inside the source.
- Rerunning is a no-op: a photo that already is a hard link to its source, or any file whose content
  already matches (photos, JSON, text: bytes; masks: decoded labels, mode and palette) is left alone
  and counted as up to date. With ``link=True`` an identical *copy* on the same file system is
  replaced by a link (that is what was asked for); a plain rerun keeps existing links.
- Decisions: an identity with other than 2 photos in ``celebahq_ids.txt`` keeps all its photos
  (``0.jpg``, ``1.jpg``, ``2.jpg`` ...) and gets a warning; an identity whose photos are listed under
  different splits is an error; a photo without a fine-grained row (CelebA-HQ 5380 has none in the
  Dialog release) gets ``{}`` and a warning; numbered folders in the output that the build did not
  produce are reported, never deleted.
- Everything is validated before anything is written; all input problems are raised together.
  After writing, the output is loaded with :class:`~stellar.data.dataset.StellarDataset` (strict).

Code: the readers of the source copy (locating inputs, text tables, source masks) live in
:mod:`stellar.data.build_sources`, shared with StellarNet's training data; this module plans
(validates) and writes. Every name remains importable from here.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stellar.data import layout
from stellar.data.build_sources import (  # noqa: F401  (re-exported: the public names stay importable from here)
    LABEL_NAMES,
    PALETTE,
    PART_NAMES,
    UNKNOWN_LABEL,
    SourceFiles,
    _expected,
    _first_existing,
    _index_of,
    _where,
    labels_from_colour_mask,
    labels_from_part_masks,
    locate_source,
    part_mask_paths,
    read_index_to_value,
    read_label_table,
    read_stellar_ids,
)
from stellar.data.problems import Problem, error, warning
from stellar.errors import DatasetError
from stellar.fileio import atomic_write_bytes, json_bytes, write_if_changed

IDS_FILE = "celebahq_ids.txt"
PROMPTS_T_SOURCE = "stellar_t.json"
PROMPTS_H_SOURCE = "stellar_h.json"

_MAX_LISTED = 20


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class PlannedPhoto:
    index: int  # photo index in the subject folder (0, 1, ...)
    celebahq_index: int
    source: Path
    attributes: dict[str, int] = field(hash=False, compare=False)
    finegrained: dict[str, int] = field(hash=False, compare=False)


@dataclass(frozen=True)
class PlannedSubject:
    id: str
    split: str
    identity: str
    photos: tuple[PlannedPhoto, ...]
    prompts_t: object = field(hash=False, compare=False)
    prompts_h: object | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class BuildPlan:
    """Everything :func:`build_dataset` will write, validated; made by :func:`plan_build` (no writes)."""

    source: SourceFiles
    subjects: tuple[PlannedSubject, ...]
    objects_path: Path
    warnings: tuple[Problem, ...]
    write_splits: bool


@dataclass(frozen=True)
class BuildReport:
    """What a build did. ``str(report)`` is the summary the CLI prints."""

    out: Path
    source: Path
    source_layout: str
    subjects: int
    test_subjects: int
    val_subjects: int
    photos_copied: int
    photos_linked: int
    photos_up_to_date: int
    masks_written: int
    masks_up_to_date: int
    masks_missing: int
    files_written: int  # attributes, prompts, objects.txt, splits.json
    files_up_to_date: int
    warnings: tuple[Problem, ...]
    seconds: float

    @property
    def written(self) -> int:
        """Files created or replaced by this run (0 on a rerun over an up-to-date output)."""
        return self.photos_copied + self.photos_linked + self.masks_written + self.files_written

    @property
    def up_to_date(self) -> int:
        return self.photos_up_to_date + self.masks_up_to_date + self.files_up_to_date

    def __str__(self) -> str:
        lines = [
            f"built {self.out} from {self.source} ({self.source_layout}) in {self.seconds:.1f} s",
            f"  subjects {self.subjects} (test {self.test_subjects}, val {self.val_subjects})",
            f"  photos   copied {self.photos_copied}, hard-linked {self.photos_linked}, up to date {self.photos_up_to_date}",
            f"  masks    written {self.masks_written}, up to date {self.masks_up_to_date}, missing {self.masks_missing}",
            f"  other    written {self.files_written}, up to date {self.files_up_to_date}",
            f"  total    {self.written} file(s) written, {self.up_to_date} up to date",
        ]
        for w in self.warnings[:_MAX_LISTED]:
            lines.append(str(w))
        if len(self.warnings) > _MAX_LISTED:
            lines.append(f"... and {len(self.warnings) - _MAX_LISTED} more warning(s)")
        lines.append(f"{len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _palette_bytes() -> list[int]:
    flat = [v for c in PALETTE for v in c]
    flat += [0, 0, 0] * (UNKNOWN_LABEL - len(PALETTE)) + [255, 255, 255]
    return flat


def mask_png_bytes(labels: np.ndarray) -> bytes:
    """Encode a label map as a palette PNG with the CelebA-Dialog colours."""
    import io

    from PIL import Image

    im = Image.fromarray(labels.astype(np.uint8), "P")
    im.putpalette(_palette_bytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _mask_up_to_date(path: Path, labels: np.ndarray) -> bool:
    from PIL import Image

    if not path.is_file():
        return False
    try:
        with Image.open(path) as im:
            if im.mode != "P":
                return False
            return np.array_equal(np.asarray(im), labels) and im.getpalette()[: 3 * len(PALETTE)] == _palette_bytes()[: 3 * len(PALETTE)]
    except (OSError, SyntaxError, ValueError):
        return False


# ---------------------------------------------------------------------------------------- planning
def _identity_key(identity: str) -> tuple:
    return (0, int(identity), identity) if identity.isdigit() else (1, 0, identity)


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DatasetError("not UTF-8 JSON", path, "use the file of the gated Stellar download") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", path, "use the file of the gated Stellar download") from None
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror or exc})", path, "check the file's permissions") from None


def _check_prompt_entry(entry: object, where: str, kind: str, problems: list[Problem]) -> None:
    """The shape :class:`StellarDataset` reads: prompts with one ``{}`` and per-prompt lists of strings."""
    if kind == "H" and isinstance(entry, list):
        entry = {"prompts": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("prompts"), list):
        problems.append(error(where, "expected an object with a 'prompts' list", "use the file of the gated Stellar download"))
        return
    prompts = entry["prompts"]
    for i, text in enumerate(prompts):
        if not isinstance(text, str) or text.count(layout.PLACEHOLDER) != 1:
            problems.append(error(where, f"prompt {i} {text!r} must be a string with exactly one '{{}}'", "fix that prompt"))
    for key in ("detectables", "categories"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) != len(prompts):
            problems.append(error(where, f"'{key}' must be a list with one entry per prompt ({len(prompts)})", "fix the entry"))
        elif not all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)) for v in value):
            problems.append(error(where, f"'{key}' entries must be lists of strings", "fix the entry"))


def _subject_width(n: int) -> int:
    return max(3, len(str(max(n - 1, 0))))


def plan_build(
    celebahq: str | Path, stellar_files: str | Path, *, celeba_identity: str | Path | None = None
) -> BuildPlan:
    """Read and validate every input; return what a build will write. Writes nothing.

    Raises:
        DatasetError: a missing input, or every problem found in the inputs at once (file:line: message).
    """
    source = locate_source(celebahq, celeba_identity)
    gated = Path(stellar_files)
    if not gated.is_dir():
        raise DatasetError("Stellar files folder not found", gated, "pass the folder of the gated Stellar download with --stellar-files")
    for name in (IDS_FILE, PROMPTS_T_SOURCE, PROMPTS_H_SOURCE, layout.OBJECTS_FILE):
        if not (gated / name).is_file():
            raise DatasetError(
                f"missing {name}",
                gated,
                f"put {IDS_FILE}, {PROMPTS_T_SOURCE}, {PROMPTS_H_SOURCE} and {layout.OBJECTS_FILE} from the gated Stellar download there",
            )
    problems: list[Problem] = []
    notes: list[Problem] = []

    ids_path = gated / IDS_FILE
    rows = read_stellar_ids(ids_path, problems)
    wanted = {k for k, _, _ in rows}
    line_of = {k: n for k, _, n in rows}

    missing_photos = [k for k, _, _ in rows if not (source.images / f"{k}.jpg").is_file()]
    for k in missing_photos:
        problems.append(
            error(_where(ids_path, line_of[k]), f"{k}.jpg is not in {source.images}", "use a complete CelebA-HQ / CelebA-Dialog copy")
        )

    attr_names, attributes, attr_rows = read_label_table(source.attributes, wanted, problems, kind="binary")
    if attr_names:
        missing_aps = [a for a in layout.APS_ATTRIBUTES if a not in attr_names]
        if missing_aps:
            problems.append(error(source.attributes, f"header lacks APS attribute(s) {', '.join(missing_aps)}", "use the file as released"))
        elif set(attr_names) != set(layout.CELEBA_ATTRIBUTES):
            notes.append(warning(source.attributes, "attribute names differ from CelebA's 40", "check that this is CelebAMask-HQ-attribute-anno.txt"))
    if attr_names:
        for k in sorted(wanted - attr_rows):
            problems.append(error(source.attributes, f"no row for {k}.jpg (listed in {IDS_FILE} line {line_of[k]})", "use the complete file"))

    identities = _read_identities(source, wanted, problems, line_of)

    finegrained: dict[int, dict[str, int]] = {}
    if source.finegrained is not None:
        _, finegrained, fine_rows = read_label_table(source.finegrained, wanted, problems, kind="finegrained")
        for k in sorted(wanted - fine_rows):
            notes.append(warning(source.finegrained, f"no fine-grained labels for {k}.jpg: written as {{}}", ""))
    elif source.layout == "CelebA-Dialog":
        notes.append(
            warning(
                source.root,
                f"no fine-grained label file ({_expected(source.root, 'finegrained')}): finegrained_attributes left empty",
                "copy combined_annotation_hq.txt from CelebA-Dialog's classification_label/ to get them",
            )
        )

    # Group photos by identity; each identity is one subject.
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for k, split, _ in rows:
        if k in identities:
            groups[identities[k]].append((k, split))
    subjects_order = []
    for identity, photos in groups.items():
        splits = {s for _, s in photos}
        if len(splits) > 1:
            listed = ", ".join(f"{k}.jpg ({s}, line {line_of[k]})" for k, s in sorted(photos))
            problems.append(error(ids_path, f"identity {identity} is listed under both splits: {listed}", "give all photos of a person one split"))
            continue
        if len(photos) != 2:
            notes.append(
                warning(
                    ids_path,
                    f"identity {identity} has {len(photos)} photo(s) ({', '.join(f'{k}.jpg' for k, _ in sorted(photos))}); "
                    "all are kept" + ("; SIS equals IPS for it" if len(photos) == 1 else ""),
                    "Stellar has exactly 2 photos per identity: check celebahq_ids.txt",
                )
            )
        subjects_order.append((layout.SPLITS.index(photos[0][1]), _identity_key(identity), identity, photos[0][1], sorted(k for k, _ in photos)))
    subjects_order.sort(key=lambda t: (t[0], t[1]))
    width = _subject_width(len(subjects_order))
    ids = [f"{i:0{width}d}" for i in range(len(subjects_order))]

    prompts_t = _load_json(gated / PROMPTS_T_SOURCE)
    prompts_h = _load_json(gated / PROMPTS_H_SOURCE)
    split_of = {sid: entry[3] for sid, entry in zip(ids, subjects_order)}
    for path, data, kind in ((gated / PROMPTS_T_SOURCE, prompts_t, "T"), (gated / PROMPTS_H_SOURCE, prompts_h, "H")):
        if not isinstance(data, dict):
            problems.append(error(path, 'expected an object keyed by subject folder ({"000": {...}, ...})', "use the gated file"))
            continue
        unknown = sorted(k for k in data if k not in split_of)
        if unknown:
            problems.append(
                error(
                    path,
                    f"keyed by subject(s) that the build does not produce: {', '.join(unknown[:_MAX_LISTED])}"
                    f"{' ...' if len(unknown) > _MAX_LISTED else ''} (it produces {len(ids)}: {ids[0] if ids else '-'}..{ids[-1] if ids else '-'})",
                    f"use the prompt files that belong to this {IDS_FILE}",
                )
            )
        needed = [s for s in ids if kind == "T" or split_of[s] == "test"]
        absent = [s for s in needed if s not in data]
        if absent:
            problems.append(
                error(
                    path,
                    f"no prompts for subject(s) {', '.join(absent[:_MAX_LISTED])}{' ...' if len(absent) > _MAX_LISTED else ''}",
                    f"use the prompt files that belong to this {IDS_FILE}",
                )
            )
        for key, entry in data.items():
            if key in split_of:
                _check_prompt_entry(entry, f"{path} [{key!r}]", kind, problems)

    objects_path = gated / layout.OBJECTS_FILE
    try:
        objects_text = objects_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(error(objects_path, "not UTF-8 text", "use the file of the gated Stellar download"))
        objects_text = "x"
    if not objects_text.strip():
        problems.append(error(objects_path, "is empty", "use the file of the gated Stellar download"))

    errors = [p for p in problems if p.severity == "error"]
    if errors:
        listed = "\n".join(str(p) for p in errors[:_MAX_LISTED])
        more = f"\n... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise DatasetError(f"{len(errors)} problem(s) in the inputs; nothing was written:\n{listed}{more}")

    subjects = []
    for sid, (_, _, identity, split, indices) in zip(ids, subjects_order):
        photos = tuple(
            PlannedPhoto(
                index=i,
                celebahq_index=k,
                source=source.images / f"{k}.jpg",
                attributes=attributes[k],
                finegrained=finegrained.get(k, {}),
            )
            for i, k in enumerate(indices)
        )
        h = prompts_h.get(sid) if isinstance(prompts_h, dict) else None
        subjects.append(PlannedSubject(sid, split, identity, photos, prompts_t[sid], h))
    write_splits = any(layout.official_split(s.id) != s.split for s in subjects)
    return BuildPlan(source, tuple(subjects), objects_path, tuple(notes), write_splits)


def _read_identities(source: SourceFiles, wanted: set[int], problems: list[Problem], line_of: dict[int, int]) -> dict[int, str]:
    """CelebA-HQ index -> CelebA identity id (as written in the identity file)."""
    if source.hq_identity is not None:
        identities = read_index_to_value(source.hq_identity, wanted, problems, columns=2)
        where = source.hq_identity
    else:
        assert source.mapping is not None and source.celeba_identity is not None  # guaranteed by locate_source
        mapped = read_index_to_value(source.mapping, wanted, problems, columns=3, key_col=0, value_col=2)
        celeba_index = {k: _index_of(v) for k, v in mapped.items()}
        for k, v in celeba_index.items():
            if v is None:
                problems.append(error(source.mapping, f"{k}: orig_file {mapped[k]!r} is not a CelebA file name", "use the file as released"))
        for k in sorted(wanted - mapped.keys()):
            problems.append(error(source.mapping, f"no row for CelebA-HQ index {k} (listed in {IDS_FILE} line {line_of[k]})", "use the complete file"))
        by_celeba = read_index_to_value(source.celeba_identity, {v for v in celeba_index.values() if v is not None}, problems, columns=2)
        identities = {}
        for k, v in celeba_index.items():
            if v is None:
                continue
            if v in by_celeba:
                identities[k] = by_celeba[v]
            else:
                problems.append(
                    error(source.celeba_identity, f"no identity for CelebA file {v:06d}.jpg (= CelebA-HQ {k}.jpg)", "use CelebA's complete identity_CelebA.txt")
                )
        return identities
    for k in sorted(wanted - identities.keys()):
        problems.append(error(where, f"no identity for {k}.jpg (listed in {IDS_FILE} line {line_of[k]})", "use the complete file"))
    return identities


# ----------------------------------------------------------------------------------------- writing
def _tmp_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{os.getpid()}.tmp")


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


_LINK_REFUSED = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


def place_photo(src: Path, dst: Path, *, link: bool) -> tuple[str, bool]:
    """Put a byte-identical copy (or hard link) of ``src`` at ``dst``.

    Returns (``"copied" | "linked" | "up_to_date"``, whether a requested hard link had to fall back
    to a copy). The source is only ever read or linked to; ``dst`` is replaced atomically.
    """
    if dst.is_file():
        s, d = src.stat(), dst.stat()
        if (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino):
            return "up_to_date", False
        if _same_bytes(src, dst) and (not link or s.st_dev != d.st_dev):
            return "up_to_date", False
    tmp = _tmp_path(dst)
    try:
        if link:
            try:
                os.link(src, tmp)
                os.replace(tmp, dst)
                return "linked", False
            except OSError as exc:
                if exc.errno not in _LINK_REFUSED:
                    raise
                fell_back = True
        else:
            fell_back = False
        import shutil

        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return "copied", fell_back
    finally:
        if tmp.exists():
            tmp.unlink()


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def build_dataset(
    celebahq: str | Path,
    stellar_files: str | Path,
    out: str | Path,
    *,
    celeba_identity: str | Path | None = None,
    link: bool = False,
    progress: bool = False,
) -> BuildReport:
    """Build (or bring up to date) the official Stellar layout in ``out``.

    Args:
        celebahq: CelebAMask-HQ or CelebA-Dialog (HQ) folder; only read.
        stellar_files: folder with ``celebahq_ids.txt``, ``stellar_t.json``, ``stellar_h.json``, ``objects.txt``.
        out: output folder (created); must not be inside ``celebahq`` or ``stellar_files``.
        celeba_identity: CelebA's ``identity_CelebA.txt`` (CelebAMask-HQ release, which has no HQ identity file).
        link: hard-link the photos instead of copying them (copy + warning where impossible).
        progress: show a progress bar over subjects.

    Returns:
        A :class:`BuildReport`; a rerun over an up-to-date output reports 0 files written.

    Raises:
        DatasetError: missing or malformed inputs (all listed, nothing written), an output inside the
            source, or a built dataset that fails strict loading.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    for src in (Path(celebahq), Path(stellar_files)):
        if src.exists() and _inside(out, src):
            raise DatasetError(
                f"the output folder is inside the source folder {src}", out, "choose an output folder outside the source (the source is read only)"
            )
    plan = plan_build(celebahq, stellar_files, celeba_identity=celeba_identity)
    notes = list(plan.warnings)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = defaultdict(int)
    fallback_warned = False
    unknown_colour: list[str] = []

    for subject in tqdm(plan.subjects, desc="building subjects", unit="subject", disable=not progress):
        folder = out / subject.id
        folder.mkdir(exist_ok=True)
        for photo in subject.photos:
            status, fell_back = place_photo(photo.source, folder / f"{photo.index}.jpg", link=link)
            counts[f"photos_{status}"] += 1
            if fell_back and not fallback_warned:
                fallback_warned = True
                notes.append(
                    warning(out, f"cannot hard-link from {plan.source.images} (different file system?): photos were copied", "")
                )
            k = photo.celebahq_index
            labels = _source_labels(plan.source, k, notes, unknown_colour)
            if labels is None:
                counts["masks_missing"] += 1
            else:
                dst = folder / layout.mask_name(photo.index)
                if _mask_up_to_date(dst, labels):
                    counts["masks_up_to_date"] += 1
                else:
                    atomic_write_bytes(dst, mask_png_bytes(labels))
                    counts["masks_written"] += 1
            record = {
                "attributes": photo.attributes,
                "finegrained_attributes": photo.finegrained,
                "identity": subject.identity,
                "original_filename": f"{k}.jpg",
            }
            _count(counts, write_if_changed(folder / layout.attributes_name(photo.index), json_bytes(record, indent=4)))
        _count(counts, write_if_changed(folder / layout.PROMPTS_T_FILE, json_bytes(subject.prompts_t, indent=4)))
        if subject.prompts_h is not None:
            _count(counts, write_if_changed(folder / layout.PROMPTS_H_FILE, json_bytes(subject.prompts_h, indent=4)))

    _count(counts, write_if_changed(out / layout.OBJECTS_FILE, plan.objects_path.read_bytes()))
    if plan.write_splits or (out / layout.SPLITS_FILE).is_file():  # never leave a stale split file behind
        splits = {s: [x.id for x in plan.subjects if x.split == s] for s in layout.SPLITS}
        _count(counts, write_if_changed(out / layout.SPLITS_FILE, json_bytes(splits, indent=4)))
    if unknown_colour:
        notes.append(
            warning(
                plan.source.masks or plan.source.root,
                f"{len(unknown_colour)} mask(s) have colours outside the CelebA-Dialog palette (kept as subject, label 255): "
                + ", ".join(unknown_colour[:5]) + (" ..." if len(unknown_colour) > 5 else ""),
                "check that these are the CelebA-Dialog colorized masks",
            )
        )
    produced = {s.id for s in plan.subjects}
    stray = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.isdigit() and p.name not in produced)
    if stray:
        notes.append(
            warning(out, f"folder(s) not produced by this build: {', '.join(stray[:10])}{' ...' if len(stray) > 10 else ''}", "delete them if they are stale")
        )

    from stellar.data.dataset import StellarDataset

    try:
        StellarDataset(out)
    except DatasetError as exc:
        raise DatasetError(f"the built dataset does not load cleanly:\n{exc}", out, f"run `stellar dataset check {out}`; folders left from another build can cause this, else report it as a bug") from None

    return BuildReport(
        out=out,
        source=plan.source.root,
        source_layout=plan.source.layout,
        subjects=len(plan.subjects),
        test_subjects=sum(s.split == "test" for s in plan.subjects),
        val_subjects=sum(s.split == "val" for s in plan.subjects),
        photos_copied=counts["photos_copied"],
        photos_linked=counts["photos_linked"],
        photos_up_to_date=counts["photos_up_to_date"],
        masks_written=counts["masks_written"],
        masks_up_to_date=counts["masks_up_to_date"],
        masks_missing=counts["masks_missing"],
        files_written=counts["files_written"],
        files_up_to_date=counts["files_up_to_date"],
        warnings=tuple(notes),
        seconds=time.perf_counter() - t0,
    )


def _count(counts: dict[str, int], written: bool) -> None:
    counts["files_written" if written else "files_up_to_date"] += 1


def _source_labels(source: SourceFiles, k: int, notes: list[Problem], unknown_colour: list[str]) -> np.ndarray | None:
    """The label map of CelebA-HQ photo ``k`` from the source masks, or None (with a warning)."""
    assert source.masks is not None
    try:
        if source.mask_kind == "colour":
            path = source.masks / f"{k}.png"
            if not path.is_file():
                notes.append(warning(path, f"no mask for {k}.jpg: its _bg.png is not written", "copy the mask from the release"))
                return None
            labels, unknown = labels_from_colour_mask(path)
            if unknown:
                unknown_colour.append(f"{k}.png ({unknown} px)")
            return labels
        parts = part_mask_paths(source.masks, k)
        if not parts:
            notes.append(
                warning(
                    source.masks / str(k // 2000),
                    f"no part masks {k:05d}_*.png for {k}.jpg: its _bg.png is not written",
                    "copy the masks from the release",
                )
            )
            return None
        return labels_from_part_masks(parts)
    except (OSError, SyntaxError, ValueError) as exc:
        notes.append(warning(source.masks, f"cannot read the mask of {k}.jpg ({exc}): its _bg.png is not written", "re-extract the masks"))
        return None
