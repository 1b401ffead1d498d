"""What ``stellar dataset import`` reads: the subject folders, the prompts file, the attributes CSV, masks.

The readers of :mod:`stellar.data.importer`'s inputs, kept apart from the writer there: each turns a
user's file into records plus :class:`~stellar.data.problems.Problem` findings and writes nothing.
The formats and every choice are documented in :mod:`stellar.data.importer`'s docstring.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from stellar.data import layout
from stellar.data.problems import Problem, error, warning
from stellar.errors import DatasetError, ImageDecodeError
from stellar.images import IMAGE_EXTENSIONS

#: Extensions of photos the importer accepts (PIL decodes them all; the dataset keeps only JPEGs).
PHOTO_EXTENSIONS = IMAGE_EXTENSIONS + (".tif", ".tiff", ".bmp")
MASK_SUFFIXES = ("_mask", "_bg")


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
