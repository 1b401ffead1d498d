"""``evaluate``: one evaluation run over a dataset and a generated set (DESIGN §7).

1. Match the generated set to the jobs (problems reported up front; ``strict`` stops on them).
2. Validate everything (metrics, scorers, run directory) before anything is written or deleted;
   take the run directory's lock (one writer per run directory and shard).
3. Reference side first: every photo of every involved subject is decoded and hashed once; its
   faces / CLIP features go through each model once, cached on disk by (content hash, model
   protocol); prompt texts are embedded once per unique text. A photo that cannot be decoded is
   recorded, never a crash (its jobs get status ``reference_decode_error``).
4. Generated side streamed in batches: images decoded in worker threads ahead of the models, each
   model runs once per image; per-image raw values are written as part files.
5. Finalise: the exclusion rule (σ over the whole evaluated set), IPS/SIS after exclusion, APS
   probes, the failure rule (DESIGN §6.10), ``per_image.parquet``; then every dataset-level number
   from :func:`stellar.metrics.aggregate.summarize` over that table into ``summary.json``.

Failure rule (``EvalConfig.failure_rule``): ``"worst"`` (default) — every expected job has a row; a
job without an image (status ``missing``; also a job claimed by two files) or with an undecodable one
(``decode_error``) scores each metric's declared ``failure_value`` (0 for the similarities) and the
wrong APS prediction; a job whose input photo cannot be decoded (``reference_decode_error``) scores
the failure value for every metric that needs the input photo. ``"partial"`` keeps the mean over what
exists: only jobs with an image get rows, failures are NaN (and left out of APS). ``run.json`` and
every report say which rule a run used.

Resume: rows are keyed by everything they depend on (``row_key`` = sha256 of the generated image's
bytes, the sha256 of every photo of the subject, the prompt and the model protocol); a rerun skips the
jobs whose key is unchanged and evaluates exactly the others — a replaced image, a replaced reference
photo, an edited prompt. Finalisation sorts rows into job order, so the result equals an uninterrupted
run. Sharding (``shard=(i, n)``) evaluates jobs ``i, i+n, …`` into ``parts/shard-i-of-n``; whichever
shard finishes with every job covered finalises.
"""

from __future__ import annotations

import hashlib
import json
import platform
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from stellar import __version__
from stellar.data.dataset import Job, StellarDataset
from stellar.data.generated import GeneratedSet
from stellar.data.layout import APS_ATTRIBUTES
from stellar.engine.cache import FeatureCache, content_hash
from stellar.engine.lock import RunLock
from stellar.engine.scorers import SCORERS, Scorer, ScoringItem, build_scorers
from stellar.engine.store import RUN_FORMAT, ResultsStore, atomic_write_parquet
from stellar.errors import ImageDecodeError, StellarError
from stellar.images import load_image
from stellar.metrics import aggregate as agg
from stellar.metrics import identity as idm
from stellar.metrics.base import METRICS, failure_value

FACE_METRICS = ("ips", "sis", "aps")
CLIP_METRICS = ("clip_t", "clip_i")
DEFAULT_METRICS = ("ips", "sis", "aps", "clip_t", "clip_i")
FAILURE_RULES = ("worst", "partial")
#: statuses whose metrics take the failure rule: every metric (no image) / those needing the input photo
IMAGE_FAILURES = agg.IMAGE_FAILURES
REFERENCE_FAILURE = "reference_decode_error"


@dataclass(frozen=True)
class EvalConfig:
    """What to compute and how; stored in ``run.json`` (a resumed run must have the same config)."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    split: str | None = "test"
    kinds: tuple[str, ...] = ("T", "H")
    seeds: int | None = None
    batch_size: int = 8
    num_workers: int = 2
    strict: bool = False
    reuse: bool = True  # False: recompute reference faces for every metric and image (benchmarks)
    use_cache: bool = True
    shard: tuple[int, int] = (0, 1)
    method: str | None = None
    failure_rule: str = "worst"  # DESIGN §6.10: "worst" | "partial"

    def comparable(self) -> dict:
        """The part of the config that must match for a resume (the failure rule only changes finalisation)."""
        d = asdict(self)
        for k in ("batch_size", "num_workers", "shard", "method", "use_cache", "failure_rule"):
            d.pop(k)
        d["metrics"] = list(d["metrics"])
        d["kinds"] = list(d["kinds"])
        return d


@dataclass
class RunCounters:
    face_passes_generated: int = 0
    face_passes_reference: int = 0
    clip_image_passes: int = 0
    generated_images: int = 0


def _face_arrays(faces) -> dict[str, np.ndarray]:
    if not faces:
        return {
            "boxes": np.zeros((0, 4), np.float32),
            "scores": np.zeros((0,), np.float32),
            "embeddings": np.zeros((0, 0), np.float32),
        }
    return {
        "boxes": np.stack([np.asarray(f.box, np.float32) for f in faces]),
        "scores": np.asarray([f.score for f in faces], np.float32),
        "embeddings": np.stack([np.asarray(f.embedding, np.float32) for f in faces]),
    }


def _largest(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    emb, boxes = arrays["embeddings"], arrays["boxes"]
    if len(emb) == 0:
        return None
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    return emb[int(np.argmax(area))]


class _Extractor:
    """Runs the models on images, through the feature cache; counts model passes."""

    def __init__(self, faces, clip, cache: FeatureCache, counters: RunCounters):
        self.faces, self.clip, self.cache, self.counters = faces, clip, cache, counters

    def _through_cache(self, protocol: str, images, keys, compute) -> tuple[list, int]:
        """``compute(images) -> list[dict of arrays]`` on the decoded images whose key misses the cache.

        Undecodable images (``None``) get ``None``; returns (per-image arrays, how many were computed).
        """
        out: list[dict | None] = [None] * len(images)
        todo = []
        for i, (im, key) in enumerate(zip(images, keys)):
            if im is None:
                continue
            hit = self.cache.get(protocol, key)
            if hit is not None:
                out[i] = hit
            else:
                todo.append(i)
        if todo:
            for i, arrays in zip(todo, compute([images[i] for i in todo])):
                self.cache.put(protocol, keys[i], arrays)
                out[i] = arrays
        return out, len(todo)

    def faces_of(self, images: Sequence[np.ndarray | None], keys: Sequence[str], reference: bool) -> list[dict | None]:
        out, n = self._through_cache(self.faces.protocol, images, keys, lambda ims: [_face_arrays(f) for f in self.faces.analyze(ims)])
        if reference:
            self.counters.face_passes_reference += n
        else:
            self.counters.face_passes_generated += n
        return out

    def clip_images(self, images: Sequence[np.ndarray | None], keys: Sequence[str]) -> list[np.ndarray | None]:
        out, n = self._through_cache(self.clip.protocol, images, keys, lambda ims: [{"image": e} for e in self.clip.encode_images(ims)])
        self.counters.clip_image_passes += n
        return [None if a is None else a["image"] for a in out]


def _decode(path: Path) -> tuple[np.ndarray | None, str]:
    try:
        return np.array(load_image(path)), ""
    except ImageDecodeError as exc:
        return None, exc.reason


def _prefetch(paths_batches: list[list[Path]], workers: int) -> Iterator[list[tuple[np.ndarray | None, str]]]:
    """Decode batches in worker threads, at most two batches ahead (memory stays flat)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = []
        for batch in paths_batches:
            pending.append([pool.submit(_decode, p) for p in batch])
            if len(pending) > 2:
                yield [f.result() for f in pending.pop(0)]
        for futures in pending:
            yield [f.result() for f in futures]


def _versions() -> dict:
    """Package versions from their metadata (no import of torch/transformers just for a string)."""
    from importlib import metadata

    out = {"stellar-bench": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod, dist in (("torch", "torch"), ("transformers", "transformers"), ("sklearn", "scikit-learn"), ("dlib", "dlib-bin"), ("dlib", "dlib"), ("onnxruntime", "onnxruntime")):
        if mod in out:
            continue
        try:
            out[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------- run directory
def _prepare_run_dir(out: Path, run_info: dict, *, force: bool, shard_name: str, n_shards: int) -> None:
    """Check ``out`` may hold this run; with ``force`` delete only what the project wrote there.

    Called after every input has been validated, so a typo never costs the previous results.
    """
    store = ResultsStore(out, shard_name)
    if out.exists() and not out.is_dir():
        raise StellarError(f"--out {out} is a file, not a folder.\n  fix: choose a folder path for the run directory")
    old = store.read_run_json()
    foreign = store.foreign_content()
    if foreign:
        raise StellarError(
            f"{out} is not a Stellar-Bench run directory ({', '.join(foreign)} present without a run.json of format {RUN_FORMAT}); "
            "refusing to write or delete anything there.\n  fix: choose another --out (an empty or new folder)"
        )
    if force:
        store.clear(everything=n_shards == 1)
        return
    if old is not None:
        same = old.get("config") == run_info["config"] and old.get("models") == run_info["models"] and old.get("metrics") == run_info["metrics"]
        if not same:
            raise StellarError(
                f"{out} holds results of another configuration (metrics, models or split differ).\n"
                "  fix: pass --force to recompute, or choose another --out"
            )


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _row_key(job: Job, image_sha: str | None, photo_shas: dict[Path, str | None], dataset: StellarDataset, protocol: str) -> str:
    """What a row depends on: the generated bytes, every photo of the subject, the prompt, the protocol."""
    p = job.prompt
    photos = [photo_shas.get(ph.path) for ph in dataset.subject(job.subject).photos]
    prompt = [p.template, p.fill(), list(p.detectables), list(p.categories), None if p.triplets is None else [list(t) for t in p.triplets], p.kind]
    labels = [job.photo.attributes.get(a, 0) for a in APS_ATTRIBUTES]
    return _digest([image_sha, job.photo.index, photos, prompt, labels, protocol])


def _base_row(job: Job, path: Path | None, sha: str | None, key: str) -> dict:
    return {
        "name": job.name,
        "subject": job.subject,
        "photo": job.photo.index,
        "prompt_index": job.prompt.index,
        "kind": job.kind,
        "seed": job.seed,
        "split": job.split,
        "categories": list(job.prompt.categories),
        "image": None if path is None else str(path),
        "image_sha256": sha,
        "row_key": key,
        "status": "ok",
        "error": "",
        "ips_raw": np.nan,
        "sis_raw": np.nan,
        "n_faces_generated": np.nan,
        "n_faces_reference": np.nan,
        "face_score": np.nan,
        "face_boxes": None,
        "face_embedding": None,
        "clip_t": np.nan,
        "clip_n": np.nan,
        "clip_i": np.nan,
    }


@dataclass
class _Reference:
    """The reference side of a run: per photo its sha256, decode error, faces and CLIP embedding."""

    sha: dict[Path, str | None]
    error: dict[Path, str]
    faces: dict[Path, dict | None]
    clip: dict[Path, np.ndarray | None]


def _reference_phase(dataset, photos, ext: _Extractor, *, wants_faces: bool, wants_clip: bool, batch_size: int, progress: bool) -> _Reference:
    """Decode and hash every reference photo once; faces / CLIP once per photo (through the cache)."""
    from tqdm.auto import tqdm

    ref = _Reference({}, {}, {}, {})
    for start in tqdm(range(0, len(photos), batch_size), desc="reference photos", unit="batch", disable=not progress):
        chunk = photos[start : start + batch_size]
        decoded = [_decode(p.path) for p in chunk]
        arrays = [d for d, _ in decoded]
        for p, (arr, err) in zip(chunk, decoded):
            try:
                ref.sha[p.path] = content_hash(p.path)
            except OSError as exc:
                ref.sha[p.path], arr, err = None, None, str(exc)
            if arr is None:
                ref.error[p.path] = err or "cannot be read"
        keys = [ref.sha[p.path] or "" for p in chunk]
        if wants_faces:
            for p, f in zip(chunk, ext.faces_of(arrays, keys, reference=True)):
                ref.faces[p.path] = f
        if wants_clip:
            for p, e in zip(chunk, ext.clip_images(arrays, keys)):
                ref.clip[p.path] = e
    return ref


def evaluate(
    dataset: StellarDataset,
    generated: str | Path | GeneratedSet,
    out: str | Path,
    config: EvalConfig = EvalConfig(),
    *,
    faces=None,
    clip=None,
    clip_unavailable: str | None = None,
    cache: FeatureCache | None = None,
    scorers: Sequence[Scorer] | None = None,
    scorer_options: dict | None = None,
    progress: bool = True,
    force: bool = False,
    wait: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> dict | None:
    """Run (or resume) an evaluation; returns the summary, or ``None`` when other shards are unfinished.

    Args:
        dataset: the benchmark dataset.
        generated: a generated-set folder or :class:`GeneratedSet`.
        out: the run directory.
        config: :class:`EvalConfig`.
        faces: a face analyzer (``.protocol``, ``.analyze(images) -> list[list[Face]]``), needed by
            IPS/SIS/APS.
        clip: a :class:`~stellar.models.clip.ClipEncoder` or ``None``. Without it CLIP-T/CLIP-I are
            skipped and the exclusion rule is reported as *not applied* (``clip_unavailable`` says why).
        cache: the feature cache (default ``$STELLAR_HOME/features``).
        scorers: the :class:`~stellar.engine.scorers.Scorer` objects of the other metrics (GOA, RFS,
            DINO, ...); default: built from :data:`~stellar.engine.scorers.SCORERS` with ``scorer_options``.
        force: discard the previous results of ``out`` — only after everything else was validated, and
            only files this project wrote (a folder that is not a run directory is refused).
        wait: when another process writes ``out`` (same shard), wait for it instead of refusing.
        on_batch: called with the batch index after each part is written (tests inject crashes here).
    """
    from tqdm.auto import tqdm

    from stellar.models.registry import non_reference_weights, stellar_home

    unknown = [m for m in config.metrics if m not in METRICS]
    if unknown:
        raise StellarError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)} (stellar metrics list)")
    if config.failure_rule not in FAILURE_RULES:
        raise StellarError(f"failure rule {config.failure_rule!r}: use one of {', '.join(FAILURE_RULES)}")
    wants_faces = any(m in FACE_METRICS for m in config.metrics)
    if wants_faces and faces is None:
        raise StellarError("IPS/SIS/APS need a face analyzer (--faces paper|arcface|offline)")
    metrics = [m for m in config.metrics if m not in CLIP_METRICS or clip is not None]
    skipped_metrics = {m: clip_unavailable or "no CLIP model" for m in config.metrics if m not in metrics}
    builtin = set(FACE_METRICS) | set(CLIP_METRICS)
    others = [m for m in metrics if m not in builtin]
    if scorers is None:
        scorers = build_scorers(others, scorer_options, device=getattr(clip, "device", None), batch_size=config.batch_size) if others else []
    covered = {m for s in scorers for m in s.metrics}
    missing = [m for m in others if m not in covered]
    if missing:
        raise StellarError(f"no scorer computes metric(s) {missing}; known scorers: {sorted(SCORERS)}")

    out = Path(out)
    gs = generated if isinstance(generated, GeneratedSet) else GeneratedSet(generated, dataset, split=config.split, kinds=config.kinds, seeds=config.seeds)
    match_problems = gs.problems(allow_missing=True)
    if config.strict and (any(p.severity == "error" for p in match_problems) or gs.report.missing):
        listed = "\n".join(str(p) for p in match_problems[:20])
        raise StellarError(f"the generated set does not match the jobs (--strict):\n{listed}")
    i, n = config.shard
    shard_name = "all" if n == 1 else f"shard-{i}-of-{n}"
    store = ResultsStore(out, shard_name)
    models = {
        "faces": getattr(faces, "protocol", None) if wants_faces else None,
        "clip": getattr(clip, "protocol", None) or getattr(clip, "name", None),
        "scorers": {s.name: s.protocol for s in scorers},
        **({"non_reference_weights": nonref} if (nonref := non_reference_weights()) else {}),  # --weights FILE not the card's file
    }
    expected = list(gs.expected.values())
    run_info = {
        "format": RUN_FORMAT,
        "method": config.method or gs.folder.name,
        "config": config.comparable(),
        "failure_rule": config.failure_rule,
        "metrics": metrics,
        "skipped_metrics": skipped_metrics,
        "models": models,
        "exclusion_rule": "applied" if clip is not None else f"not applied: {clip_unavailable or 'no CLIP model'}",
        "dataset": {"root": str(dataset.root), "fingerprint": dataset.fingerprint()},
        "generated": {"folder": str(gs.folder), "fingerprint": gs.fingerprint(), "match": gs.summary()},
        "jobs": _expected_jobs(expected),
        "match_problems": [p.to_dict() for p in match_problems],
        "versions": _versions(),
    }
    _prepare_run_dir(out, run_info, force=force, shard_name=shard_name, n_shards=n)
    with RunLock(out, shard_name, wait=wait):
        store.write_json("run.json", run_info)
        cache = cache or FeatureCache(stellar_home() / "features", enabled=config.use_cache)
        if not config.reuse:
            cache.enabled = False  # --no-reuse measures the recompute-everything cost
        counters = RunCounters()
        ext = _Extractor(faces, clip, cache, counters)
        protocol = _digest([models, run_info["config"]])
        jobs_here = [j for k, j in enumerate(expected) if k % n == i]
        matched = gs.report.matched

        # ---- reference side: each photo of each involved subject once (decoded, hashed, analysed)
        subjects = sorted({j.subject for j in jobs_here})
        ref_photos = [p for s in subjects for p in dataset.subject(s).photos]
        ref = _reference_phase(
            dataset, ref_photos, ext, wants_faces=wants_faces and config.reuse, wants_clip=clip is not None, batch_size=config.batch_size, progress=progress
        )
        if wants_faces and ref_photos:
            store.write_reference(_reference_rows(ref_photos, ref, ext, config.reuse))

        # ---- which jobs need work: their row key changed (or they have no row yet)
        done = store.done_keys()
        shas: dict[str, str | None] = {}
        todo: list[Job] = []
        for j in tqdm(jobs_here, desc="hashing images", unit="img", disable=not progress):
            im = matched.get(j.name)
            shas[j.name] = content_hash(im.path) if im is not None and im.path.is_file() else None
            if done.get(j.name) != _row_key(j, shas[j.name], ref.sha, dataset, protocol):
                todo.append(j)
        absent = [j for j in todo if shas[j.name] is None]
        present = [j for j in todo if shas[j.name] is not None]
        if absent:
            store.write_part([_missing_row(j, gs, _row_key(j, None, ref.sha, dataset, protocol)) for j in absent])

        # ---- text side: one embedding per unique filled prompt
        text_emb: dict[str, np.ndarray] = {}
        truncated = 0
        if clip is not None and present:
            texts = sorted({j.prompt.fill() for j in present})
            text_emb = dict(zip(texts, clip.encode_texts(texts)))
            truncated = clip.last_truncated

        # ---- generated side, streamed
        def reference_faces(photo) -> dict | None:
            if config.reuse:
                return ref.faces.get(photo.path)
            arr, _ = _decode(photo.path)  # --no-reuse: recompute per metric and image
            return ext.faces_of([arr], [ref.sha[photo.path] or ""], reference=True)[0] if arr is not None else None

        batches = [present[k : k + config.batch_size] for k in range(0, len(present), config.batch_size)]
        bar = tqdm(total=len(present), desc=f"evaluating {run_info['method']}", unit="img", disable=not progress)
        paths = [[matched[j.name].path for j in bt] for bt in batches]
        for b, (batch, decoded) in enumerate(zip(batches, _prefetch(paths, config.num_workers))):
            arrays = [d for d, _ in decoded]
            keys = [shas[j.name] if arr is not None else "" for j, arr in zip(batch, arrays)]
            counters.generated_images += len(batch)
            gen_faces = ext.faces_of(arrays, keys, reference=False) if wants_faces else [None] * len(batch)
            if wants_faces and not config.reuse:  # the per-metric recompute: the detector again for each metric
                for _ in range(sum(m in FACE_METRICS for m in metrics) - 1):
                    ext.faces_of(arrays, keys, reference=False)
            gen_clip = ext.clip_images(arrays, keys) if clip is not None else [None] * len(batch)
            rows = []
            for j, arr, (_, err), gf, gc in zip(batch, arrays, decoded, gen_faces, gen_clip):
                row = _base_row(j, matched[j.name].path, shas[j.name], _row_key(j, shas[j.name], ref.sha, dataset, protocol))
                rows.append(_score_builtin(row, j, arr is None, err, gf, gc, dataset, ref, reference_faces, text_emb, wants_faces))
            _run_scorers(scorers, batch, arrays, rows, ref, cache, covered)
            store.write_part(rows)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(b)
        bar.close()
        cache_stats = {"hits": cache.hits, "misses": cache.misses}
        store.write_json(f"parts/{shard_name}.counters.json", asdict(counters))

    if n > 1:
        marker = out / "parts" / f"{shard_name}.done"
        marker.write_text("done\n")
        finished = all((out / "parts" / f"shard-{k}-of-{n}.done").is_file() for k in range(n))
        if not finished:
            return None
    with RunLock(out, "finalize", wait=True):
        return finalize_run(out, dataset, expected=expected, counters=None, extra={"cache": cache_stats, "prompts_truncated": truncated})


def _expected_jobs(expected: Sequence[Job]) -> dict:
    """``run.json["jobs"]``: how many jobs the run stands for (coverage) and a digest of their names."""
    by_kind: dict[str, int] = {}
    by_cat: dict[str, int] = {}
    for j in expected:
        by_kind[j.kind] = by_kind.get(j.kind, 0) + 1
        for c in j.prompt.categories:
            by_cat[c] = by_cat.get(c, 0) + 1
    return {
        "expected": len(expected),
        "by_kind": by_kind,
        "by_category": by_cat,
        "digest": "sha256:" + hashlib.sha256("\n".join(j.name for j in expected).encode()).hexdigest(),
    }


def _reference_rows(photos, ref: _Reference, ext: _Extractor, reuse: bool) -> list[dict]:
    rows = []
    for p in photos:
        f = ref.faces.get(p.path)
        if not reuse and p.path not in ref.error:
            arr, _ = _decode(p.path)
            f = ext.faces_of([arr], [ref.sha[p.path] or ""], reference=True)[0]
        largest = None if f is None else _largest(f)
        rows.append(
            {
                "subject": p.subject,
                "photo": p.index,
                "image_sha256": ref.sha.get(p.path),
                "decode_error": ref.error.get(p.path, ""),
                "n_faces": None if f is None else len(f["embeddings"]),
                "face_embedding": None if largest is None else largest.astype(np.float32).tolist(),
            }
        )
    return rows


def _missing_row(job: Job, gs: GeneratedSet, key: str) -> dict:
    row = _base_row(job, None, None, key)
    dup = gs.report.duplicates.get(job.name)
    why = f"{len(dup)} files claim this job ({', '.join(p.name for p in dup)}): none is used" if dup else "no image for this job"
    row.update(status="missing", error=why)
    return row


def _score_builtin(row: dict, job: Job, failed: bool, err: str, gf, gc, dataset, ref: _Reference, reference_faces, text_emb, wants_faces) -> dict:
    """IPS/SIS raw values, face diagnostics and CLIP similarities of one generated image."""
    if failed:
        row.update(status="decode_error", error=err)
        return row
    if job.photo.path in ref.error:
        row.update(status=REFERENCE_FAILURE, error=f"reference photo {job.photo.path} cannot be decoded: {ref.error[job.photo.path]}")
    if wants_faces:
        if gf is not None and len(gf["scores"]):
            row["face_boxes"] = [[float(v) for v in box] + [float(s)] for box, s in zip(gf["boxes"], gf["scores"])]
        row.update(n_faces_generated=len(gf["embeddings"]), face_score=float(gf["scores"].max()) if len(gf["scores"]) else np.nan)
        largest = _largest(gf)
        row["face_embedding"] = None if largest is None else largest.astype(np.float32).tolist()
        if row["status"] != REFERENCE_FAILURE:
            photos = dataset.subject(job.subject).photos
            own = reference_faces(job.photo)
            others = [reference_faces(p) for p in photos]
            emb = lambda a: None if a is None else a["embeddings"]  # noqa: E731
            ips, status = idm.identity_preservation(emb(gf), emb(own))
            sis, sis_status = idm.stability_of_identity(emb(gf), [emb(o) for o in others], own=[p.index for p in photos].index(job.photo.index))
            if status == idm.OK and sis_status == idm.NO_FACE_REFERENCE_OTHER:
                status = sis_status
            row.update(ips_raw=ips, sis_raw=sis, status=status, n_faces_reference=len(own["embeddings"]))
    if gc is not None:
        text = text_emb[job.prompt.fill()]
        row["clip_t"] = float(np.dot(text, gc))
        ref_e = ref.clip.get(job.photo.path)
        if ref_e is not None:
            row["clip_n"] = float(np.dot(text, ref_e))
            row["clip_i"] = float(np.dot(ref_e, gc))
    return row


def _needs_reference(metric: str) -> bool:
    info = METRICS.get(metric)
    return info is not None and bool({"reference", "references"} & set(info.needs))


def _run_scorers(scorers, batch: Sequence[Job], arrays, rows: list[dict], ref: _Reference, cache: FeatureCache, covered) -> None:
    """Each plug-in scorer on the decoded images of the batch; a scorer that needs the input photo
    never sees a job whose photo cannot be decoded (its row is a ``reference_decode_error``)."""
    if not scorers:
        return
    live = [k for k, arr in enumerate(arrays) if arr is not None]
    for scorer in scorers:
        needs_ref = any(_needs_reference(m) for m in scorer.metrics)
        mine = [k for k in live if not (needs_ref and batch[k].photo.path in ref.error)]
        items = [
            ScoringItem(batch[k], arrays[k], rows[k]["image_sha256"], ref.sha.get(batch[k].photo.path) or "", batch[k].prompt.fill(), batch[k].prompt.triplets)
            for k in mine
        ]
        for k, values in zip(mine, scorer.score(items, cache) if items else []):
            rows[k].update(values)
    for row in rows:
        for m in covered:
            row.setdefault(m, np.nan)


# ----------------------------------------------------------------------------- finalisation
def _in_job_order(frame: pd.DataFrame, expected: Sequence[Job] | None, out: Path) -> pd.DataFrame:
    """Rows of the expected jobs in job order (O(N): one dict, one set)."""
    if expected is None:
        return frame.sort_values("name").reset_index(drop=True)
    order = {j.name: k for k, j in enumerate(expected)}
    have = set(frame["name"]) if len(frame) else set()
    missing = [name for name in order if name not in have]
    if missing:
        raise StellarError(f"{out}: {len(missing)} job(s) not evaluated yet (e.g. {missing[0]}); rerun the evaluation to resume")
    frame = frame[frame["name"].isin(order.keys())].copy()
    frame["_order"] = frame["name"].map(order)
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def _exclusion(frame: pd.DataFrame, run: dict) -> tuple[np.ndarray | None, dict]:
    """The exclusion rule over the evaluated rows: (followed per row or None, summary entry)."""
    valid = frame["clip_n"].notna() & frame["clip_t"].notna() & ~frame["status"].isin(IMAGE_FAILURES)
    if run["exclusion_rule"] != "applied":
        frame["followed_prompt"] = None
        return None, {"applied": False, "reason": run["exclusion_rule"].removeprefix("not applied: ")}
    if valid.sum() < 2:
        frame["followed_prompt"] = None
        return None, {"applied": False, "reason": f"σ needs CLIP values of at least 2 images, {int(valid.sum())} have them"}
    sigma = idm.exclusion_threshold(frame.loc[valid, "clip_n"].to_numpy())
    followed = np.ones(len(frame), dtype=bool)
    followed[valid.to_numpy()] = idm.followed_prompt(frame.loc[valid, "clip_t"].to_numpy(), frame.loc[valid, "clip_n"].to_numpy(), sigma)
    frame["followed_prompt"] = pd.Series(np.where(valid, followed, None), dtype=object)
    return followed, {"applied": True, "sigma": sigma, "margin": 2 * sigma, "excluded": int((valid & ~followed).sum())}


def _aps_columns(frame: pd.DataFrame, dataset: StellarDataset, reference: pd.DataFrame | None, followed, rule: str) -> dict:
    """APS probes fit on the input photos of the table's jobs; ``aps_label_A`` / ``aps_pred_A`` / ``aps_image``."""
    ref_by_photo = {}
    if reference is not None:
        for r in reference.itertuples():
            ref_by_photo[(r.subject, int(r.photo))] = None if r.face_embedding is None else np.asarray(r.face_embedding, np.float64)
    dim = next((len(e) for e in ref_by_photo.values() if e is not None), None)
    if dim is None:
        dim = next((len(e) for e in frame["face_embedding"] if e is not None), 1)
    n = len(frame)
    ref = np.full((n, dim), np.nan)
    gen = np.full((n, dim), np.nan)
    labels = np.zeros((n, len(APS_ATTRIBUTES)), dtype=np.int64)
    photo_cache: dict[tuple[str, int], list[int]] = {}
    failed = frame["status"].isin(IMAGE_FAILURES).to_numpy()
    for k, (s, p, e) in enumerate(zip(frame["subject"], frame["photo"], frame["face_embedding"])):
        key = (s, int(p))
        r = ref_by_photo.get(key)
        if r is not None:
            ref[k] = r
        if e is not None and not failed[k]:
            gen[k] = np.asarray(e, np.float64)
        if key not in photo_cache:
            photo = next(ph for ph in dataset.subject(s).photos if ph.index == key[1])
            photo_cache[key] = [photo.attributes.get(a, 0) for a in APS_ATTRIBUTES]
        labels[k] = photo_cache[key]
    ids = [f"{s}/{p}" for s, p in zip(frame["subject"], frame["photo"])]
    res = idm.attribute_preservation(ref, labels, gen, APS_ATTRIBUTES, photo_ids=ids, followed=followed)
    preds = res.predictions.copy()
    per_image = res.per_image.copy()
    if rule == "partial":  # failures are left out, not counted wrong
        preds[failed] = 0
        per_image[failed] = np.nan
    cols: dict[str, object] = {}
    for a, name in enumerate(APS_ATTRIBUTES):
        cols[f"{agg.APS_LABEL}{name}"] = labels[:, a].astype(np.int8)
        cols[f"{agg.APS_PRED}{name}"] = preds[:, a].astype(np.int8)
    cols["aps_image"] = per_image
    return cols


def _apply_failure_rule(frame: pd.DataFrame, metrics: Sequence[str], rule: str) -> None:
    """DESIGN §6.10 on the final metric columns (in place)."""
    status = frame["status"]
    kinds = frame["kind"].to_numpy()
    for m in metrics:
        if m not in frame or METRICS[m].level != "image":
            continue
        failed = status.isin(IMAGE_FAILURES) | ((status == REFERENCE_FAILURE) & _needs_reference(m))
        if not failed.any():
            continue
        values = frame[m].to_numpy(dtype=float).copy()
        idx = np.flatnonzero(failed.to_numpy())
        values[idx] = np.nan if rule == "partial" else [failure_value(m, kinds[k]) for k in idx]
        frame[m] = values


def finalize_run(
    out: str | Path,
    dataset: StellarDataset,
    *,
    expected: Sequence[Job] | None = None,
    counters: RunCounters | None = None,
    extra: dict | None = None,
) -> dict:
    """Merge the part files into ``per_image.parquet``; every dataset-level number into ``summary.json``."""
    out = Path(out)
    run = json.loads((out / "run.json").read_text())
    metrics = run["metrics"]
    rule = run.get("failure_rule", "worst")
    store = ResultsStore(out)
    frame = store.read_parts()
    reference_file = store.merge_reference()
    if not len(frame):
        raise StellarError(f"{out}: no evaluated images (nothing matched the jobs?)")
    frame = _in_job_order(frame, expected, out)
    for col in ("image", "image_sha256", "face_boxes"):  # an all-null part reads back as NaN: null is None
        if col in frame:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    if rule == "partial":
        frame = frame[frame["status"] != "missing"].reset_index(drop=True)
        if not len(frame):
            raise StellarError(f"{out}: no job has an image (nothing matched the jobs?)")
    followed, exclusion = _exclusion(frame, run)
    for m in ("ips", "sis"):
        if m in metrics:
            raw = frame[f"{m}_raw"].to_numpy(dtype=float)
            frame[m] = np.where(np.isnan(raw), np.nan, idm.apply_exclusion(np.nan_to_num(raw), followed))
    if "aps" in metrics:
        reference = pd.read_parquet(reference_file) if reference_file is not None else None
        for col, values in _aps_columns(frame, dataset, reference, followed, rule).items():
            frame[col] = values
    for m in CLIP_METRICS:
        if m not in metrics:
            frame = frame.drop(columns=[m])
    _apply_failure_rule(frame, metrics, rule)

    jobs = run.get("jobs") or {}
    partial = rule == "partial"
    tables = agg.summarize(
        frame,
        metrics,
        expected=jobs.get("expected"),
        expected_by_kind=jobs.get("by_kind"),
        expected_by_category=jobs.get("by_category"),
    )
    overall = tables["overall"]
    summary: dict = {
        "method": run["method"],
        "failure_rule": rule,
        "failure_rule_note": "mean over the jobs that have an image (--partial)" if partial else "failed jobs score each metric's worst value",
        "n_jobs": int(len(frame)),
        "status_counts": frame["status"].value_counts().to_dict(),
        "exclusion": exclusion,
        "means": overall["means"],
        "undefined": overall["undefined"],
        "counts": overall["counts"],
        "coverage": overall["coverage"],
        "failures": overall["counts"]["missing"] + overall["counts"]["undecodable"],
        "by_kind": {k: t["means"] for k, t in tables["by_kind"].items()},
        "by_category": {c: t["means"] for c, t in tables["by_category"].items()},
    }
    if "aps" in metrics:
        summary["aps"] = overall["aps"]
    summary["model_passes"] = _merged_counters(out, counters)
    summary["models"] = run["models"]
    summary.update(extra or {})
    atomic_write_parquet(out / "per_image.parquet", frame.drop(columns=["face_embedding"]))
    store.write_json("summary.json", summary)
    return summary


def _merged_counters(out: Path, counters: RunCounters | None) -> dict:
    """Model passes summed over every shard's counters (``parts/<shard>.counters.json``)."""
    total = asdict(counters) if counters is not None else asdict(RunCounters())
    if counters is None:
        for f in sorted((out / "parts").glob("*.counters.json")):
            try:
                for k, v in json.loads(f.read_text()).items():
                    total[k] = total.get(k, 0) + int(v)
            except (OSError, ValueError):
                continue
    if total.get("generated_images"):
        total["face_passes_per_generated_image"] = (total["face_passes_generated"] + total["face_passes_reference"]) / total["generated_images"]
    return total
