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
undecodable images are reported (:meth:`GeneratedSet.problems`), never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

from stellar.data import layout
from stellar.data.dataset import Job, StellarDataset
from stellar.data.problems import Problem, error, warning
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


def _infer_seeds(names: list[str]) -> int:
    seeds = [p.seed for n in names if (p := layout.parse_job_name(n)) is not None and p.seed is not None]
    return max(seeds) + 1 if seeds else 1


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
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and is_image_file(p))
        self.seeds = seeds if seeds is not None else _infer_seeds([p.stem for p in files])
        all_jobs = dataset.jobs(None, layout.KINDS, self.seeds)
        self._by_name = {j.name: j for j in all_jobs}
        self._by_photo_prompt: dict[tuple[str, int, str], list[Job]] = {}
        for j in all_jobs:
            for text in {j.prompt.template, j.prompt.fill()}:
                self._by_photo_prompt.setdefault((j.subject, j.photo.index, text), []).append(j)
        self._offsets = {s: dataset.global_prompt_offsets(s) for s in (*layout.SPLITS, None)}
        expected = dataset.jobs(split, self.kinds, self.seeds)
        self.expected: dict[str, Job] = {j.name: j for j in expected}
        self.report = self._match(files)

    # ------------------------------------------------------------------ matching
    def _match_sidecar(self, image: Path, sidecar: Path) -> tuple[Job | None, str]:
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.sidecar_problems.append(error(sidecar, f"sidecar is not valid JSON ({exc})", "fix or delete the sidecar"))
            return None, "unreadable sidecar"
        if not isinstance(meta, dict):
            self.sidecar_problems.append(error(sidecar, "sidecar must be a JSON object", "fix or delete the sidecar"))
            return None, "sidecar is not an object"
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
            parts = (PureWindowsPath(image_path) if "\\" in image_path else PurePosixPath(image_path)).parts
            if len(parts) >= 2 and layout.photo_index_of(parts[-1]) is not None:
                key = (parts[-2], layout.photo_index_of(parts[-1]), prompt)
                candidates = self._by_photo_prompt.get(key, [])
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
        if self.seeds > 1 and (parsed.seed is None or parsed.seed >= self.seeds):
            return f"seed suffix -s{parsed.seed} does not fit {self.seeds} seeds" if parsed.seed is not None else "no -sK seed suffix"
        return f"prompt index {parsed.prompt} is neither a prompt of subject {parsed.subject!r} nor a split-global index"

    def _match(self, files: list[Path]) -> MatchReport:
        report = MatchReport()
        claims: dict[str, list[GeneratedImage]] = {}
        for path in files:
            sidecar = path.with_suffix(".json")
            if sidecar.is_file():
                job, why = self._match_sidecar(path, sidecar)
                how = "sidecar"
                if job is None:  # sidecar unusable: fall back on the name, but say so
                    job, how = self._job_from_name(path.stem)
                    if job is not None:
                        self.sidecar_problems.append(warning(sidecar, f"{why}; matched by file name instead", "fix the sidecar"))
            else:
                job, how = self._job_from_name(path.stem)
                why = self._why_unmatched(path.stem) if job is None else ""
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
            "folder": str(self.folder),
            "expected": len(self.expected),
            "matched": len(r.matched),
            "unmatched": len(r.unmatched),
            "missing": len(r.missing),
            "duplicates": len(r.duplicates),
            "other_split": len(r.other_split),
            "seeds": self.seeds,
            "matched_by": {k: sum(1 for im in r.matched.values() if im.matched_by == k) for k in ("sidecar", "name", "global-name")},
        }

    def fingerprint(self) -> str:
        """``sha256:…`` over the matched images and sidecars (results cite it)."""
        images = list(self.report.matched.values())
        files = [im.path for im in images] + [im.sidecar for im in images if im.sidecar is not None]
        return layout.tree_fingerprint(self.folder, files)
