"""Write a generated set in the official layout (DESIGN §5): ``NAME.png`` + ``NAME.json`` sidecar.

The sidecar of job ``000-0-03`` (``000-0-03.json``)::

    {"save_name": "000-0-03", "prompt": "a person riding a horse in the jungle",
     "template": "{} riding a horse in the jungle", "image_path": "000/0.jpg",
     "attributes": {...}, "detectables": [...], "categories": [...], "kind": "T",
     "subject": "000", "photo": 0, "prompt_index": 3, "seed_index": 0,
     "method": "copy", "seed": 0, "settings": {"size": 512}, "stellar_version": "0.1.0"}

``prompt`` is the template filled with "a person" (what the text metrics use), ``image_path`` the
input photo relative to the dataset root. :class:`~stellar.data.generated.GeneratedSet` matches by
``save_name``.

Every file is written atomically (temp file in the same folder + rename), image first, sidecar
last: a sidecar therefore certifies a complete image. On a rerun a job is skipped when its
image decodes and its sidecar names the same job, template, method, seed and settings; anything
else (missing, truncated, other settings) is regenerated — so an interrupted run resumes, and a
changed setting never leaves stale images behind under a valid-looking sidecar.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image

from stellar import __version__
from stellar.data.dataset import Job, Photo, Prompt, StellarDataset, Subject
from stellar.errors import ImageDecodeError, StellarError
from stellar.fileio import atomic_write_bytes
from stellar.generate.base import (
    Method,
    method_settings,
    prepare_subject,
    resolve_device,
)
from stellar.images import load_image

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
#: Sidecar keys that must agree for an existing output to be reused.
_RESUME_KEYS = ("save_name", "template", "method", "seed", "seed_index", "settings")


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_generated_set` did."""

    folder: Path
    total: int
    written: int
    skipped: int  # valid outputs found and kept (resume)


def sidecar_record(job: Job, method_name: str, seed: int, settings: Mapping[str, Any], dataset_root: Path | None = None) -> dict:
    """The JSON sidecar of ``job`` (see the module docstring)."""
    try:
        image_path = job.photo.path.relative_to(dataset_root).as_posix() if dataset_root else f"{job.subject}/{job.photo.path.name}"
    except ValueError:
        image_path = f"{job.subject}/{job.photo.path.name}"
    return {
        "save_name": job.name,
        "prompt": job.prompt.fill(),
        "template": job.prompt.template,
        "image_path": image_path,
        "attributes": dict(job.photo.attributes),
        "detectables": list(job.prompt.detectables),
        "categories": list(job.prompt.categories),
        "kind": job.prompt.kind,
        "subject": job.subject,
        "photo": job.photo.index,
        "prompt_index": job.prompt.index,
        "seed_index": job.seed,
        "method": method_name,
        "seed": int(seed),
        "settings": json.loads(json.dumps(dict(settings), default=str)),
        "stellar_version": __version__,
    }


def output_paths(folder: Path, job: Job, image_format: str = "png") -> tuple[Path, Path]:
    """(image, sidecar) paths of ``job`` in ``folder``."""
    return folder / f"{job.name}.{image_format}", folder / f"{job.name}.json"


def is_complete(image_path: Path, sidecar_path: Path, expected: Mapping[str, Any]) -> bool:
    """True when the image decodes and the sidecar agrees with ``expected`` on the resume keys."""
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(meta, dict) or any(meta.get(k) != expected.get(k) for k in _RESUME_KEYS):
        return False
    try:
        load_image(image_path)
    except ImageDecodeError:
        return False
    return True


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, format=fmt, quality=95)
    elif fmt == "PNG":
        # zlib level 1: 3-6x faster than PIL's default 6 for photo-like images, files ~5% larger.
        image.save(buf, format=fmt, compress_level=1)
    else:
        image.save(buf, format=fmt)
    return buf.getvalue()


def write_generated_set(
    method: Method,
    jobs: Sequence[Job],
    folder: str | Path,
    *,
    dataset: StellarDataset | None = None,
    seed: int = 0,
    batch_size: int = 8,
    device: str | None = None,
    image_format: str = "png",
    dataset_root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> WriteSummary:
    """Generate ``jobs`` with ``method`` into ``folder`` (official layout), resuming valid outputs.

    Args:
        method: a :class:`~stellar.generate.base.Method`; ``setup`` is called once here (only when
            some job is left to generate), ``prepare_subject`` whenever the subject changes.
        jobs: in dataset order (subjects contiguous), e.g. ``StellarDataset.jobs("test")``.
        folder: output folder (created).
        dataset: the jobs' dataset: ``prepare_subject`` gets its full :class:`Subject` (else one
            rebuilt from the jobs' photos and prompts), and sidecar paths are relative to its root.
        seed: base seed; each job's RNG seed is :func:`~stellar.generate.base.job_seed` of it.
        batch_size: jobs per ``generate`` call (a batch never mixes subjects).
        device: "cpu", "cuda", ...; ``None`` = cuda when available, else cpu.
        image_format: "png" (default), "jpg" or "webp".
        dataset_root: makes sidecar ``image_path`` relative to it (default: the dataset's root,
            else ``SSS/I.jpg``).
        force: regenerate even valid existing outputs.

    Raises:
        StellarError: bad arguments, or the method returned something other than one image per job.
    """
    from tqdm.auto import tqdm

    if image_format not in IMAGE_FORMATS:
        raise StellarError(f"unknown image format {image_format!r}\n  fix: use one of {', '.join(IMAGE_FORMATS)}")
    if batch_size < 1:
        raise StellarError(f"batch_size must be ≥ 1, got {batch_size}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = getattr(method, "name", type(method).__name__)
    settings = method_settings(method)
    root = Path(dataset_root) if dataset_root is not None else (dataset.root if dataset is not None else None)
    records = {job.name: sidecar_record(job, name, seed, settings, root) for job in jobs}
    if len(records) != len(jobs):
        raise StellarError("jobs contain duplicate names\n  fix: pass each job once (use seeds > 1 for several images per job)")

    pending = [
        job for job in jobs if force or not is_complete(*output_paths(folder, job, image_format), records[job.name])
    ]
    skipped = len(jobs) - len(pending)
    if pending:
        method.setup(resolve_device(device))
    batches: list[list[Job]] = []
    for job in pending:  # batches of one subject each, so prepare_subject runs once per subject run
        if batches and len(batches[-1]) < batch_size and batches[-1][0].subject == job.subject:
            batches[-1].append(job)
        else:
            batches.append([job])
    fmt = IMAGE_FORMATS[image_format]
    subjects = _subjects_of(pending, dataset)
    current_subject: str | None = None
    written = 0
    with tqdm(total=len(pending), desc=f"generating ({name})", unit="img", disable=not progress) as bar:
        for batch in batches:
            if batch[0].subject != current_subject:
                current_subject = batch[0].subject
                prepare_subject(method, subjects[current_subject])
            images = method.generate(batch, seed)
            if not isinstance(images, (list, tuple)) or len(images) != len(batch):
                got = len(images) if isinstance(images, (list, tuple)) else type(images).__name__
                raise StellarError(f"method {name!r} returned {got} image(s) for {len(batch)} job(s)\n  fix: return one PIL image per job, in order")
            for job, image in zip(batch, images):
                if not isinstance(image, Image.Image):
                    raise StellarError(f"method {name!r} returned {type(image).__name__} for job {job.name}\n  fix: return PIL.Image.Image objects")
                image_path, sidecar_path = output_paths(folder, job, image_format)
                atomic_write_bytes(image_path, _encode(image, fmt))
                atomic_write_bytes(sidecar_path, (json.dumps(records[job.name], indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
                written += 1
                bar.update(1)
    return WriteSummary(folder=folder, total=len(jobs), written=written, skipped=skipped)


def _subjects_of(jobs: Sequence[Job], dataset: StellarDataset | None) -> dict[str, Subject]:
    """subject id -> :class:`Subject`: the dataset's when given, else rebuilt from the jobs' photos and prompts."""
    if dataset is not None:
        return {sid: dataset.subject(sid) for sid in dict.fromkeys(j.subject for j in jobs)}
    photos: dict[str, dict[int, Photo]] = {}
    prompts: dict[str, dict[int, Prompt]] = {}
    for j in jobs:
        photos.setdefault(j.subject, {})[j.photo.index] = j.photo
        prompts.setdefault(j.subject, {})[j.prompt.index] = j.prompt
    out = {}
    for j in jobs:
        if j.subject not in out:
            ph, pr = photos[j.subject], prompts[j.subject]
            out[j.subject] = Subject(
                id=j.subject,
                split=j.split,
                photos=tuple(ph[i] for i in sorted(ph)),
                prompts=tuple(pr[i] for i in sorted(pr)),
                folder=j.photo.path.parent,
            )
    return out
