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
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from stellar import __version__
from stellar.data import layout
from stellar.data.problems import Problem, error, warning
from stellar.errors import DatasetError, ImageDecodeError
from stellar.images import IMAGE_EXTENSIONS, load_image

#: Version of what ``import.json`` records; part of the inputs' fingerprint.
IMPORT_FORMAT = 1
MANIFEST_FILE = "import.json"
#: Extensions of photos the importer accepts (PIL decodes them all; the dataset keeps only JPEGs).
PHOTO_EXTENSIONS = IMAGE_EXTENSIONS + (".tif", ".tiff", ".bmp")
MASK_SUFFIXES = ("_mask", "_bg")
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


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of the prompts file; ``where`` names its place for error messages."""

    template: str
    detectables: tuple[str, ...]
    categories: tuple[str, ...]
    kind: str
    subjects: tuple[str, ...] | None  # None: every subject
    where: str


@dataclass
class _Source:
    """A subject folder of the input and the files found in it."""

    folder: Path
    id: str
    photos: list[Path] = field(default_factory=list)
    masks: dict[str, Path] = field(default_factory=dict)  # photo file name -> mask file


# ---------------------------------------------------------------------------------------- helpers
def _natural_key(name: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t]


def sanitise_subject_id(name: str) -> str:
    """A valid subject id made from a folder name (``"José M."`` -> ``"Jose_M."``, ``"../x"`` -> ``"x"``)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9_.]", "_", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"^[^A-Za-z0-9]+", "", text)
    return text or "subject"


def _split_cell(cell: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (cell or "").split(";") if t.strip())


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{what} is not UTF-8 text", path, "re-save it as UTF-8") from None
    except OSError as exc:
        raise DatasetError(f"cannot read the {what} ({exc.strerror or exc})", path, "check the path and permissions") from None


def _str_list(value: object, key: str, where: str, path: Path, problems: list[Problem]) -> tuple[str, ...]:
    """A JSON detectables / categories value: a list of strings (a lone string is a 1-list)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    problems.append(error(path, f"{where}: '{key}' must be a list of strings, got {value!r}", f'write "{key}": ["...", ...]'))
    return ()


# ---------------------------------------------------------------------------------------- prompts
def read_prompts(path: str | Path) -> tuple[list[PromptSpec], list[Problem]]:
    """Parse a prompts file (JSON, CSV or one prompt per line; see the module docstring).

    Returns the prompts and the problems found (errors name the file and item / row / line).

    Raises:
        DatasetError: the file is missing or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError("prompts file not found", path, "pass a .json, .csv or .txt file with one {} per prompt")
    text = _read_text(path, "prompts file")
    problems: list[Problem] = []
    suffix = path.suffix.lower()
    if suffix == ".json":
        raw = _prompts_json(text, path, problems)
    elif suffix == ".csv":
        raw = _prompts_csv(text, path, problems)
    else:
        raw = _prompts_lines(text)
    specs: list[PromptSpec] = []
    for where, fields in raw:
        template = fields.get("prompt")
        if not isinstance(template, str) or not template.strip():
            problems.append(error(path, f"{where}: empty or missing prompt", "write the prompt text with {} for the subject"))
            continue
        template = template.strip()
        n = template.count(layout.PLACEHOLDER)
        if n != 1:
            problems.append(
                error(path, f"{where}: prompt {template!r} has {n} '{{}}' placeholders; exactly one is required",
                      'mark the subject with a single {} (e.g. "{} riding a horse")')
            )  # fmt: skip
            continue
        kind = fields.get("kind")
        detectables = fields.get("detectables", ())
        if kind in (None, ""):
            kind = "T" if detectables else "H"
        elif not isinstance(kind, str) or kind.strip().upper() not in layout.KINDS:
            problems.append(error(path, f"{where}: kind {kind!r} is neither T nor H", "use T (template, with detectables) or H"))
            continue
        subjects = fields.get("subject")
        specs.append(
            PromptSpec(template, tuple(detectables), tuple(fields.get("categories", ())), kind.strip().upper(),
                       tuple(subjects) if subjects else None, where)
        )  # fmt: skip
    seen: dict[tuple, str] = {}
    for spec in specs:
        key = (spec.template, spec.kind, spec.subjects)
        if key in seen:
            problems.append(
                warning(path, f"{spec.where}: same prompt as {seen[key]} ({spec.template!r})",
                        "drop the repeat: identical jobs make sidecar matching ambiguous")
            )  # fmt: skip
        seen.setdefault(key, spec.where)
    if not specs and not any(p.severity == "error" for p in problems):
        problems.append(error(path, "no prompts found", "write at least one prompt with {} for the subject"))
    return specs, problems


def _prompts_lines(text: str) -> list[tuple[str, dict]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((f"line {lineno}", {"prompt": line}))
    return out


def _prompts_csv(text: str, path: Path, problems: list[Problem]) -> list[tuple[str, dict]]:
    reader = csv.DictReader(text.splitlines())
    header = {(h or "").strip().lower(): h for h in (reader.fieldnames or [])}
    if "prompt" not in header:
        problems.append(
            error(path, f"no 'prompt' column in the header {reader.fieldnames or []}",
                  "the first row must name the columns: prompt[,detectables,categories,kind,subject]")
        )  # fmt: skip
        return []
    known = {"prompt", "detectables", "categories", "kind", "subject"}
    unknown = [h for h in header if h not in known]
    if unknown:
        problems.append(warning(path, f"ignored column(s): {', '.join(unknown)}", f"known columns: {', '.join(sorted(known))}"))
    out = []
    for row in reader:
        if None in row:
            problems.append(error(path, f"row {reader.line_num}: more cells than header columns", "quote cells that contain commas"))
            continue
        cells = {key: (row.get(orig) or "") for key, orig in header.items() if key in known}
        if not any(v.strip() for v in cells.values()):
            continue
        out.append(
            (f"row {reader.line_num}", {
                "prompt": cells["prompt"],
                "detectables": _split_cell(cells.get("detectables")),
                "categories": _split_cell(cells.get("categories")),
                "kind": cells.get("kind", "").strip(),
                "subject": _split_cell(cells.get("subject")),
            })
        )  # fmt: skip
    return out


def _prompts_json(text: str, path: Path, problems: list[Problem]) -> list[tuple[str, dict]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(error(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", "fix the JSON syntax"))
        return []
    out: list[tuple[str, dict]] = []
    if isinstance(data, dict):
        texts = data.get("prompts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            problems.append(error(path, "'prompts' must be a list of strings", 'write {"prompts": ["{} ...", ...], "detectables": [[...], ...]}'))
            return []
        columns: dict[str, list] = {}
        for key in ("detectables", "categories"):
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or len(value) != len(texts):
                n = len(value) if isinstance(value, list) else "not a list"
                problems.append(
                    error(path, f"'{key}' has {n} entries but there are {len(texts)} prompts", f"give exactly one '{key}' entry per prompt")
                )
                return []
            columns[key] = value
        for i, t in enumerate(texts):
            where = f"prompt {i}"
            fields: dict = {"prompt": t, "kind": data.get("kind")}
            for key, values in columns.items():
                fields[key] = _str_list(values[i], key, where, path, problems)
            out.append((where, fields))
        return out
    if not isinstance(data, list):
        problems.append(error(path, "expected a list of prompts or an object with a 'prompts' list", 'write ["{} riding a horse", ...]'))
        return []
    known = {"prompt", "detectables", "categories", "kind", "subject"}
    for i, item in enumerate(data):
        where = f"item {i}"
        if isinstance(item, str):
            out.append((where, {"prompt": item}))
            continue
        if not isinstance(item, dict):
            problems.append(error(path, f"{where}: expected a string or an object, got {item!r}", 'write {"prompt": "{} ...", ...}'))
            continue
        extra = sorted(set(item) - known)
        if extra:
            problems.append(warning(path, f"{where}: ignored key(s) {', '.join(extra)}", f"known keys: {', '.join(sorted(known))}"))
        out.append(
            (where, {
                "prompt": item.get("prompt"),
                "detectables": _str_list(item.get("detectables"), "detectables", where, path, problems),
                "categories": _str_list(item.get("categories"), "categories", where, path, problems),
                "kind": item.get("kind"),
                "subject": _str_list(item.get("subject"), "subject", where, path, problems),
            })
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------- subjects
def _unusable_entry(entry: Path, problems: list[Problem], skipped: list) -> bool:
    """True (and reported) for a name that is not UTF-8 (an error: the dataset's JSON files cite names)
    or a symbolic link that loops or points nowhere (skipped, with the reason)."""
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates (PEP 383)
        problems.append(error(entry, "name is not valid UTF-8", "rename it with UTF-8 characters (e.g. `convmv -f latin1 -t utf8 --notest -r FOLDER`)"))
        return True
    if entry.is_symlink() and not entry.exists():  # exists() follows the link: False for a loop or a dangling link
        skipped.append((str(entry), "symbolic link that loops or points nowhere"))
        return True
    return False


def _scan_subjects(subjects_dir: Path, ignore: set[Path], problems: list[Problem], skipped: list) -> tuple[list[_Source], list]:
    """Subject folders with their photos and masks; ids assigned (valid names kept, others sanitised)."""
    folders, renamed = [], []
    for entry in sorted(subjects_dir.iterdir(), key=lambda p: _natural_key(p.name)):
        if entry.name.startswith(".") or _unusable_entry(entry, problems, skipped):
            continue
        if entry.is_dir():
            folders.append(entry)
        elif entry.resolve() not in ignore:
            skipped.append((str(entry), "not a subject folder (photos go in one sub-folder per person)"))
    used: set[str] = {f.name for f in folders if layout.is_valid_subject_id(f.name)}
    sources: list[_Source] = []
    for folder in folders:
        sid = folder.name
        if not layout.is_valid_subject_id(sid):
            base = sid = sanitise_subject_id(folder.name)
            k = 2
            while sid in used:
                sid, k = f"{base}_{k}", k + 1
            used.add(sid)
            renamed.append((folder.name, sid))
        source = _Source(folder, sid)
        masks: list[Path] = []
        for f in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
            if f.name.startswith(".") or _unusable_entry(f, problems, skipped):
                continue
            if f.is_dir():
                skipped.append((str(f), "nested folder ignored (photos must sit directly in the subject folder)"))
            elif f.suffix.lower() not in PHOTO_EXTENSIONS:
                skipped.append((str(f), f"not an image ({f.suffix or 'no extension'}); accepted: {' '.join(PHOTO_EXTENSIONS)}"))
            elif any(f.stem.lower().endswith(s) for s in MASK_SUFFIXES):
                masks.append(f)
            else:
                source.photos.append(f)
        for m in masks:
            stem = m.stem
            base = next(stem[: -len(s)] for s in MASK_SUFFIXES if stem.lower().endswith(s))
            owners = [p for p in source.photos if p.stem == base]
            if len(owners) == 1:
                source.masks[owners[0].name] = m
            elif not owners:
                skipped.append((str(m), f"mask without a photo named {base}.* (name it PHOTO_mask.png)"))
            else:
                problems.append(
                    error(m, f"mask matches several photos: {', '.join(p.name for p in owners)}", "give those photos distinct names")
                )
        if not source.photos:
            problems.append(error(folder, "subject folder has no photos", "add at least one photo (two for SIS) or remove the folder"))
        sources.append(source)
    if not folders:
        problems.append(error(subjects_dir, "no subject folders found", "put each person's photos in their own sub-folder"))
    return sources, renamed


# ---------------------------------------------------------------------------------------- attributes
@dataclass(frozen=True)
class _AttrRow:
    where: str
    subject: str  # subject id
    photo: str  # the cell as written
    values: dict[str, int | None]  # None: empty cell


def _read_attributes(path: Path, by_name: dict[str, _Source], problems: list[Problem]) -> list[_AttrRow]:
    """Structural pass over the attributes CSV (header, values, subjects); photos are resolved later."""
    if not path.is_file():
        raise DatasetError("attributes CSV not found", path, "pass a CSV with columns subject,photo,<CelebA attribute>...")
    reader = csv.DictReader(_read_text(path, "attributes CSV").splitlines())
    fieldnames = [(h or "").strip() for h in (reader.fieldnames or [])]
    lower = {h.lower(): h for h in fieldnames}
    if "subject" not in lower or "photo" not in lower:
        problems.append(error(path, f"header {fieldnames} lacks 'subject' and/or 'photo'", "first row: subject,photo,Young,Male,..."))
        return []
    canonical = {a.lower(): a for a in layout.CELEBA_ATTRIBUTES}
    columns: dict[str, str] = {}  # csv header -> attribute name
    for h in fieldnames:
        if h.lower() in ("subject", "photo") or not h:
            continue
        columns[h] = canonical.get(h.lower(), h)
    unknown = [h for h, a in columns.items() if a not in layout.CELEBA_ATTRIBUTES]
    if unknown:
        problems.append(warning(path, f"column(s) not among the 40 CelebA attributes (kept as is): {', '.join(unknown)}", "check the spelling"))
    missing = [a for a in layout.APS_ATTRIBUTES if a not in columns.values()]
    if missing:
        problems.append(error(path, f"missing APS attribute column(s): {', '.join(missing)}", "add a ±1 column for each (DESIGN §6.3 lists the eight)"))
        return []
    rows: list[_AttrRow] = []
    raw_names = dict(zip(reader.fieldnames or [], fieldnames))
    for row in reader:
        where = f"row {reader.line_num}"
        if None in row:
            problems.append(error(path, f"{where}: more cells than header columns", "quote cells that contain commas"))
            continue
        cells = {raw_names[k]: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        subject = cells[lower["subject"]]
        source = by_name.get(subject)
        if source is None:
            known = ", ".join(sorted({s.id for s in by_name.values()})[:8])
            problems.append(error(path, f"{where}: unknown subject {subject!r}", f"use a subject folder name ({known} ...)"))
            continue
        values: dict[str, int | None] = {}
        bad = False
        for header, attr in columns.items():
            cell = cells.get(header, "")
            if cell == "":
                values[attr] = None
            elif cell in ("1", "+1", "1.0"):
                values[attr] = 1
            elif cell in ("-1", "0", "-1.0", "0.0"):
                values[attr] = -1
            else:
                problems.append(error(path, f"{where}: {header} = {cell!r}; expected 1 or -1 (0 is read as -1)", "use CelebA's ±1 labels"))
                bad = True
        if not bad:
            rows.append(_AttrRow(where, source.id, cells[lower["photo"]], values))
    return rows


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


def read_mask(path: str | Path) -> np.ndarray:
    """A user mask as a bool array (True = subject), upright as EXIF says; see the module docstring.

    Raises:
        ImageDecodeError: the file is empty, truncated or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            fmt = im.format
            im = ImageOps.exif_transpose(im)
            threshold = 127 if fmt == "JPEG" else 0
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                alpha = np.asarray(im.convert("RGBA"))[..., 3]
                if alpha.min() < 255:
                    return alpha > 0
                im = im.convert("RGB")
            if im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im)
                return (arr[..., 0] if arr.ndim == 3 else arr) > threshold
            if im.mode == "1":
                return np.asarray(im.convert("L")) > 0
            return np.asarray(im.convert("RGB")).max(axis=-1) > threshold
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(path, str(exc) or type(exc).__name__) from None


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

