"""Bring your own subjects: folders of photos + a prompts file -> a Stellar-layout dataset.

``stellar dataset import --subjects PEOPLE --prompts PROMPTS [--attributes ATTR.csv] --out OUT
[--split test|val] [--link]`` (:func:`import_subjects`) writes the official layout (DESIGN §5) that
:class:`~stellar.data.dataset.StellarDataset` loads strictly and ``stellar dataset check`` passes.

Inputs::

    PEOPLE/alice/IMG_0001.jpg  IMG_0001_mask.png  IMG_0002.png ...
    PEOPLE/bob/...

**Subjects.** Every non-hidden sub-folder of ``PEOPLE`` is a subject. Its id is the folder name when
that is a valid id (:func:`~stellar.data.layout.is_valid_subject_id`: letters, digits, ``_``,
``.``; no ``-``, no ``..``); otherwise the name is sanitised (accents dropped, other characters ->
``_``, leading non-alphanumerics and ``..`` removed; ``_2``, ``_3`` … appended on a collision) and
the renaming is reported. Files directly inside ``PEOPLE`` and nested folders are skipped and
reported. Subjects are listed in ``splits.json`` under ``--split`` (default ``test``), so numeric
names such as ``250`` do not fall under the official 200–399 = val rule.

**Photos.** Every image file of a subject folder (``.jpg .jpeg .png .webp .tif .tiff .bmp``),
ordered by *natural* name order (``img2`` before ``img10``), becomes ``0.jpg, 1.jpg, …``. Each is
decoded with :func:`~stellar.images.load_image` (EXIF rotation applied; 16-bit, CMYK, greyscale,
palette normalised; alpha composited on white) and written as an upright 8-bit RGB JPEG, quality 95,
at its original resolution (EXIF and other metadata are not carried over). An undecodable photo is
skipped and reported with its reason; the following photos take the next indices. A subject left
without photos is an error; a subject with a single photo gets a warning (SIS needs two).

``--link`` hard-links a photo instead of re-encoding it when the file already *is* what re-encoding
would produce: a JPEG whose pixels are 8-bit RGB and whose EXIF orientation is absent or 1 (it is
still fully decoded first, so a truncated file is skipped, not linked). Anything else (PNG, CMYK,
rotated, greyscale) is re-encoded. Where a hard link is impossible (another file system) the bytes
are copied. A hard link shares the file with the input folder: it saves space and keeps the original
bytes, but editing the output photo in place would edit the input photo too — the importer itself
never writes to the input.

**Masks (optional).** An image ``X_mask.EXT`` or ``X_bg.EXT`` next to photo ``X.EXT`` is that
photo's subject mask; it is not a photo. It is read in its own mode: palette / greyscale / 16-bit
values > 0 are the subject (the official convention); an alpha channel with transparency marks the
subject where alpha > 0; a colour mask counts any non-black pixel; a JPEG mask is thresholded at 128
instead of 0 because compression noise makes the background non-zero. EXIF rotation is applied as
for the photo. A mask of another size with the same aspect ratio (±1 %) is resized (nearest) to the
photo; any other size, an empty mask, an undecodable mask or a mask without its photo is skipped
with a warning. Masks are written as ``{i}_bg.png`` palette images (0 = background, 1 = subject).

**Prompts file.** ``{}`` marks the subject; each prompt must contain exactly one ``{}`` (an error
names the file and the item / row / line). Formats, by extension:

- ``.json``: a list of strings; or a list of objects ``{"prompt", "detectables", "categories",
  "kind", "subject"}`` (strings may be mixed in); or the official columnar object ``{"prompts": [...],
  "detectables": [[...]], "categories": [[...]]}`` (lists of equal length) with an optional
  ``"kind"`` for all of them;
- ``.csv``: a header with a ``prompt`` column and optional ``detectables``, ``categories``, ``kind``,
  ``subject`` columns; list cells are separated by ``;`` (``horse; jungle``);
- anything else (``.txt``): one prompt per line; blank lines and lines starting with ``#`` are skipped.

A prompt's kind is its ``kind`` (``T`` or ``H``) when given, else ``T`` when it has detectables and
``H`` otherwise; T prompts go to ``prompts_t.json`` (with ``detectables`` and ``categories``), H
prompts to ``prompts_h.json``. Every subject gets every prompt, in file order, except prompts whose
``subject`` (a folder name or subject id; several separated by ``;`` in CSV or as a JSON list) restricts
them. ``objects.txt`` lists every detectable.

**Attributes CSV (optional).** Columns ``subject,photo,<attribute>…``: ``subject`` is the folder name
or the subject id; ``photo`` is the original file name (``IMG_0001.jpg``) or the output index
(``0``, ``1``, … — counted after skipped photos; a number that is also another photo's file stem is
refused as ambiguous). Values are ``1``/``-1`` (CelebA), ``0`` meaning ``-1`` too; attribute names
are matched to CelebA's case-insensitively. Every APS attribute (DESIGN §6.3) must be a column
(error otherwise). A photo without a row, or with an empty APS cell, gets no ``{i}_attributes.json``
and a warning: APS skips its jobs. An unknown subject or photo, a bad value or a repeated photo is
an error naming the row.

**Output, reruns, atomicity.** The dataset is written into a temporary sibling folder, loaded back
strictly (``StellarDataset`` + ``check()`` must report no error) and only then renamed to ``OUT``: an
interrupted or failed import leaves no partial ``OUT``. ``OUT/import.json`` records the inputs'
fingerprint (sha256 over every input file and the options), the original file name of every photo and
the report. Rerunning into an existing ``OUT`` is a no-op when that fingerprint is unchanged and a
clear refusal otherwise (delete ``OUT`` or choose another). ``OUT`` may not lie inside ``PEOPLE``.
All errors are collected and raised together as one :class:`~stellar.errors.DatasetError`; cheap
ones (prompts, folders, CSV structure) before any photo is decoded. Nothing under ``PEOPLE`` or the
prompts / attributes files is ever written.

**Code.** The readers of the inputs (subject folders, prompts file, attributes CSV, masks) live in
:mod:`stellar.data.import_sources`; this module validates what they found against each other
(attribute rows against photos), writes the dataset and verifies it. Names such as
:func:`read_prompts` and :func:`sanitise_subject_id` remain importable from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stellar import __version__
from stellar.data import layout
from stellar.data.import_sources import (  # noqa: F401  (re-exported: PromptSpec, read_prompts, sanitise_subject_id, ...)
    MASK_SUFFIXES,
    PHOTO_EXTENSIONS,
    PromptSpec,
    _AttrRow,
    _read_attributes,
    _scan_subjects,
    _Source,
    read_mask,
    read_prompts,
    sanitise_subject_id,
)
from stellar.data.problems import Problem, error, warning
from stellar.errors import DatasetError, ImageDecodeError
from stellar.images import load_image

#: Version of what ``import.json`` records; part of the inputs' fingerprint.
IMPORT_FORMAT = 1
MANIFEST_FILE = "import.json"
JPEG_QUALITY = 95
_EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ImportedSubject:
    """One imported subject: its new id, the folder it came from and what it got."""

    id: str
    source: str
    photos: int
    masks: int
    attributes: int  # photos that got an {i}_attributes.json
    prompts_T: int
    prompts_H: int


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_subjects` did; ``str()`` is the summary ``stellar dataset import`` prints."""

    out: Path
    split: str
    subjects: tuple[ImportedSubject, ...]
    prompts_T: int  # prompts of the prompts file, by kind
    prompts_H: int
    encoded: int  # photos re-encoded as JPEG
    linked: int  # photos hard-linked (or byte-copied) with --link
    renamed: tuple[tuple[str, str], ...] = ()  # (folder name, subject id)
    skipped: tuple[tuple[str, str], ...] = ()  # (file, reason)
    warnings: tuple[Problem, ...] = ()
    up_to_date: bool = False  # True: OUT already held this import, nothing was written

    @property
    def photos(self) -> int:
        return sum(s.photos for s in self.subjects)

    @property
    def masks(self) -> int:
        return sum(s.masks for s in self.subjects)

    @property
    def jobs_T(self) -> int:
        return sum(s.photos * s.prompts_T for s in self.subjects)

    @property
    def jobs_H(self) -> int:
        return sum(s.photos * s.prompts_H for s in self.subjects)

    def __str__(self) -> str:
        head = "already up to date (same inputs): nothing written" if self.up_to_date else "imported"
        lines = [
            f"{head}: {len(self.subjects)} subject(s) into {self.out} (split {self.split})",
            f"  photos {self.photos} (re-encoded {self.encoded}, linked {self.linked}), masks {self.masks}, "
            f"with attributes {sum(s.attributes for s in self.subjects)}",
            f"  prompts T {self.prompts_T}, H {self.prompts_H} -> jobs T {self.jobs_T}, H {self.jobs_H}, "
            f"total {self.jobs_T + self.jobs_H}",
        ]
        for old, new in self.renamed:
            lines.append(f"  renamed subject folder {old!r} -> {new!r}")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} file(s):")
            lines += [f"    {path}: {reason}" for path, reason in self.skipped]
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warning(s):")
            lines += ["    " + str(p).replace("\n", "\n    ") for p in self.warnings]
        if not self.up_to_date:
            lines.append(f"  next: stellar dataset check {self.out}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "split": self.split,
            "subjects": [vars(s).copy() for s in self.subjects],
            "prompts_T": self.prompts_T,
            "prompts_H": self.prompts_H,
            "encoded": self.encoded,
            "linked": self.linked,
            "renamed": [list(r) for r in self.renamed],
            "skipped": [list(s) for s in self.skipped],
            "warnings": [p.to_dict() for p in self.warnings],
        }

    @classmethod
    def from_dict(cls, data: dict, **overrides) -> "ImportReport":
        fields = dict(
            out=Path(data["out"]),
            split=data["split"],
            subjects=tuple(ImportedSubject(**s) for s in data["subjects"]),
            prompts_T=data["prompts_T"],
            prompts_H=data["prompts_H"],
            encoded=data["encoded"],
            linked=data["linked"],
            renamed=tuple(tuple(r) for r in data["renamed"]),
            skipped=tuple(tuple(s) for s in data["skipped"]),
            warnings=tuple(Problem(**p) for p in data["warnings"]),
        )
        fields.update(overrides)
        return cls(**fields)


def _attach_attributes(
    path: Path, rows: list[_AttrRow], written: dict[str, list[str]], skipped_names: dict[str, set[str]],
    problems: list[Problem],
) -> dict[tuple[str, int], dict[str, int]]:  # fmt: skip
    """Map rows to (subject id, output index) -> complete attributes; ``written[sid]`` = original names by index."""
    out: dict[tuple[str, int], dict[str, int]] = {}
    seen: dict[tuple[str, int], str] = {}
    for row in rows:
        names = written.get(row.subject, [])
        if row.photo in names:
            index = names.index(row.photo)
        elif row.photo in skipped_names.get(row.subject, set()):
            problems.append(warning(path, f"{row.where}: photo {row.photo!r} was skipped (undecodable); row ignored", "replace the photo"))
            continue
        elif row.photo.isdigit():
            index = int(row.photo)
            stems = {Path(n).stem: i for i, n in enumerate(names)}
            if row.photo in stems and stems[row.photo] != index:
                problems.append(
                    error(path, f"{row.where}: photo {row.photo!r} is ambiguous: output index {index} or file {names[stems[row.photo]]!r}",
                          "write the photo's file name with its extension")
                )  # fmt: skip
                continue
            if index >= len(names):
                problems.append(error(path, f"{row.where}: subject {row.subject!r} has no photo {index} ({len(names)} imported)", "use the file name"))
                continue
        else:
            lowered = [n.lower() for n in names]
            if row.photo.lower() in lowered:
                index = lowered.index(row.photo.lower())
            else:
                problems.append(
                    error(path, f"{row.where}: subject {row.subject!r} has no photo {row.photo!r}",
                          f"use a file name of that folder ({', '.join(names[:4])}) or the output index 0, 1, ...")
                )  # fmt: skip
                continue
        key = (row.subject, index)
        if key in seen:
            problems.append(error(path, f"{row.where}: photo {names[index]!r} of {row.subject!r} already given in {seen[key]}", "keep one row per photo"))
            continue
        seen[key] = row.where
        missing = [a for a in layout.APS_ATTRIBUTES if row.values.get(a) is None]
        if missing:
            problems.append(
                warning(path, f"{row.where}: empty APS attribute(s) {', '.join(missing)}: no attributes written, APS skips this photo",
                        "fill in every APS attribute")
            )  # fmt: skip
            continue
        out[key] = {a: v for a, v in row.values.items() if v is not None}
    return out


# ---------------------------------------------------------------------------------------- images
def _linkable(path: Path) -> bool:
    """True when ``path`` is a JPEG whose decoded pixels need no conversion (8-bit RGB, upright)."""
    try:
        with Image.open(path) as im:
            return im.format == "JPEG" and im.mode == "RGB" and im.getexif().get(_EXIF_ORIENTATION, 1) in (1, None)
    except (OSError, SyntaxError, ValueError):
        return False


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there: copy the bytes (still not re-encoded)
        shutil.copyfile(src, dst)


def _write_mask(mask_path: Path, size: tuple[int, int], dst: Path, skipped: list) -> bool:
    try:
        mask = read_mask(mask_path)
    except ImageDecodeError as exc:
        skipped.append((str(mask_path), f"cannot decode mask: {exc.reason}"))
        return False
    h, w = mask.shape
    if (w, h) != size:
        if abs(w / h - size[0] / size[1]) > 0.01 * size[0] / size[1]:
            reason = f"mask is {w}x{h} but the photo is {size[0]}x{size[1]}"
            skipped.append((str(mask_path), f"{reason} (make it the photo's size)"))
            return False
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    if not mask.any():
        skipped.append((str(mask_path), "empty mask (the subject must be non-zero)"))
        return False
    out = Image.fromarray(mask.astype(np.uint8), "P")
    out.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    out.save(dst)
    return True


# ---------------------------------------------------------------------------------------- output
def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _fingerprint(subjects_dir: Path, prompts: Path, attributes: Path | None, split: str, link: bool) -> str:
    """sha256 over the import options and every input file (relative path + content hash)."""
    h = hashlib.sha256(json.dumps({"format": IMPORT_FORMAT, "split": split, "link": link}).encode())
    for name, f in (("prompts", prompts), ("attributes", attributes)):
        if f is not None:
            h.update(f"{name}\t{layout.sha256_file(f)}\n".encode())
    for folder in sorted(p for p in subjects_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in folder.iterdir() if p.is_file()):
            h.update(f"{folder.name}/{f.name}\t{layout.sha256_file(f)}\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _raise_if_errors(problems: list[Problem], out: Path) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        listed = "\n".join(str(p) for p in errors[:30])
        more = f"\n  ... and {len(errors) - 30} more" if len(errors) > 30 else ""
        raise DatasetError(
            f"import failed with {len(errors)} error(s):\n{listed}{more}",
            None,
            f"fix the files named above and rerun; nothing was written to {out}",
        )


def import_subjects(
    subjects: str | Path,
    prompts: str | Path,
    out: str | Path,
    *,
    attributes_csv: str | Path | None = None,
    split: str = "test",
    link: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Import folders of photos (one per person) + a prompts file as a Stellar-layout dataset at ``out``.

    See the module docstring for the accepted formats and every choice made.

    Args:
        subjects: folder holding one sub-folder of photos per person (read only).
        prompts: prompts file (``.json``, ``.csv`` or one prompt per line), ``{}`` = the subject.
        out: the new dataset folder; must not exist, be empty, or hold this same import (no-op).
        attributes_csv: optional ``subject,photo,<attribute>...`` CSV of ±1 labels.
        split: split the subjects are listed under in ``splits.json`` (``test`` or ``val``).
        link: hard-link photos that are already upright 8-bit RGB JPEGs instead of re-encoding.
        progress: show a progress bar while photos are decoded and written.

    Returns:
        the :class:`ImportReport` (``str()`` it for the summary).

    Raises:
        DatasetError: listing every error (with file and fix); nothing is written then.
    """
    subjects_dir, prompts_path, out = Path(subjects), Path(prompts), Path(out)
    attributes_path = Path(attributes_csv) if attributes_csv is not None else None
    if split not in layout.SPLITS:
        raise DatasetError(f"unknown split {split!r}", None, f"use one of {list(layout.SPLITS)}")
    if not subjects_dir.is_dir():
        raise DatasetError("subjects folder not found", subjects_dir, "pass a folder with one sub-folder of photos per person")
    if not prompts_path.is_file():
        raise DatasetError("prompts file not found", prompts_path, "pass a .json, .csv or .txt file with one {} per prompt")
    if attributes_path is not None and not attributes_path.is_file():
        raise DatasetError("attributes CSV not found", attributes_path, "pass a CSV with columns subject,photo,<attribute>...")
    if _is_within(out.resolve(), subjects_dir.resolve()):
        raise DatasetError("the output folder lies inside the subjects folder", out, "choose --out outside the input (it is never modified)")

    fingerprint = _fingerprint(subjects_dir, prompts_path, attributes_path, split, link)
    if out.exists():
        if not out.is_dir():
            raise DatasetError("output path exists and is not a folder", out, "choose a new --out")
        if any(out.iterdir()):
            manifest = out / MANIFEST_FILE
            try:
                previous = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict) and previous.get("inputs_fingerprint") == fingerprint and "report" in previous:
                return ImportReport.from_dict(previous["report"], out=out, up_to_date=True)
            why = "was imported from other inputs or options (or the inputs changed since)" if previous is not None else "is not empty"
            raise DatasetError(f"output folder {why}", out, "delete it to re-import, or choose a new --out")

    problems: list[Problem] = []
    skipped: list[tuple[str, str]] = []
    specs, prompt_problems = read_prompts(prompts_path)
    problems += prompt_problems
    ignore = {prompts_path.resolve()} | ({attributes_path.resolve()} if attributes_path else set())
    sources, renamed = _scan_subjects(subjects_dir, ignore, problems, skipped)
    by_name: dict[str, _Source] = {}
    for s in sources:
        by_name[s.id] = s
        by_name.setdefault(s.folder.name, s)
    for spec in specs:
        for name in spec.subjects or ():
            if name not in by_name:
                problems.append(error(prompts_path, f"{spec.where}: unknown subject {name!r}", "use a subject folder name or leave 'subject' empty"))
    attr_rows = _read_attributes(attributes_path, by_name, problems) if attributes_path else []
    _raise_if_errors(problems, out)

    # ------------------------------------------------------------- write into a temporary sibling
    from tqdm.auto import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        written: dict[str, list[str]] = {}  # subject id -> original file names, by output index
        skipped_names: dict[str, set[str]] = {}
        masks: dict[str, int] = {}
        encoded = linked = 0
        bar = tqdm(total=sum(len(s.photos) for s in sources), desc="importing photos", unit="photo", disable=not progress)
        for source in sources:
            folder = tmp / source.id
            folder.mkdir()
            names: list[str] = written.setdefault(source.id, [])
            masks[source.id] = 0
            for photo in source.photos:
                bar.update(1)
                try:
                    image = load_image(photo)
                except ImageDecodeError as exc:
                    skipped.append((str(photo), f"cannot decode: {exc.reason}"))
                    skipped_names.setdefault(source.id, set()).add(photo.name)
                    continue
                index = len(names)
                dst = folder / f"{index}.jpg"
                if link and _linkable(photo):
                    _link_or_copy(photo, dst)
                    linked += 1
                else:
                    image.save(dst, "JPEG", quality=JPEG_QUALITY)
                    encoded += 1
                names.append(photo.name)
                mask = source.masks.get(photo.name)
                if mask is not None and _write_mask(mask, image.size, folder / layout.mask_name(index), skipped):
                    masks[source.id] += 1
                del image
            if not names:
                problems.append(error(source.folder, "no photo of this subject could be decoded", "add a valid photo (see the skipped files)"))
            elif len(names) == 1:
                problems.append(warning(source.folder, "subject has one photo: SIS equals IPS for it", "add a second photo of the person"))
        bar.close()
        _raise_if_errors(problems, out)

        labels = _attach_attributes(attributes_path, attr_rows, written, skipped_names, problems) if attributes_path else {}
        _raise_if_errors(problems, out)
        if attributes_path is None:
            problems.append(warning(subjects_dir, "no attributes CSV: APS is not computed for these subjects", "pass --attributes"))

        subjects_out: list[ImportedSubject] = []
        objects: set[str] = set()
        for source in sources:
            folder = tmp / source.id
            n_attr = 0
            for index, original in enumerate(written[source.id]):
                values = labels.get((source.id, index))
                if values is None:
                    if attributes_path is not None:
                        problems.append(
                            warning(attributes_path, f"no row for {source.folder.name}/{original}: APS skips this photo",
                                    f"add a row '{source.folder.name},{original},...'")
                        )  # fmt: skip
                    continue
                _write_json(
                    folder / layout.attributes_name(index),
                    {"attributes": values, "finegrained_attributes": {}, "identity": source.folder.name, "original_filename": original},
                )
                n_attr += 1
            mine = [p for p in specs if p.subjects is None or source.id in p.subjects or source.folder.name in p.subjects]
            t = [p for p in mine if p.kind == "T"]
            h = [p for p in mine if p.kind == "H"]
            if t:
                _write_json(
                    folder / layout.PROMPTS_T_FILE,
                    {"prompts": [p.template for p in t], "detectables": [list(p.detectables) for p in t],
                     "categories": [list(p.categories) for p in t]},
                )  # fmt: skip
            if h:
                data: dict = {"prompts": [p.template for p in h]}
                if any(p.detectables for p in h):
                    data["detectables"] = [list(p.detectables) for p in h]
                if any(p.categories for p in h):
                    data["categories"] = [list(p.categories) for p in h]
                _write_json(folder / layout.PROMPTS_H_FILE, data)
            if not mine:
                problems.append(warning(prompts_path, f"no prompt applies to subject {source.id!r}: it has no jobs", "check the 'subject' column"))
            objects.update(d for p in t for d in p.detectables)
            subjects_out.append(
                ImportedSubject(source.id, source.folder.name, len(written[source.id]), masks[source.id], n_attr, len(t), len(h))
            )
        (tmp / layout.OBJECTS_FILE).write_text("".join(f"{o}\n" for o in sorted(objects)), encoding="utf-8")
        ids = [s.id for s in subjects_out]
        _write_json(tmp / layout.SPLITS_FILE, {sp: ids if sp == split else [] for sp in layout.SPLITS})

        report = ImportReport(
            out=out,
            split=split,
            subjects=tuple(subjects_out),
            prompts_T=sum(p.kind == "T" for p in specs),
            prompts_H=sum(p.kind == "H" for p in specs),
            encoded=encoded,
            linked=linked,
            renamed=tuple(renamed),
            skipped=tuple(skipped),
            warnings=tuple(p for p in problems if p.severity == "warning"),
        )
        _write_json(
            tmp / MANIFEST_FILE,
            {
                "format": IMPORT_FORMAT,
                "stellar_version": __version__,
                "inputs_fingerprint": fingerprint,
                "subjects_dir": str(subjects_dir.resolve()),
                "prompts": str(prompts_path.resolve()),
                "attributes": str(attributes_path.resolve()) if attributes_path else None,
                "photos": {s.id: {f"{i}.jpg": n for i, n in enumerate(written[s.id])} for s in sources},
                "report": report.to_dict(),
            },
        )
        _verify(tmp, out)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a folder
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _verify(tmp: Path, out: Path) -> None:
    """The written dataset must load strictly and check without errors (a bug here is ours, not the user's)."""
    from stellar.data.dataset import StellarDataset

    try:
        ds = StellarDataset(tmp, strict=True)
    except DatasetError as exc:
        raise DatasetError(f"internal error: the imported dataset does not load ({exc})", out, "please report this bug") from None
    errors = [p for p in ds.check(decode_images=False) if p.severity == "error"]
    if errors:
        raise DatasetError(
            "internal error: the imported dataset fails its check:\n" + "\n".join(map(str, errors[:10])), out, "please report this bug"
        )

