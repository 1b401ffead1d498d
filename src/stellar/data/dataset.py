"""``StellarDataset``: read the official Stellar layout as-is (DESIGN §5).

>>> ds = StellarDataset("STELLAR")                          # doctest: +SKIP
>>> len(ds.jobs("test"))                                    # 200 subjects x 2 photos x 100 prompts
40000                                                       # doctest: +SKIP
>>> ds.jobs("test")[0].name                                 # doctest: +SKIP
'000-0-00'

Loading is lenient internally and strict at the surface: every malformed file becomes a
:class:`~stellar.data.problems.Problem` naming the file and the fix; ``StellarDataset(root)`` raises
a :class:`~stellar.errors.DatasetError` listing them unless ``strict=False`` (what ``stellar dataset
check`` uses to report everything at once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from stellar.data import layout
from stellar.data.problems import Problem, error, warning
from stellar.errors import DatasetError, ImageDecodeError
from stellar.images import is_image_file, load_image

Triplet = tuple[str, str, str]


@dataclass(frozen=True)
class Photo:
    """One reference photo of a subject, with its CelebA labels and optional mask."""

    subject: str
    index: int
    path: Path
    mask_path: Path | None = None
    attributes_path: Path | None = None
    attributes: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    finegrained_attributes: dict = field(default_factory=dict, hash=False, compare=False)
    identity: str | None = None
    original_filename: str | None = None


@dataclass(frozen=True)
class Prompt:
    """One prompt of a subject. ``index`` counts over the subject's T-then-H list (job names use it)."""

    subject: str
    index: int
    kind: str  # "T" (Stellar-T, template based) or "H" (Stellar-H, human written)
    kind_index: int
    template: str
    detectables: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    triplets: tuple[Triplet, ...] | None = None  # annotated in the dataset (our extension), else None
    id: str | None = None

    def fill(self, subject_token: str = layout.DEFAULT_SUBJECT_TOKEN) -> str:
        return layout.fill_prompt(self.template, subject_token)


@dataclass(frozen=True)
class Subject:
    id: str
    split: str
    photos: tuple[Photo, ...]
    prompts: tuple[Prompt, ...]
    folder: Path

    def prompts_of(self, kinds: Iterable[str] = layout.KINDS) -> tuple[Prompt, ...]:
        kinds = tuple(kinds)
        return tuple(p for p in self.prompts if p.kind in kinds)


@dataclass(frozen=True)
class Job:
    """(subject, photo, prompt[, seed]): one image a method must generate."""

    name: str
    subject: str
    split: str
    photo: Photo
    prompt: Prompt
    seed: int  # seed index 0..seeds-1; generators derive their RNG seed from (base seed, this)

    @property
    def photo_index(self) -> int:
        return self.photo.index

    @property
    def prompt_index(self) -> int:
        return self.prompt.index

    @property
    def kind(self) -> str:
        return self.prompt.kind


def _subject_sort_key(name: str) -> tuple:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _read_json(path: Path, problems: list[Problem]) -> object | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(error(path, "not UTF-8 text", "re-save the file as UTF-8 JSON"))
        return None
    except OSError as exc:
        problems.append(error(path, f"cannot read ({exc.strerror or exc})", "check the file's permissions"))
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(
            error(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", "fix the JSON syntax")
        )
        return None


def _as_label(value: object) -> int | None:
    """CelebA labels are ±1; 0/False and 1/True (and their strings) are accepted too."""
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, (int, float)) and value in (1, -1, 0):
        return 1 if value == 1 else -1
    if isinstance(value, str) and value.strip() in ("1", "-1", "0"):
        return 1 if value.strip() == "1" else -1
    return None


def _parse_attributes(path: Path, problems: list[Problem]) -> tuple[dict[str, int], dict, str | None, str | None]:
    data = _read_json(path, problems)
    if data is None:
        return {}, {}, None, None
    if not isinstance(data, dict):
        problems.append(error(path, "expected a JSON object with an 'attributes' key", 'write {"attributes": {"Young": 1, ...}}'))
        return {}, {}, None, None
    raw = data.get("attributes", data if "attributes" not in data and all(isinstance(v, (int, bool)) for v in data.values()) else None)
    if not isinstance(raw, dict):
        problems.append(error(path, "missing the 'attributes' object", 'write {"attributes": {"Young": 1, ...}}'))
        return {}, {}, None, None
    attributes: dict[str, int] = {}
    for name, value in raw.items():
        label = _as_label(value)
        if label is None:
            problems.append(error(path, f"attribute {name!r} has value {value!r}; expected 1 or -1", "use CelebA's ±1 labels"))
            continue
        attributes[str(name)] = label
    missing = [a for a in layout.APS_ATTRIBUTES if a not in attributes]
    if missing:
        problems.append(
            error(path, f"missing APS attribute(s): {', '.join(missing)}", "add them as 1 / -1 (DESIGN §6.3 lists the eight)")
        )
    fine = data.get("finegrained_attributes") or {}
    identity = data.get("identity")
    original = data.get("original_filename")
    return (
        attributes,
        fine if isinstance(fine, dict) else {},
        None if identity is None else str(identity),
        None if original is None else str(original),
    )


def _string_lists(value: object, n: int, key: str, path: Path, problems: list[Problem]) -> list[tuple[str, ...]] | None:
    """Per-prompt lists (``detectables``, ``categories``): a list of n lists of strings (a string counts as a 1-list)."""
    if value is None:
        return [()] * n
    if not isinstance(value, list):
        problems.append(error(path, f"'{key}' must be a list with one entry per prompt", f"write '{key}': [[...], ...]"))
        return None
    if len(value) != n:
        problems.append(
            error(path, f"'{key}' has {len(value)} entries but there are {n} prompts", f"give exactly one '{key}' entry per prompt")
        )
        return None
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append((item,))
        elif isinstance(item, list) and all(isinstance(x, str) for x in item):
            out.append(tuple(item))
        else:
            problems.append(error(path, f"'{key}'[{i}] must be a list of strings, got {item!r}", "use strings only"))
            return None
    return out


def _parse_triplets(value: object, n: int, path: Path, problems: list[Problem]) -> list[tuple[Triplet, ...] | None]:
    if value is None:
        return [None] * n
    if not isinstance(value, list) or len(value) != n:
        problems.append(error(path, f"'triplets' must have one entry per prompt ({n})", "write 'triplets': [[[s, p, o], ...], ...]"))
        return [None] * n
    out: list[tuple[Triplet, ...] | None] = []
    for i, item in enumerate(value):
        if not isinstance(item, list) or not all(
            isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t) for t in item
        ):
            problems.append(error(path, f"'triplets'[{i}] must be a list of [subject, predicate, object] strings", "fix that entry"))
            out.append(None)
        else:
            out.append(tuple((t[0], t[1], t[2]) for t in item))
    return out


def _parse_prompts(path: Path, subject: str, kind: str, start: int, problems: list[Problem]) -> list[Prompt]:
    data = _read_json(path, problems)
    if data is None:
        return []
    if isinstance(data, list):  # a bare list of prompts is accepted for Stellar-H
        data = {"prompts": data}
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list):
        problems.append(error(path, "expected a JSON object with a 'prompts' list", 'write {"prompts": ["{} ...", ...]}'))
        return []
    texts = data["prompts"]
    n = len(texts)
    bad = False
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            problems.append(error(path, f"prompt {i} is not a string: {text!r}", "prompts are strings with one {} for the subject"))
            bad = True
        elif text.count(layout.PLACEHOLDER) != 1:
            problems.append(
                error(
                    path,
                    f"prompt {i} {text!r} has {text.count(layout.PLACEHOLDER)} '{{}}' placeholders; exactly one is required",
                    "mark the subject with a single {} (e.g. \"{} riding a horse\")",
                )
            )
            bad = True
    detectables = _string_lists(data.get("detectables"), n, "detectables", path, problems)
    categories = _string_lists(data.get("categories"), n, "categories", path, problems)
    if kind == "T" and "detectables" not in data and n:
        problems.append(warning(path, "no 'detectables': GOA and RFS cannot be computed for these prompts", "add the objects each prompt mentions"))
    elif kind == "T" and detectables is not None and (empty := [i for i, d in enumerate(detectables) if not d]):
        listed = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        problems.append(
            warning(
                path,
                f"{len(empty)} prompt(s) with empty 'detectables' (index {listed}): GOA and RFS are undefined for their jobs",
                "list the objects each prompt mentions, e.g. [\"horse\"]",
            )
        )
    triplets = _parse_triplets(data.get("triplets"), n, path, problems)
    ids = data.get("ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != n):
        problems.append(error(path, f"'ids' must have one entry per prompt ({n})", "give one stable id per prompt or drop 'ids'"))
        ids = None
    if bad or detectables is None or categories is None:
        return []
    return [
        Prompt(
            subject=subject,
            index=start + i,
            kind=kind,
            kind_index=i,
            template=texts[i],
            detectables=detectables[i],
            categories=categories[i],
            triplets=triplets[i],
            id=None if ids is None else str(ids[i]),
        )
        for i in range(n)
    ]


def _load_subject(folder: Path, split: str, problems: list[Problem]) -> Subject:
    sid = folder.name
    photos: list[Photo] = []
    seen: dict[int, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        index = layout.photo_index_of(path.name)
        if index is None or not path.is_file():
            continue
        if index in seen:  # 0.jpg + 0.png: two photos would share every job name
            problems.append(
                error(path, f"a second file for photo {index} (besides {seen[index].name}); ignored", "keep one file per photo index")
            )
            continue
        seen[index] = path
        mask = folder / layout.mask_name(index)
        attr_path = folder / layout.attributes_name(index)
        if attr_path.is_file():
            attributes, fine, identity, original = _parse_attributes(attr_path, problems)
        else:
            attributes, fine, identity, original = {}, {}, None, None
            problems.append(
                warning(attr_path, "no attributes file: this photo's jobs are left out of APS", "add CelebA ±1 labels for the APS attributes")
            )
        photos.append(
            Photo(
                subject=sid,
                index=index,
                path=path,
                mask_path=mask if mask.is_file() else None,
                attributes_path=attr_path if attr_path.is_file() else None,
                attributes=attributes,
                finegrained_attributes=fine,
                identity=identity,
                original_filename=original,
            )
        )
    photos.sort(key=lambda p: p.index)
    _report_leftovers(folder, set(seen), problems)
    if not photos:
        others = sorted(f.name for f in folder.iterdir() if is_image_file(f) and not f.stem.endswith("_bg"))
        fix = "add 0.jpg (and 1.jpg: SIS needs two photos of the person)"
        if others:  # e.g. IMG_0001.jpg: the layout wants 0.jpg, 1.jpg; the importer renames them
            fix = f"photos must be named 0.jpg, 1.jpg, ... (found {', '.join(others[:3])}); `stellar dataset import` renames them"
        problems.append(error(folder, "subject has no photos", fix))
    elif len(photos) == 1:
        problems.append(warning(folder, "subject has one photo: SIS equals IPS for it", "add a second photo 1.jpg"))
    prompts: list[Prompt] = []
    before = len(problems)
    t_path = folder / layout.PROMPTS_T_FILE
    if t_path.is_file():
        prompts += _parse_prompts(t_path, sid, "T", 0, problems)
    h_path = folder / layout.PROMPTS_H_FILE
    if h_path.is_file():
        prompts += _parse_prompts(h_path, sid, "H", len(prompts), problems)
    if not t_path.is_file() and not h_path.is_file():
        problems.append(warning(folder, "no prompts_t.json or prompts_h.json: the subject has no jobs", "add prompts"))
    elif not prompts and not any(p.severity == "error" for p in problems[before:]):
        problems.append(warning(folder, "the subject has zero prompts (its prompts files list none): it has no jobs", "add prompts"))
    ids = [p.id for p in prompts if p.id is not None]
    if len(ids) != len(set(ids)):
        problems.append(error(folder, "duplicate prompt ids", "make the 'ids' of the subject's prompts unique"))
    return Subject(id=sid, split=split, photos=tuple(photos), prompts=tuple(prompts), folder=folder)


_LEFTOVER_SUFFIXES = (("_bg.png", "mask"), ("_attributes.json", "attributes file"))


def _report_leftovers(folder: Path, photo_indices: set[int], problems: list[Problem]) -> None:
    """A mask or attributes file whose photo is gone (e.g. ``1_bg.png`` without ``1.jpg``): a warning, not silence."""
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        for suffix, what in _LEFTOVER_SUFFIXES:
            stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else ""
            if stem.isdigit() and int(stem) not in photo_indices:
                problems.append(
                    warning(
                        path,
                        f"{what} of photo {int(stem)}, but the subject has no photo {int(stem)} ({stem}.jpg): ignored",
                        f"restore the photo {stem}.jpg or delete this file",
                    )
                )


class StellarDataset:
    """A Stellar-layout dataset: subjects, photos, attributes, masks, prompts, splits and jobs.

    Args:
        root: the folder holding ``NNN/`` subject folders (the official ``STELLAR/``).
        strict: raise :class:`DatasetError` listing every error found while loading (default). With
            ``strict=False`` the dataset loads what it can and ``problems`` lists the rest.
    """

    def __init__(self, root: str | Path, *, strict: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError("dataset folder not found", self.root, "pass the folder that holds the subject folders (000/, 001/, ...)")
        self.problems: list[Problem] = []
        split_of = self._read_splits()
        folders = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        subjects: dict[str, Subject] = {}
        for folder in sorted(folders, key=lambda p: _subject_sort_key(p.name)):
            if not layout.is_valid_subject_id(folder.name):
                self.problems.append(
                    error(folder, f"invalid subject folder name {folder.name!r}", "use letters, digits, '_' or '.' (e.g. 000)")
                )
                continue
            if not any(layout.photo_index_of(f.name) is not None for f in folder.iterdir()) and not (
                (folder / layout.PROMPTS_T_FILE).exists() or (folder / layout.PROMPTS_H_FILE).exists()
            ):
                continue  # not a subject folder (e.g. a user's notes folder)
            split = split_of.get(folder.name, layout.official_split(folder.name))
            subjects[folder.name] = _load_subject(folder, split, self.problems)
        for name in split_of:
            if name not in subjects:
                self.problems.append(error(self.root / layout.SPLITS_FILE, f"lists unknown subject {name!r}", "remove it or add its folder"))
        if not subjects:
            self.problems.append(error(self.root, "no subject folders found", "a subject is a folder NNN/ with 0.jpg, 1.jpg and prompts"))
        self.subjects: dict[str, Subject] = subjects
        objects = self.root / layout.OBJECTS_FILE
        self.objects: list[str] = []
        if objects.is_file():
            try:
                self.objects = [ln.strip() for ln in objects.read_text(encoding="utf-8").splitlines() if ln.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append(error(objects, f"cannot read as UTF-8 text ({exc})", "re-save it as UTF-8, one object per line"))
        errors = [p for p in self.problems if p.severity == "error"]
        if strict and errors:
            listed = "\n".join(str(p) for p in errors[:20])
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            raise DatasetError(
                f"{len(errors)} error(s) in the dataset:\n{listed}{more}",
                self.root,
                f"run `stellar dataset check {self.root}` for the full report",
            )

    def _read_splits(self) -> dict[str, str]:
        path = self.root / layout.SPLITS_FILE
        if not path.is_file():
            return {}
        data = _read_json(path, self.problems)
        out: dict[str, str] = {}
        if not isinstance(data, dict):
            if data is not None:
                self.problems.append(error(path, "expected {\"test\": [...], \"val\": [...]}", "fix the file"))
            return out
        for split, names in data.items():
            if split not in layout.SPLITS or not isinstance(names, list):
                self.problems.append(error(path, f"unknown split {split!r} or not a list", f"use {list(layout.SPLITS)}"))
                continue
            for name in names:
                if str(name) in out and out[str(name)] != split:
                    self.problems.append(error(path, f"subject {name!r} is listed in two splits", "list each subject once"))
                out[str(name)] = split
        return out

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.subjects)

    def __repr__(self) -> str:
        return f"StellarDataset({str(self.root)!r}, subjects={len(self.subjects)})"

    def subject(self, subject_id: str) -> Subject:
        try:
            return self.subjects[subject_id]
        except KeyError:
            raise DatasetError(f"unknown subject {subject_id!r}", self.root, "list subjects with `stellar dataset check`") from None

    def split_subjects(self, split: str | None = "test") -> list[Subject]:
        """Subjects of ``split`` (``"test"``, ``"val"``; ``None`` or ``"all"`` = every subject)."""
        if split in (None, "all"):
            return list(self.subjects.values())
        if split not in layout.SPLITS:
            raise DatasetError(f"unknown split {split!r}", None, f"use one of {list(layout.SPLITS) + ['all']}")
        return [s for s in self.subjects.values() if s.split == split]

    @property
    def photos(self) -> list[Photo]:
        return [p for s in self.subjects.values() for p in s.photos]

    def jobs(self, split: str | None = "test", kinds: Sequence[str] = layout.KINDS, seeds: int = 1) -> list[Job]:
        """Every job of ``split`` in official order: subject, photo, prompt index, seed.

        ``seeds > 1`` repeats each job with seed indices 0..seeds-1 and adds ``-sK`` to names.
        """
        kinds = tuple(k.upper() for k in kinds)
        for k in kinds:
            if k not in layout.KINDS:
                raise DatasetError(f"unknown prompt kind {k!r}", None, "use T (Stellar-T) and/or H (Stellar-H)")
        if seeds < 1:
            raise DatasetError(f"seeds must be ≥ 1, got {seeds}")
        out: list[Job] = []
        for subject in self.split_subjects(split):
            prompts = subject.prompts_of(kinds)
            for photo in subject.photos:
                for prompt in prompts:
                    for k in range(seeds):
                        name = layout.job_name(subject.id, photo.index, prompt.index, k if seeds > 1 else None)
                        out.append(Job(name, subject.id, subject.split, photo, prompt, k))
        return out

    def global_prompt_offsets(self, split: str | None = "test") -> dict[str, int]:
        """Offset of each subject's first prompt in the split's concatenated prompt list.

        Some releases name images ``SSS-I-G`` with G a split-global prompt index; this maps them back.
        """
        offsets, total = {}, 0
        for subject in self.split_subjects(split):
            offsets[subject.id] = total
            total += len(subject.prompts)
        return offsets

    # ------------------------------------------------------------------ validation
    def check(self, *, decode_images: bool = True, progress: bool = False) -> list[Problem]:
        """All problems: those found while loading plus, with ``decode_images``, every photo and mask decoded."""
        problems = list(self.problems)
        if decode_images:
            from tqdm.auto import tqdm

            for photo in tqdm(self.photos, desc="decoding photos", unit="photo", disable=not progress):
                try:
                    im = load_image(photo.path, draft_size=(256, 256))
                except ImageDecodeError as exc:
                    problems.append(error(photo.path, f"cannot decode: {exc.reason}", "replace the file with a valid image"))
                    continue
                if min(im.size) < 64:
                    problems.append(warning(photo.path, f"very small photo {im.size[0]}x{im.size[1]}", "use a photo ≥ 256 px"))
                if photo.mask_path is not None:
                    try:
                        mask = load_mask(photo)
                    except ImageDecodeError as exc:
                        problems.append(error(photo.mask_path, f"cannot decode mask: {exc.reason}", "replace or delete the mask"))
                        continue
                    if not mask.any():
                        problems.append(warning(photo.mask_path, "mask is empty (no value > 0)", "the subject must be > 0 in the mask"))
        return problems

    def summary(self) -> dict:
        """Counts a user checks first: subjects, photos, prompts by kind, jobs by split."""
        out: dict = {
            "root": str(self.root),
            "subjects": len(self.subjects),
            "photos": len(self.photos),
            "prompts_T": sum(1 for s in self.subjects.values() for p in s.prompts if p.kind == "T"),
            "prompts_H": sum(1 for s in self.subjects.values() for p in s.prompts if p.kind == "H"),
            "splits": {},
        }
        for split in layout.SPLITS:
            subjects = self.split_subjects(split)
            if subjects:
                out["splits"][split] = {
                    "subjects": len(subjects),
                    "jobs_T": sum(len(s.photos) * len(s.prompts_of("T")) for s in subjects),
                    "jobs_H": sum(len(s.photos) * len(s.prompts_of("H")) for s in subjects),
                }
        return out

    def files(self) -> list[Path]:
        """Files that define the dataset's content (what the fingerprint covers)."""
        out = [self.root / layout.OBJECTS_FILE, self.root / layout.SPLITS_FILE]
        for s in self.subjects.values():
            for p in s.photos:
                out += [p.path, p.mask_path, p.attributes_path]
            out += [s.folder / layout.PROMPTS_T_FILE, s.folder / layout.PROMPTS_H_FILE]
        return [p for p in out if p is not None and p.is_file()]

    def fingerprint(self) -> str:
        """``sha256:…`` over every content file's relative path and bytes (results cite it)."""
        return layout.tree_fingerprint(self.root, self.files())


def load_mask(photo: Photo, size: tuple[int, int] | None = None) -> np.ndarray:
    """The subject mask of ``photo`` as a bool array (subject = value > 0), resized (nearest) to ``size``.

    Masks are read in their own mode ("P" palette values, or "L"); an RGB colour mask counts any
    non-black pixel as subject. Without a mask file, the whole image is the subject.

    Raises:
        ImageDecodeError: the mask file cannot be decoded.
    """
    from PIL import Image

    if photo.mask_path is None:
        if size is None:
            with Image.open(photo.path) as im:
                size = im.size
        return np.ones((size[1], size[0]), dtype=bool)
    path = photo.mask_path
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "1", "I", "I;16"):
                arr = np.asarray(im if im.mode != "1" else im.convert("L"))
                if arr.ndim == 3:
                    arr = arr[..., 0]
                mask = arr > 0
            else:
                mask = np.asarray(im.convert("RGB")).max(axis=-1) > 0
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(path, str(exc)) from None
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    return mask
