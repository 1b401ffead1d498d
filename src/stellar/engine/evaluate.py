"""``evaluate``: one evaluation run over a dataset and a generated set (DESIGN §7).

:func:`evaluate` is a short orchestrator; each phase is a function that can be run and tested alone:

1. **plan** (:func:`stellar.engine.plan.build_plan`): the scorers of the requested metrics — faces and
   CLIP are scorers like GOA/RFS/DINO — the models they share, the finalisers; printed at start.
2. **match** (:func:`match_phase`): the generated set against the jobs (problems reported up front;
   ``strict`` stops on them); every input validated before anything is written or deleted; the run
   directory's lock taken (one writer per run directory and shard).
3. **hash** (:func:`hash_phase`): every generated image's bytes hashed once per run (the digests serve
   the row keys, the feature-cache keys, the scorers' items and the generated-set fingerprint).
4. **reference** (:func:`reference_phase`): every photo of every involved subject decoded and hashed
   once, handed to each scorer's reference phase (faces, CLIP image embedding, ...), cached on disk by
   (content hash, model protocol). An undecodable photo is recorded (its jobs get
   ``reference_decode_error``), never a crash.
5. **text** (:func:`text_phase`): each unique filled prompt once to each scorer's text phase.
6. **generated** (:func:`generated_phase`): images decoded in worker threads ahead of the models,
   each scorer once per image, rows flushed as part files every ``flush_rows`` rows or
   ``flush_seconds`` (:class:`~stellar.engine.store.PartWriter`).
7. **finalise** (:func:`stellar.engine.finalize.finalize_run`): the dataset-level finalisers (pure
   functions of the table: exclusion rule, IPS/SIS after exclusion, APS probes, failure rule),
   ``per_image.parquet``, then every number of ``summary.json`` from
   :func:`stellar.metrics.aggregate.summarize`.

Failure rule (``EvalConfig.failure_rule``, DESIGN §6.10): ``"worst"`` (default) — every expected job has
a row; a job without an image (``missing``; also a job claimed by two files) or with an undecodable one
(``decode_error``) scores each metric's declared ``failure_value`` and the wrong APS prediction; a job
whose input photo cannot be decoded (``reference_decode_error``) scores the failure value for every
metric that needs the input photo (scorers with ``needs_reference`` never see it). ``"partial"`` keeps
the mean over what exists. ``run.json`` and every report say which rule a run used.

Resume: rows are keyed by everything they depend on (``row_key`` = sha256 of the generated image's
bytes, of every photo of the subject, the prompt, the APS labels and the model protocol); a rerun
evaluates exactly the jobs whose key changed. Finalisation sorts rows into job order, so the result
equals an uninterrupted run. Sharding (``shard=(i, n)``, automatic under ``torchrun``) gives shard i the
i-th of n contiguous blocks of subjects (balanced by job count), so each reference photo is analysed by
one shard only; each shard writes ``parts/shard-i-of-n``; whichever shard finishes last finalises, and
the summary sums the shards' model counters.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from stellar import __version__
from stellar.data.dataset import Job, StellarDataset
from stellar.data.generated import GeneratedSet
from stellar.data.layout import APS_ATTRIBUTES
from stellar.engine.builtin_scorers import CLIP_METRICS, FACE_METRICS
from stellar.engine.cache import FeatureCache, content_hash
from stellar.engine.finalize import REFERENCE_FAILURE, finalize_run
from stellar.engine.lock import RunLock
from stellar.engine.plan import Plan, build_plan
from stellar.engine.scorers import ReferencePhoto, Scorer, ScoringItem
from stellar.engine.store import RUN_FORMAT, PartWriter, ResultsStore
from stellar.errors import ImageDecodeError, StellarError
from stellar.images import load_image
from stellar.metrics import aggregate as agg

DEFAULT_METRICS = ("ips", "sis", "aps", "clip_t", "clip_i")
FAILURE_RULES = ("worst", "partial")
__all__ = ["EvalConfig", "evaluate", "finalize_run", "CLIP_METRICS", "FACE_METRICS", "DEFAULT_METRICS"]


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
    flush_rows: int = 1000  # a part file every this many rows ...
    flush_seconds: float = 30.0  # ... or this many seconds
    #: the face encoder the method was conditioned on (``--generator-encoder``; else the sidecars' ``face_encoder``)
    generator_encoder: str | None = None

    def comparable(self) -> dict:
        """The part of the config that must match for a resume (the failure rule only changes finalisation)."""
        d = asdict(self)
        for k in ("batch_size", "num_workers", "shard", "method", "use_cache", "failure_rule", "flush_rows", "flush_seconds", "generator_encoder"):
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


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- run state
@dataclass
class Run:
    """What the phases share: inputs, the plan, the store, and what earlier phases found."""

    dataset: StellarDataset
    gs: GeneratedSet
    config: EvalConfig
    plan: Plan
    out: Path
    store: ResultsStore
    cache: FeatureCache
    jobs: list[Job]  # this shard's jobs
    expected: list[Job]  # every expected job of the run
    protocol: str = ""
    shas: dict[str, str | None] = field(default_factory=dict)  # job name -> generated image sha256
    ref_sha: dict[Path, str | None] = field(default_factory=dict)
    ref_error: dict[Path, str] = field(default_factory=dict)
    counters: RunCounters = field(default_factory=RunCounters)
    progress: bool = True

    @property
    def shard_name(self) -> str:
        i, n = self.config.shard
        return "all" if n == 1 else f"shard-{i}-of-{n}"

    def row_key(self, job: Job) -> str:
        """What a row depends on: the generated bytes, every photo of the subject, the prompt, labels, protocol."""
        p = job.prompt
        photos = [self.ref_sha.get(ph.path) for ph in self.dataset.subject(job.subject).photos]
        prompt = [p.template, p.fill(), list(p.detectables), list(p.categories), None if p.triplets is None else [list(t) for t in p.triplets], p.kind]
        labels = [job.photo.attributes.get(a, 0) for a in APS_ATTRIBUTES]
        return _digest([self.shas.get(job.name), job.photo.index, photos, prompt, labels, self.protocol])


def shard_jobs(expected: Sequence[Job], i: int, n: int) -> list[Job]:
    """Shard i of n: the i-th of n contiguous blocks of subjects, balanced by their job counts."""
    if n == 1:
        return list(expected)
    counts: dict[str, int] = {}
    for j in expected:
        counts[j.subject] = counts.get(j.subject, 0) + 1
    total, before, block = len(expected), 0, {}
    for s, c in counts.items():  # subjects in job order
        block[s] = min(n - 1, (before * n) // max(1, total))
        before += c
    return [j for j in expected if block[j.subject] == i]


def _base_row(job: Job, path: Path | None, sha: str | None, key: str) -> dict:
    row = {
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
    for a in APS_ATTRIBUTES:  # the input photo's labels: APS inputs, known even without an image
        row[f"{agg.APS_LABEL}{a}"] = int(job.photo.attributes.get(a, 0))
    return row


def _expected_jobs(expected: Sequence[Job]) -> dict:
    """``run.json["jobs"]``: how many jobs the run stands for (coverage) and a digest of their names."""
    by_kind: dict[str, int] = {}
    by_cat: dict[str, int] = {}
    for j in expected:
        by_kind[j.kind] = by_kind.get(j.kind, 0) + 1
        for c in j.prompt.categories:
            by_cat[c] = by_cat.get(c, 0) + 1
    digest = "sha256:" + hashlib.sha256("\n".join(j.name for j in expected).encode()).hexdigest()
    return {"expected": len(expected), "by_kind": by_kind, "by_category": by_cat, "digest": digest}


# ----------------------------------------------------------------------------- phases
def match_phase(dataset: StellarDataset, generated, config: EvalConfig) -> GeneratedSet:
    """The generated set matched to the jobs; ``--strict`` refuses any problem."""
    gs = generated if isinstance(generated, GeneratedSet) else GeneratedSet(generated, dataset, split=config.split, kinds=config.kinds, seeds=config.seeds)
    problems = gs.problems(allow_missing=True)
    if config.strict and (any(p.severity == "error" for p in problems) or gs.report.missing):
        listed = "\n".join(str(p) for p in problems[:20])
        raise StellarError(f"the generated set does not match the jobs (--strict):\n{listed}")
    return gs


def hash_phase(run: Run) -> None:
    """The sha256 of each of this shard's generated images, read once (``run.shas``)."""
    from tqdm.auto import tqdm

    matched = run.gs.report.matched
    for j in tqdm(run.jobs, desc="hashing images", unit="img", disable=not run.progress):
        im = matched.get(j.name)
        try:
            run.shas[j.name] = content_hash(im.path) if im is not None else None
        except OSError:
            run.shas[j.name] = None


def generated_fingerprint(run: Run) -> str:
    """The generated set's fingerprint from the digests already taken (same value as ``GeneratedSet.fingerprint``)."""
    from stellar.data.layout import sha256_file

    if run.config.shard[1] > 1:  # a shard hashed only its own images
        return run.gs.fingerprint()
    lines = []
    for im in run.gs.report.matched.values():
        sha = run.shas.get(im.job.name)
        lines.append((im.path.relative_to(run.gs.folder).as_posix(), sha if sha is not None else sha256_file(im.path)))
        if im.sidecar is not None:
            lines.append((im.sidecar.relative_to(run.gs.folder).as_posix(), sha256_file(im.sidecar)))
    h = hashlib.sha256()
    for rel, sha in sorted(lines):
        h.update(f"{rel}\t{sha}\n".encode())
    return "sha256:" + h.hexdigest()


def reference_phase(run: Run) -> list[dict]:
    """Every photo of this shard's subjects decoded and hashed once, through each scorer's reference phase.

    Returns the rows of ``reference.parquet`` (subject, photo, image_sha256, decode_error + scorer columns).
    """
    from tqdm.auto import tqdm

    subjects = list(dict.fromkeys(j.subject for j in run.jobs))
    photos = [p for s in subjects for p in run.dataset.subject(s).photos]
    rows: list[dict] = []
    size = max(1, run.config.batch_size)
    for start in tqdm(range(0, len(photos), size), desc="reference photos", unit="batch", disable=not run.progress):
        batch = []
        for p in photos[start : start + size]:
            arr, err = _decode(p.path)
            try:
                sha = content_hash(p.path)
            except OSError as exc:
                sha, arr, err = None, None, str(exc)
            run.ref_sha[p.path] = sha
            if arr is None:
                run.ref_error[p.path] = err or "cannot be read"
            batch.append(ReferencePhoto(p, sha, arr, run.ref_error.get(p.path, "")))
        batch_rows = [{"subject": r.photo.subject, "photo": r.photo.index, "image_sha256": r.sha256, "decode_error": r.error} for r in batch]
        for scorer in run.plan.scorers:
            for row, values in zip(batch_rows, scorer.reference(batch, run.cache) or []):
                row.update(values)
        rows += batch_rows
    return rows


def jobs_to_evaluate(run: Run) -> list[Job]:
    """This shard's jobs whose row is absent or keyed differently (changed image, photo, prompt, ...)."""
    done = run.store.done_keys()
    return [j for j in run.jobs if done.get(j.name) != run.row_key(j)]


def text_phase(run: Run, jobs: Sequence[Job]) -> None:
    """Each unique filled prompt of ``jobs`` once to each scorer's text phase."""
    texts = sorted({j.prompt.fill() for j in jobs if run.shas.get(j.name) is not None})
    if texts:
        for scorer in run.plan.scorers:
            scorer.text(texts, run.cache)


def _missing_row(run: Run, job: Job) -> dict:
    row = _base_row(job, None, None, run.row_key(job))
    dup = run.gs.report.duplicates.get(job.name)
    why = f"{len(dup)} files claim this job ({', '.join(p.name for p in dup)}): none is used" if dup else "no image for this job"
    row.update(status="missing", error=why)
    return row


def score_batch(run: Run, batch: Sequence[Job], decoded: Sequence[tuple[np.ndarray | None, str]]) -> list[dict]:
    """The rows of one batch of generated images: failure statuses first, then every scorer."""
    matched = run.gs.report.matched
    rows = []
    for j, (arr, err) in zip(batch, decoded):
        row = _base_row(j, matched[j.name].path, run.shas[j.name], run.row_key(j))
        if arr is None:
            row.update(status="decode_error", error=err)
        elif j.photo.path in run.ref_error:
            row.update(status=REFERENCE_FAILURE, error=f"reference photo {j.photo.path} cannot be decoded: {run.ref_error[j.photo.path]}")
        rows.append(row)
    live = [k for k, (arr, _) in enumerate(decoded) if arr is not None]
    for scorer in run.plan.scorers:
        mine = [k for k in live if not (scorer.needs_reference and rows[k]["status"] == REFERENCE_FAILURE)]
        items = [
            ScoringItem(batch[k], decoded[k][0], rows[k]["image_sha256"], run.ref_sha.get(batch[k].photo.path) or "", batch[k].prompt.fill(), batch[k].prompt.triplets)
            for k in mine
        ]
        for k, values in zip(mine, scorer.score(items, run.cache)):
            rows[k].update(values)
    for row in rows:
        for s in run.plan.plugins:
            for m in s.metrics:
                row.setdefault(m, np.nan)
    return rows


def generated_phase(run: Run, jobs: Sequence[Job], on_batch: Callable[[int], None] | None = None) -> None:
    """Rows of ``jobs``: missing ones at once, the others decoded ahead in threads and scored in batches."""
    from tqdm.auto import tqdm

    writer = PartWriter(run.store, run.config.flush_rows, run.config.flush_seconds)
    absent = [j for j in jobs if run.shas.get(j.name) is None]
    present = [j for j in jobs if run.shas.get(j.name) is not None]
    if absent:
        writer.add([_missing_row(run, j) for j in absent])
    size = max(1, run.config.batch_size)
    batches = [present[k : k + size] for k in range(0, len(present), size)]
    paths = [[run.gs.report.matched[j.name].path for j in bt] for bt in batches]
    bar = tqdm(total=len(present), desc=f"evaluating {run.config.method or run.gs.folder.name}", unit="img", disable=not run.progress)
    for b, (batch, decoded) in enumerate(zip(batches, _prefetch(paths, run.config.num_workers))):
        run.counters.generated_images += len(batch)
        writer.add(score_batch(run, batch, decoded))
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(b)
    bar.close()
    writer.flush()


def _collect_counters(run: Run) -> dict:
    total = asdict(run.counters)
    for s in run.plan.scorers:
        for k, v in s.counters().items():
            total[k] = total.get(k, 0) + int(v)
    return total


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
    show_plan: bool = False,
) -> dict | None:
    """Run (or resume) an evaluation; returns the summary, or ``None`` when other shards are unfinished.

    Args:
        dataset: the benchmark dataset.
        generated: a generated-set folder or :class:`GeneratedSet`.
        out: the run directory.
        config: :class:`EvalConfig`.
        faces: a face analyzer (``.protocol``, ``.analyze(images) -> list[list[Face]]``), needed by IPS/SIS/APS.
        clip: a :class:`~stellar.models.clip.ClipEncoder` or ``None``. Without it CLIP-T/CLIP-I are
            skipped and the exclusion rule is reported as *not applied* (``clip_unavailable`` says why).
        cache: the feature cache (default ``$STELLAR_HOME/features``).
        scorers: the plug-in scorers of the other metrics (GOA, RFS, DINO, ...), any object of the
            :mod:`stellar.engine.scorers` protocol; default: built from ``SCORERS`` with ``scorer_options``.
        force: discard the previous results of ``out`` — only after everything else was validated, and
            only files this project wrote (a folder that is not a run directory is refused).
        wait: when another process writes ``out`` (same shard), wait for it instead of refusing.
        on_batch: called with the batch index after each batch is scored (tests inject crashes here).
        show_plan: print the plan (stderr) before running.
    """
    from stellar.models.registry import non_reference_weights, stellar_home

    if config.failure_rule not in FAILURE_RULES:
        raise StellarError(f"failure rule {config.failure_rule!r}: use one of {', '.join(FAILURE_RULES)}")
    plan = build_plan(
        config.metrics, faces=faces, clip=clip, clip_unavailable=clip_unavailable, scorers=scorers, scorer_options=scorer_options,
        batch_size=config.batch_size, reuse=config.reuse, failure_rule=config.failure_rule,
    )  # fmt: skip
    if show_plan:
        print(plan.describe(), file=sys.stderr)
    out = Path(out)
    gs = match_phase(dataset, generated, config)
    expected = list(gs.expected.values())
    cache = cache or FeatureCache(stellar_home() / "features", enabled=config.use_cache)
    if not config.reuse:
        cache.enabled = False  # --no-reuse measures the recompute-everything cost
    i, n = config.shard
    run = Run(dataset, gs, config, plan, out, ResultsStore(out, "all" if n == 1 else f"shard-{i}-of-{n}"), cache, shard_jobs(expected, i, n), expected, progress=progress)
    from stellar.engine.plan import face_presets, single_faces
    from stellar.metrics.base import split_variant

    presets = face_presets(faces)
    wants_faces = any(split_variant(m)[0] in FACE_METRICS for m in plan.metrics)
    face_protocols = {p: a.protocol for p, a in presets.items()} if presets is not None else getattr(single_faces(faces), "protocol", None)
    models = {
        "faces": face_protocols if wants_faces else None,
        "clip": getattr(clip, "protocol", None) or getattr(clip, "name", None),
        "scorers": {s.name: s.protocol for s in plan.plugins},
        **({"non_reference_weights": nonref} if (nonref := non_reference_weights()) else {}),  # --weights FILE not the card's file
    }
    run.protocol = _digest([models, config.comparable()])
    hash_phase(run)
    run_info = {
        "format": RUN_FORMAT,
        "method": config.method or gs.folder.name,
        "config": config.comparable(),
        "failure_rule": config.failure_rule,
        "metrics": plan.metrics,
        "skipped_metrics": plan.skipped,
        "models": models,
        "exclusion_rule": "applied" if clip is not None else f"not applied: {clip_unavailable or 'no CLIP model'}",
        "dataset": {"root": str(dataset.root), "fingerprint": dataset.fingerprint()},
        "generated": {"folder": str(gs.folder), "fingerprint": generated_fingerprint(run), "match": gs.summary()},
        "jobs": _expected_jobs(expected),
        "match_problems": [p.to_dict() for p in gs.problems(allow_missing=True)],
        "versions": _versions(),
    }
    if wants_faces:  # issue 12: scored with the encoder the method was conditioned on?
        from stellar.engine.bias import encoder_bias_warnings

        warnings = encoder_bias_warnings(presets or {getattr(single_faces(faces), "preset", None) or "": single_faces(faces)}, gs, config.generator_encoder)
        if warnings:
            run_info["warnings"] = warnings
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
    _prepare_run_dir(out, run_info, force=force, shard_name=run.shard_name, n_shards=n)
    with RunLock(out, run.shard_name, wait=wait):
        run.store.write_json("run.json", run_info)
        reference_rows = reference_phase(run)
        if reference_rows:
            run.store.write_reference(reference_rows)
        todo = jobs_to_evaluate(run)
        text_phase(run, todo)
        generated_phase(run, todo, on_batch)
        run.store.write_json(f"parts/{run.shard_name}.counters.json", _collect_counters(run))
    extra = {"cache": {"hits": cache.hits, "misses": cache.misses}, "prompts_truncated": sum(getattr(getattr(s, "inner", s), "truncated", 0) for s in plan.scorers)}
    if n > 1:
        (out / "parts" / f"{run.shard_name}.done").write_text("done\n")
        if not all((out / "parts" / f"shard-{k}-of-{n}.done").is_file() for k in range(n)):
            return None
    with RunLock(out, "finalize", wait=True):
        return finalize_run(out, dataset, expected=expected, extra=extra)


# ----------------------------------------------------------------------------- run directory
def _prepare_run_dir(out: Path, run_info: dict, *, force: bool, shard_name: str, n_shards: int) -> None:
    """Check ``out`` may hold this run; with ``force`` delete only what the project wrote there.

    Called after every input has been validated, so a typo never costs the previous results.
    """
    store = ResultsStore(out, shard_name)
    if out.exists() and not out.is_dir():
        raise StellarError(f"--out {out} is a file, not a folder.\n  fix: choose a folder path for the run directory")
    foreign = store.foreign_content()
    if foreign:
        raise StellarError(
            f"{out} is not a Stellar-Bench run directory ({', '.join(foreign)} present without a run.json of format {RUN_FORMAT}); "
            "refusing to write or delete anything there.\n  fix: choose another --out (an empty or new folder)"
        )
    if force:
        store.clear(everything=n_shards == 1)
        return
    old = store.read_run_json()
    if old is not None:
        same = old.get("config") == run_info["config"] and old.get("models") == run_info["models"] and old.get("metrics") == run_info["metrics"]
        if not same:
            raise StellarError(
                f"{out} holds results of another configuration (metrics, models or split differ).\n"
                "  fix: pass --force to recompute, or choose another --out"
            )

