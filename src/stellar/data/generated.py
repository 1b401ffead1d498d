"""``GeneratedSet``: a folder of generated images matched to a dataset's jobs (DESIGN §5).

The official layout is a flat folder of ``NAME.png`` (also ``.jpg``/``.jpeg``/``.webp``), each
optionally with a ``NAME.json`` sidecar holding the job metadata (``prompt``, ``image_path``,
``save_name``, ``attributes``, ``detectables``, generator settings). Matching, per image:

1. sidecar present: its ``save_name`` (or ``name``) when that is a job name; otherwise its
   ``image_path`` (``…/SSS/I.jpg``) + ``prompt`` (the template, or the prompt filled with any token);
2. no sidecar: the file name ``SSS-I-PP[-sK]`` with PP the subject-local prompt index, or — the
   other official variant — a split-global prompt index (see
   :meth:`StellarDataset.global_prompt_offsets`); local wins where both would fit.

Nothing is guessed: unmatched files, jobs without an image, several files for one job and
undecodable images are reported (:meth:`GeneratedSet.problems`, :meth:`GeneratedSet.match_text`),
never silently dropped. In particular:

- **seeds** are inferred from ``-sK`` suffixes only when every job-like name agrees: a set where
  some names carry a suffix and others do not is refused (:class:`DatasetError` naming the odd
  files) instead of guessing a seed count that unmatches every other file; ``--seeds`` decides;
- **sidecars are cross-checked**: a sidecar whose ``prompt`` / ``template`` is not the matched
  job's prompt, or whose ``image_path`` is another photo, is an *error* and the image is not
  matched (the job counts as having no image: an image made for "riding a horse" is never scored
  against "swimming with sharks"); a sidecar ``save_name`` that assigns a file to another job than
  its file name says is matched as the sidecar says (the official rule) with a *warning*;
- files the reader does not take are listed: images in other formats (``.bmp``, ``.tif``, ``.gif``
  … — an error: convert them), sub-folders (a warning: the set is one flat folder), sidecars
  without an image (a warning), names that are not valid UTF-8 (an error).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

from stellar.data import layout
from stellar.data.dataset import Job, StellarDataset
from stellar.data.problems import Problem, display_path, error, warning
from stellar.errors import DatasetError, ImageDecodeError
from stellar.images import is_image_file, load_image


@dataclass(frozen=True)
class GeneratedImage:
    job: Job
    path: Path
    sidecar: Path | None = None
    matched_by: str = "name"  # "sidecar" | "name" | "global-name"


@dataclass
class MatchReport:
    matched: dict[str, GeneratedImage] = field(default_factory=dict)  # job name -> image
    unmatched: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)  # job name -> every file claiming it
    missing: list[Job] = field(default_factory=list)
    other_split: list[Path] = field(default_factory=list)  # matched a job outside the expected split/kinds
    conflicts: list[tuple[Path, str]] = field(default_factory=list)  # (sidecar, how it disagrees with the dataset)
    reassigned: list[tuple[Path, str]] = field(default_factory=list)  # (sidecar, which job it assigns instead of the name's)
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # (file or folder the reader does not take, why)


#: Image formats PIL reads but the generated-set layout does not take: reported, never skipped silently.
UNREAD_IMAGE_EXTENSIONS = (".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif", ".jfif", ".ppm", ".jp2")


def _infer_seeds(folder: Path, files: list[Path]) -> int:
    """Seeds per job from ``-sK`` suffixes, refusing a set whose job-like names disagree."""
    parsed = [(f, p) for f in files if (p := layout.parse_job_name(f.stem)) is not None]
    with_seed = [f.name for f, p in parsed if p.seed is not None]
    without = [f.name for f, p in parsed if p.seed is None]
    if with_seed and without:
        odd = with_seed if len(with_seed) <= len(without) else without
        listed = ", ".join(odd[:10]) + (f" and {len(odd) - 10} more" if len(odd) > 10 else "")
        raise DatasetError(
            f"file names disagree on seeds: {len(with_seed)} carry a -sK seed suffix and {len(without)} do not; "
            f"the odd one(s) out: {listed}",
            folder,
            "remove or rename the odd files, or pass --seeds N (the seeds generated per job) so that they are reported as unmatched",
        )
    seeds = [p.seed for _, p in parsed if p.seed is not None]
    return max(seeds) + 1 if seeds else 1


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


def prompt_fits(prompt: str, template: str) -> bool:
    """Whether ``prompt`` is ``template`` itself or ``template`` with its ``{}`` filled by any words.

    Case and runs of whitespace are ignored ("A person  riding a horse" fits "{} riding a horse").
    """
    text = _words(prompt)
    if text == _words(template):
        return True
    before, sep, after = template.partition(layout.PLACEHOLDER)
    if not sep:
        return False
    before, after = _words(before), _words(after)
    return len(text) > len(before) + len(after) and text.startswith(before) and text.endswith(after)


def _photo_of(image_path: str) -> tuple[str, int] | None:
    """``…/SSS/I.jpg`` (POSIX or Windows separators) -> ``(SSS, I)``; None when it is not such a path."""
    parts = (PureWindowsPath(image_path) if "\\" in image_path else PurePosixPath(image_path)).parts
    if len(parts) >= 2 and (index := layout.photo_index_of(parts[-1])) is not None:
        return parts[-2], index
    return None


def sidecar_conflicts(meta: dict, job: Job) -> list[str]:
    """How a sidecar's ``prompt`` / ``template`` / ``image_path`` disagree with ``job`` (empty: they agree)."""
    out = []
    template, prompt, image_path = meta.get("template"), meta.get("prompt"), meta.get("image_path")
    if isinstance(template, str) and _words(template) != _words(job.prompt.template):
        out.append(f"its template {template!r} is not job {job.name}'s {job.prompt.template!r}")
    if isinstance(prompt, str) and not prompt_fits(prompt, job.prompt.template):
        out.append(f"its prompt {prompt!r} is not job {job.name}'s {job.prompt.template!r}")
    if isinstance(image_path, str) and (photo := _photo_of(image_path)) is not None and photo != (job.subject, job.photo.index):
        out.append(f"its image_path {image_path!r} is photo {photo[1]} of subject {photo[0]!r}, not job {job.name}'s")
    return out


def _is_utf8_name(path: Path) -> bool:
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates (PEP 383)
        return False
    return True


class GeneratedSet:
    """Generated images of one method matched to ``dataset``'s jobs.

    Args:
        folder: the flat folder of images (+ optional sidecars).
        dataset: the dataset the images were generated for.
        split, kinds: which jobs are expected (default: the test split, Stellar-T and -H).
        seeds: seeds per job; default: inferred from ``-sK`` suffixes (1 when there are none).
    """

    def __init__(
        self,
        folder: str | Path,
        dataset: StellarDataset,
        *,
        split: str | None = "test",
        kinds: Sequence[str] = layout.KINDS,
        seeds: int | None = None,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatasetError("generated-images folder not found", self.folder, "pass the folder your method wrote images to")
        self.dataset = dataset
        self.split = split
        self.kinds = tuple(kinds)
        self.sidecar_problems: list[Problem] = []
        files, ignored = self._scan()
        self.seeds = seeds if seeds is not None else _infer_seeds(self.folder, files)
        all_jobs = dataset.jobs(None, layout.KINDS, self.seeds)
        self._by_name = {j.name: j for j in all_jobs}
        self._by_photo_prompt: dict[tuple[str, int, str], list[Job]] = {}
        self._by_photo: dict[tuple[str, int], list[Job]] = {}
        for j in all_jobs:
            self._by_photo.setdefault((j.subject, j.photo.index), []).append(j)
            for text in {j.prompt.template, j.prompt.fill()}:
                self._by_photo_prompt.setdefault((j.subject, j.photo.index, text), []).append(j)
        self._offsets = {s: dataset.global_prompt_offsets(s) for s in (*layout.SPLITS, None)}
        expected = dataset.jobs(split, self.kinds, self.seeds)
        self.expected: dict[str, Job] = {j.name: j for j in expected}
        self.report = self._match(files)
        self.report.ignored = ignored

    # ------------------------------------------------------------------ matching
    def _scan(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        """(image files to match, what is not taken and why). Hidden entries (``.DS_Store``) are skipped."""
        files, ignored, sidecars = [], [], []
        for entry in sorted(self.folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                ignored.append((entry, "sub-folder not searched: a generated set is one flat folder"))
            elif not entry.is_file():
                continue
            elif not _is_utf8_name(entry):
                if is_image_file(entry) or entry.suffix.lower() in UNREAD_IMAGE_EXTENSIONS:
                    ignored.append((entry, "file name is not valid UTF-8, so it can be no job's name"))
            elif is_image_file(entry):
                files.append(entry)
            elif entry.suffix.lower() in UNREAD_IMAGE_EXTENSIONS:
                ignored.append((entry, f"{entry.suffix} images are not read (PNG, JPEG and WebP are)"))
            elif entry.suffix.lower() == ".json":
                sidecars.append(entry)
        stems = {f.stem for f in files}
        for sidecar in sidecars:
            if sidecar.stem not in stems:
                ignored.append((sidecar, "sidecar without an image of the same name"))
        return files, ignored

    def _read_sidecar(self, sidecar: Path) -> dict | None:
        """The sidecar's JSON object, or None (and an error problem) when it is unusable."""
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.sidecar_problems.append(error(sidecar, f"sidecar is not valid JSON ({exc})", "fix or delete the sidecar"))
            return None
        if not isinstance(meta, dict):
            self.sidecar_problems.append(error(sidecar, "sidecar must be a JSON object", "fix or delete the sidecar"))
            return None
        return meta

    def _match_sidecar(self, meta: dict, sidecar: Path) -> tuple[Job | None, str]:
        for key in ("save_name", "name"):
            value = meta.get(key)
            if isinstance(value, str) and value:
                if "/" in value or "\\" in value or ".." in value:
                    self.sidecar_problems.append(
                        error(sidecar, f"{key} {value!r} contains a path separator or '..'", "store the bare job name, e.g. 000-0-00")
                    )
                    return None, f"unsafe {key}"
                stem = Path(value).stem if is_image_file(value) else value
                job, _ = self._job_from_name(stem)
                if job is not None:
                    return job, ""
        image_path, prompt = meta.get("image_path"), meta.get("prompt")
        if isinstance(image_path, str) and isinstance(prompt, str):
            photo = _photo_of(image_path)
            if photo is not None:
                key = (*photo, prompt)
                candidates = self._by_photo_prompt.get(key, [])
                if not candidates:  # the prompt filled with another subject token ("a sks person riding ...")
                    candidates = [j for j in self._by_photo.get(photo, []) if prompt_fits(prompt, j.prompt.template)]
                seed = meta.get("seed_index", 0 if self.seeds == 1 else None)
                candidates = [j for j in candidates if seed is None or j.seed == seed]
                if len(candidates) == 1:
                    return candidates[0], ""
                if len(candidates) > 1:
                    return None, "sidecar matches several jobs (add save_name)"
        return None, "sidecar names no job of this dataset"

    def _job_from_name(self, stem: str) -> tuple[Job | None, str]:
        """(job, how): how is "name" (subject-local prompt index) or "global-name" (split-global)."""
        job = self._by_name.get(stem)
        if job is not None:
            return job, "name"
        parsed = layout.parse_job_name(stem)
        if parsed is None or parsed.subject not in self.dataset.subjects:
            return None, "name"
        # zero-padding variants ("000-0-5") and the split-global prompt index
        subject = self.dataset.subjects[parsed.subject]
        if self.seeds == 1 and parsed.seed is not None and parsed.seed > 0:
            return None, "name"  # "-s3" of a single-seed set is not job "…" (seed 0)
        seed = parsed.seed if self.seeds > 1 else None
        if parsed.prompt < len(subject.prompts):
            return self._by_name.get(layout.job_name(parsed.subject, parsed.photo, parsed.prompt, seed)), "name"
        local = parsed.prompt - self._offsets[subject.split].get(parsed.subject, 0)
        if 0 <= local < len(subject.prompts):
            return self._by_name.get(layout.job_name(parsed.subject, parsed.photo, local, seed)), "global-name"
        return None, "name"

    def _why_unmatched(self, stem: str) -> str:
        """Why a file name names no job: the part of ``SSS-I-PP[-sK]`` that does not fit."""
        parsed = layout.parse_job_name(stem)
        if parsed is None:
            return "name is not a job name SSS-I-PP[-sK]"
        subject = self.dataset.subjects.get(parsed.subject)
        if subject is None:
            return f"unknown subject {parsed.subject!r}"
        if parsed.photo not in {p.index for p in subject.photos}:
            return f"subject {parsed.subject!r} has no photo {parsed.photo}"
        if self.seeds == 1 and parsed.seed:
            return f"seed suffix -s{parsed.seed} in a set of 1 seed per job"
        if self.seeds > 1 and (parsed.seed is None or parsed.seed >= self.seeds):
            return f"seed suffix -s{parsed.seed} does not fit {self.seeds} seeds" if parsed.seed is not None else "no -sK seed suffix"
        return f"prompt index {parsed.prompt} is neither a prompt of subject {parsed.subject!r} nor a split-global index"

    def _match(self, files: list[Path]) -> MatchReport:
        report = MatchReport()
        claims: dict[str, list[GeneratedImage]] = {}
        for path in files:
            sidecar = path.with_suffix(".json")
            meta = self._read_sidecar(sidecar) if sidecar.is_file() else None
            if meta is not None:
                job, why = self._match_sidecar(meta, sidecar)
                how = "sidecar"
                named, _ = self._job_from_name(path.stem)
                if job is None:  # sidecar names no job: fall back on the name, but say so
                    job, how = named, "name"
                    if job is not None:
                        self.sidecar_problems.append(warning(sidecar, f"{why}; matched by file name instead", "fix the sidecar"))
                elif named is not None and named.name != job.name:
                    report.reassigned.append((sidecar, f"the sidecar assigns {path.name} to job {job.name}, its file name to job {named.name}"))
                if job is not None and (conflicts := sidecar_conflicts(meta, job)):
                    report.conflicts.append((sidecar, f"{path.name} is not matched: " + "; ".join(conflicts)))
                    continue
            else:
                job, how = self._job_from_name(path.stem)
                why = self._why_unmatched(path.stem) if job is None else ""
                if sidecar.is_file() and job is not None:  # unusable sidecar (already reported): the name decides
                    self.sidecar_problems.append(warning(sidecar, "unusable sidecar; matched by file name instead", "fix the sidecar"))
            if job is None:
                report.unmatched.append((path, why or "name is not a job of this dataset"))
                continue
            claims.setdefault(job.name, []).append(GeneratedImage(job, path, sidecar if sidecar.is_file() else None, how))
        for name, images in claims.items():
            if len(images) > 1:
                report.duplicates[name] = [im.path for im in images]
                continue
            if name not in self.expected:
                report.other_split.append(images[0].path)
                continue
            report.matched[name] = images[0]
        report.missing = [j for n, j in self.expected.items() if n not in report.matched and n not in report.duplicates]
        return report

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.report.matched)

    def __iter__(self):
        """Matched images in the official job order."""
        for name in self.expected:
            if name in self.report.matched:
                yield self.report.matched[name]

    def problems(self, *, decode_images: bool = False, allow_missing: bool = False, progress: bool = False) -> list[Problem]:
        """Every problem of the set; ``decode_images`` decodes each matched image (slow, thorough)."""
        r = self.report
        out = list(self.sidecar_problems)
        for path, why in r.unmatched:
            out.append(error(path, f"not matched to any job: {why}", "name files SSS-I-PP.png as `stellar jobs export` lists them"))
        for name, paths in r.duplicates.items():
            out.append(error(paths[0], f"{len(paths)} files claim job {name}: {', '.join(p.name for p in paths)}", "keep exactly one image per job"))
        for sidecar, why in r.conflicts:
            out.append(error(sidecar, f"sidecar disagrees with the dataset: {why}", "regenerate the image for its job, or correct the sidecar"))
        for sidecar, why in r.reassigned:
            out.append(warning(sidecar, f"save_name re-assigns the image: {why}", "matched as the sidecar says; rename the file or fix save_name if that is wrong"))
        for path, why in r.ignored:
            if path.is_dir() or path.suffix.lower() == ".json":
                out.append(warning(path, f"ignored: {why}", "move the images into the set's folder" if path.is_dir() else "delete it or add its image"))
            else:
                fix = "rename it with its job's ASCII name (SSS-I-PP.png)" if "UTF-8" in why else "convert it to PNG named as its job (SSS-I-PP.png)"
                out.append(error(path, f"ignored: {why}", fix))
        for path in r.other_split:
            out.append(warning(path, f"job outside the checked split/kinds ({self.split}, {','.join(self.kinds)})", "ignored; pass --split/--kinds to include it"))
        if r.missing:
            sample = ", ".join(j.name for j in r.missing[:5]) + (" ..." if len(r.missing) > 5 else "")
            make = warning if allow_missing else error
            out.append(make(self.folder, f"{len(r.missing)} job(s) have no image: {sample}", "generate them (stellar jobs export lists every job)"))
        if decode_images:
            from tqdm.auto import tqdm

            for image in tqdm(list(self), desc="decoding images", unit="img", disable=not progress):
                try:
                    load_image(image.path, draft_size=(256, 256))
                except ImageDecodeError as exc:
                    out.append(error(image.path, f"cannot decode: {exc.reason}", "regenerate this image"))
        return out

    def summary(self) -> dict:
        r = self.report
        return {
            "folder": display_path(self.folder),
            "expected": len(self.expected),
            "matched": len(r.matched),
            "unmatched": len(r.unmatched),
            "missing": len(r.missing),
            "duplicates": len(r.duplicates),
            "other_split": len(r.other_split),
            "sidecar_conflicts": len(r.conflicts),
            "reassigned": len(r.reassigned),
            "broken_sidecars": sum(1 for p in self.sidecar_problems if p.severity == "error"),
            "ignored": len(r.ignored),
            "seeds": self.seeds,
            "matched_by": {k: sum(1 for im in r.matched.values() if im.matched_by == k) for k in ("sidecar", "name", "global-name")},
        }

    def match_text(self, *, limit: int = 5) -> str:
        """The match report printed before an evaluation: counts, then the first ``limit`` problems of each severity."""
        s = self.summary()
        by = ", ".join(f"{k} {v}" for k, v in s["matched_by"].items() if v)
        lines = [
            f"generated set {s['folder']}: matched {s['matched']}/{s['expected']} jobs ({s['seeds']} seed(s) per job{'; by ' + by if by else ''})",
            f"  unmatched files {s['unmatched']}, jobs without image {s['missing']}, duplicated jobs {s['duplicates']}, "
            f"broken sidecars {s['broken_sidecars']}, sidecars disagreeing with the dataset {s['sidecar_conflicts']}, "
            f"re-assigned by save_name {s['reassigned']}, not read {s['ignored']}, outside split/kinds {s['other_split']}",
        ]
        problems = self.problems(allow_missing=True)
        for severity in ("error", "warning"):
            items = [p for p in problems if p.severity == severity]
            lines += [str(p) for p in items[:limit]]
            if len(items) > limit:
                lines.append(f"... and {len(items) - limit} more {severity}s (`stellar generated check` lists them all)")
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """``sha256:…`` over the matched images and sidecars (results cite it)."""
        images = list(self.report.matched.values())
        files = [im.path for im in images] + [im.sidecar for im in images if im.sidecar is not None]
        return layout.tree_fingerprint(self.folder, files)
