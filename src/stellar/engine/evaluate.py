"""``evaluate``: one evaluation run over a dataset and a generated set (DESIGN §7).

1. Match the generated set to the jobs (problems reported up front; ``strict`` stops on them).
2. Plan: the features the requested metrics need (faces, CLIP image/text) and which models.
3. Reference side first: every photo of every involved subject goes through each model once,
   cached on disk by (content hash, model protocol); prompt texts are embedded once per unique text.
4. Generated side streamed in batches: images decoded in worker threads ahead of the models,
   each model runs once per image; per-image raw values are written as a part file per batch.
5. Finalise: the exclusion rule (σ over the whole evaluated set), IPS/SIS after exclusion, APS
   probes, per-image diagnostics, ``per_image.parquet`` + ``summary.json``.

Resume: finished batches are part files; a rerun with the same configuration skips their jobs (unless
the image file changed since: its content hash is stored per row, and a replaced image is evaluated
again), and finalisation sorts rows into job order, so the result equals an uninterrupted run. Sharding
(``shard=(i, n)``) evaluates jobs ``i, i+n, …`` into ``parts/shard-i-of-n``; whichever shard finishes
with every job covered finalises (or run ``finalize_run`` / ``stellar evaluate --merge``).

Failures are per image: an undecodable generated image gets status ``decode_error`` with the error
text and NaN metrics (counted in the summary), never a crash of the run and never a silent 0.
"""

from __future__ import annotations

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
from stellar.engine.scorers import SCORERS, Scorer, ScoringItem, build_scorers
from stellar.engine.store import ResultsStore
from stellar.errors import ImageDecodeError, StellarError
from stellar.images import load_image
from stellar.metrics import identity as idm
from stellar.metrics.base import METRICS

FACE_METRICS = ("ips", "sis", "aps")
CLIP_METRICS = ("clip_t", "clip_i")
DEFAULT_METRICS = ("ips", "sis", "aps", "clip_t", "clip_i")


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
    reuse: bool = True  # False: recompute reference faces for every metric and image (the official way)
    use_cache: bool = True
    shard: tuple[int, int] = (0, 1)
    method: str | None = None

    def comparable(self) -> dict:
        """The part of the config that must match for a resume."""
        d = asdict(self)
        for k in ("batch_size", "num_workers", "shard", "method", "use_cache"):
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
        out, n = self._through_cache(self.clip.name, images, keys, lambda ims: [{"image": e} for e in self.clip.encode_images(ims)])
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
    out = {"stellar-bench": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "transformers", "sklearn", "dlib", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional packages
            pass
    return out


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
        on_batch: called with the batch index after each part is written (tests inject crashes here).
    """
    from tqdm.auto import tqdm

    from stellar.models.registry import non_reference_weights, stellar_home

    unknown = [m for m in config.metrics if m not in METRICS]
    if unknown:
        raise StellarError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)} (stellar metrics list)")
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
    run_json = out / "run.json"
    models = {
        "faces": getattr(faces, "protocol", None) if wants_faces else None,
        "clip": getattr(clip, "name", None),
        "scorers": {s.name: s.protocol for s in scorers},
        **({"non_reference_weights": nonref} if (nonref := non_reference_weights()) else {}),  # --weights FILE not the card's file
    }
    run_info = {
        "format": "stellar-run-v1",
        "method": config.method or gs.folder.name,
        "config": config.comparable(),
        "metrics": metrics,
        "skipped_metrics": skipped_metrics,
        "models": models,
        "exclusion_rule": "applied" if clip is not None else f"not applied: {clip_unavailable or 'no CLIP model'}",
        "dataset": {"root": str(dataset.root), "fingerprint": dataset.fingerprint()},
        "generated": {"folder": str(gs.folder), "fingerprint": gs.fingerprint(), "match": gs.summary()},
        "match_problems": [p.to_dict() for p in match_problems],
        "versions": _versions(),
    }
    if run_json.is_file():
        old = json.loads(run_json.read_text())
        same = old.get("config") == run_info["config"] and old.get("models") == models and old.get("metrics") == metrics
        if not same:
            raise StellarError(
                f"{out} holds results of another configuration (metrics, models or split differ).\n"
                "  fix: pass --force to recompute, or choose another --out"
            )
    store.write_json("run.json", run_info)

    cache = cache or FeatureCache(stellar_home() / "features", enabled=config.use_cache)
    if not config.reuse:
        cache.enabled = False  # --no-reuse measures the official recompute-everything cost
    counters = RunCounters()
    ext = _Extractor(faces, clip, cache, counters)
    images = list(gs)
    jobs_here = [im for k, im in enumerate(images) if k % n == i]
    # resume: skip jobs already evaluated on the same bytes; an image replaced since is evaluated again
    done = store.done_jobs()
    todo = [im for im in jobs_here if im.job.name not in done or done[im.job.name] != content_hash(im.path)]

    def reference_faces_once(photo) -> dict | None:
        arr, _ = _decode(photo.path)
        return ext.faces_of([arr], [ref_keys[photo.path]], reference=True)[0] if arr is not None else None

    def reference_faces(photo) -> dict | None:
        if config.reuse:
            return ref_faces.get(photo.path)
        # --no-reuse: recompute, as the official implementation does per metric and image
        return reference_faces_once(photo)

    # ---- reference side: each photo of each involved subject once
    subjects = sorted({im.job.subject for im in jobs_here})  # all, so a resumed shard's table stays complete
    ref_photos = [p for s in subjects for p in dataset.subject(s).photos]
    ref_keys = {p.path: content_hash(p.path) for p in ref_photos}
    ref_faces: dict[Path, dict | None] = {}
    ref_clip: dict[Path, np.ndarray | None] = {}
    if ref_photos and (wants_faces or clip is not None):
        for start in tqdm(range(0, len(ref_photos), config.batch_size), desc="reference photos", unit="batch", disable=not progress):
            chunk = ref_photos[start : start + config.batch_size]
            decoded = [_decode(p.path) for p in chunk]
            arrays = [d for d, _ in decoded]
            keys = [ref_keys[p.path] for p in chunk]
            if wants_faces and config.reuse:
                for p, f in zip(chunk, ext.faces_of(arrays, keys, reference=True)):
                    ref_faces[p.path] = f
            if clip is not None:
                for p, e in zip(chunk, ext.clip_images(arrays, keys)):
                    ref_clip[p.path] = e

    if wants_faces and ref_photos:
        ref_rows = []
        for p in ref_photos:
            f = ref_faces.get(p.path) if config.reuse else reference_faces_once(p)
            largest = None if f is None else _largest(f)
            ref_rows.append(
                {
                    "subject": p.subject,
                    "photo": p.index,
                    "image_sha256": ref_keys[p.path],
                    "n_faces": None if f is None else len(f["embeddings"]),
                    "face_embedding": None if largest is None else largest.astype(np.float32).tolist(),
                }
            )
        store.write_reference(ref_rows)

    # ---- text side: one embedding per unique filled prompt
    text_emb: dict[str, np.ndarray] = {}
    truncated = 0
    if clip is not None and todo:
        texts = sorted({im.job.prompt.fill() for im in todo})
        emb = clip.encode_texts(texts)
        truncated = clip.last_truncated
        text_emb = dict(zip(texts, emb))

    # ---- generated side, streamed
    batches = [todo[k : k + config.batch_size] for k in range(0, len(todo), config.batch_size)]
    bar = tqdm(total=len(todo), desc=f"evaluating {run_info['method']}", unit="img", disable=not progress)
    for b, (batch, decoded) in enumerate(zip(batches, _prefetch([[im.path for im in bt] for bt in batches], config.num_workers))):
        arrays = [d for d, _ in decoded]
        keys = [content_hash(im.path) if arr is not None else "" for im, arr in zip(batch, arrays)]
        counters.generated_images += len(batch)
        gen_faces = ext.faces_of(arrays, keys, reference=False) if wants_faces else [None] * len(batch)
        if wants_faces and not config.reuse:  # the official code runs the detector again for each metric
            for _ in range(sum(m in FACE_METRICS for m in metrics) - 1):
                ext.faces_of(arrays, keys, reference=False)
        gen_clip = ext.clip_images(arrays, keys) if clip is not None else [None] * len(batch)
        rows = []
        for im, arr, (_, err), key, gf, gc in zip(batch, arrays, decoded, keys, gen_faces, gen_clip):
            rows.append(_row(im.job, im.path, dataset, arr is None, err, key, gf, gc, reference_faces, ref_clip, text_emb, wants_faces))
        if scorers:
            live = [k for k, arr in enumerate(arrays) if arr is not None]
            items = [
                ScoringItem(batch[k].job, arrays[k], keys[k], content_hash(batch[k].job.photo.path), batch[k].job.prompt.fill(), batch[k].job.prompt.triplets)
                for k in live
            ]
            for scorer in scorers:
                for k, values in zip(live, scorer.score(items, cache)):
                    rows[k].update(values)
            for k in range(len(rows)):
                for m in covered:
                    rows[k].setdefault(m, np.nan)
        store.write_part(rows)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(b)
    bar.close()
    cache_stats = {"hits": cache.hits, "misses": cache.misses}

    if n > 1:
        marker = out / "parts" / f"{shard_name}.done"
        marker.write_text("done\n")
        finished = all((out / "parts" / f"shard-{k}-of-{n}.done").is_file() for k in range(n))
        if not finished:
            return None
    return finalize_run(
        out,
        dataset,
        expected=[im.job for im in images],
        counters=counters,
        extra={"cache": cache_stats, "prompts_truncated": truncated},
    )


def _row(job: Job, path: Path, dataset, failed: bool, err: str, key: str, gf, gc, reference_faces, ref_clip, text_emb, wants_faces) -> dict:
    row = {
        "name": job.name,
        "subject": job.subject,
        "photo": job.photo.index,
        "prompt_index": job.prompt.index,
        "kind": job.kind,
        "seed": job.seed,
        "split": job.split,
        "categories": list(job.prompt.categories),
        "image": str(path),
        "image_sha256": key,
        "status": "ok",
        "error": "",
        "ips_raw": np.nan,
        "sis_raw": np.nan,
        "n_faces_generated": np.nan,
        "n_faces_reference": np.nan,
        "face_score": np.nan,
        "face_embedding": None,
        "clip_t": np.nan,
        "clip_n": np.nan,
        "clip_i": np.nan,
    }
    if failed:
        row.update(status="decode_error", error=err)
        return row
    if wants_faces:
        ref = reference_faces(job.photo)
        others = [reference_faces(p) for p in dataset.subject(job.subject).photos]
        emb = lambda a: None if a is None else a["embeddings"]  # noqa: E731
        if ref is None:
            row.update(status="decode_error", error=f"reference photo {job.photo.path} cannot be decoded")
            return row
        ips, status = idm.identity_preservation(emb(gf), emb(ref))
        sis, _ = idm.stability_of_identity(emb(gf), [emb(o) if o is not None else None for o in others])
        largest = _largest(gf)
        row.update(
            ips_raw=ips,
            sis_raw=sis,
            status=status,
            n_faces_generated=len(gf["embeddings"]),
            n_faces_reference=len(ref["embeddings"]),
            face_score=float(gf["scores"].max()) if len(gf["scores"]) else np.nan,
            face_embedding=None if largest is None else largest.astype(np.float32).tolist(),
        )
    if gc is not None:
        text = text_emb[job.prompt.fill()]
        ref_e = ref_clip.get(job.photo.path)
        row["clip_t"] = float(np.dot(text, gc))
        if ref_e is not None:
            row["clip_n"] = float(np.dot(text, ref_e))
            row["clip_i"] = float(np.dot(ref_e, gc))
    return row


def _mean(values: pd.Series) -> float | None:
    v = values.astype(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def finalize_run(
    out: str | Path,
    dataset: StellarDataset,
    *,
    expected: Sequence[Job] | None = None,
    counters: RunCounters | None = None,
    extra: dict | None = None,
) -> dict:
    """Merge the part files into ``per_image.parquet`` and compute dataset-level values."""
    out = Path(out)
    run = json.loads((out / "run.json").read_text())
    metrics = run["metrics"]
    store = ResultsStore(out)
    frame = store.read_parts()
    reference_file = store.merge_reference()
    if not len(frame):
        raise StellarError(f"{out}: no evaluated images (nothing matched the jobs?)")
    order = {j.name: k for k, j in enumerate(expected)} if expected is not None else None
    if order is not None:
        missing = [n for n in order if n not in set(frame["name"])]
        if missing:
            raise StellarError(f"{out}: {len(missing)} job(s) not evaluated yet (e.g. {missing[0]}); rerun the evaluation to resume")
        frame = frame[frame["name"].isin(order)].copy()
        frame["_order"] = frame["name"].map(order)
        frame = frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    else:
        frame = frame.sort_values("name").reset_index(drop=True)

    ok = frame["status"] != "decode_error"
    summary: dict = {"method": run["method"], "n_jobs": int(len(frame)), "status_counts": frame["status"].value_counts().to_dict()}
    # exclusion rule
    clip_ok = run["exclusion_rule"] == "applied" and frame.loc[ok, "clip_n"].notna().sum() >= 2
    if clip_ok:
        valid = ok & frame["clip_n"].notna() & frame["clip_t"].notna()
        sigma = idm.exclusion_threshold(frame.loc[valid, "clip_n"].to_numpy())
        followed = np.zeros(len(frame), dtype=bool)
        followed[valid.to_numpy()] = idm.followed_prompt(frame.loc[valid, "clip_t"].to_numpy(), frame.loc[valid, "clip_n"].to_numpy(), sigma)
        frame["followed_prompt"] = np.where(valid, followed, None)
        summary["exclusion"] = {"applied": True, "sigma": sigma, "margin": 2 * sigma, "excluded": int((valid & ~followed).sum())}
    else:
        followed = None
        frame["followed_prompt"] = None
        summary["exclusion"] = {"applied": False, "reason": run["exclusion_rule"].removeprefix("not applied: ")}
    for m in ("ips", "sis"):
        if m in metrics:
            raw = frame[f"{m}_raw"].to_numpy(dtype=float)
            frame[m] = np.where(np.isnan(raw), np.nan, idm.apply_exclusion(np.nan_to_num(raw), followed))
    if "aps" in metrics:
        if reference_file is not None:
            frame.attrs["reference_file"] = str(reference_file)
        aps = _aps(frame, dataset, followed)
        summary["aps"] = aps
        frame["aps_image"] = aps.pop("_per_image")
    for m in ("clip_t", "clip_i"):
        if m not in metrics:
            frame = frame.drop(columns=[m])
    image_metrics = [m for m in metrics if METRICS[m].level == "image" and m in frame]
    summary["means"] = {m: _mean(frame.loc[ok, m]) for m in image_metrics}
    if "aps" in metrics:
        summary["means"]["aps"] = summary["aps"]["score"]
    summary["undefined"] = {m: int(frame.loc[ok, m].isna().sum()) for m in image_metrics if frame.loc[ok, m].isna().any()}
    summary["by_kind"] = {
        k: {m: _mean(frame.loc[ok & (frame["kind"] == k), m]) for m in image_metrics}
        for k in sorted(frame["kind"].unique())
    }
    if "aps" in metrics:
        for k in summary["by_kind"]:
            sel = (frame["kind"] == k).to_numpy()
            sub = frame[sel].copy()
            sub.attrs = frame.attrs
            summary["by_kind"][k]["aps"] = _aps(sub, dataset, None if followed is None else followed[sel])["score"]
    summary["failures"] = int((~ok).sum())
    if counters is not None:
        summary["model_passes"] = asdict(counters)
        if counters.generated_images:
            summary["model_passes"]["face_passes_per_generated_image"] = (
                counters.face_passes_generated + counters.face_passes_reference
            ) / counters.generated_images
    summary["models"] = run["models"]
    summary.update(extra or {})
    final = frame.drop(columns=["face_embedding"])
    from stellar.engine.store import atomic_write_parquet

    atomic_write_parquet(out / "per_image.parquet", final)
    store.write_json("summary.json", summary)
    return summary


def _aps(frame: pd.DataFrame, dataset: StellarDataset, followed: np.ndarray | None) -> dict:
    """APS from the rows' generated-face embeddings and the run's reference table (one row per photo)."""
    ref_table = pd.read_parquet(frame.attrs["reference_file"]) if "reference_file" in frame.attrs else None
    ref_by_photo = {}
    if ref_table is not None:
        for r in ref_table.itertuples():
            ref_by_photo[(r.subject, int(r.photo))] = None if r.face_embedding is None else np.asarray(r.face_embedding, np.float64)
    dim = next((len(e) for e in ref_by_photo.values() if e is not None), None)
    if dim is None:
        dim = next((len(e) for e in frame["face_embedding"] if e is not None), 1)
    n = len(frame)
    ref = np.full((n, dim), np.nan)
    gen = np.full((n, dim), np.nan)
    labels = np.zeros((n, len(APS_ATTRIBUTES)), dtype=np.int64)
    for k, row in enumerate(frame.itertuples()):
        e = ref_by_photo.get((row.subject, int(row.photo)))
        if e is not None:
            ref[k] = e
        if row.face_embedding is not None and row.status != "decode_error":
            gen[k] = np.asarray(row.face_embedding, np.float64)
        attrs = dataset.subject(row.subject).photos
        photo = next(p for p in attrs if p.index == int(row.photo))
        labels[k] = [photo.attributes.get(a, 0) for a in APS_ATTRIBUTES]
    ids = [f"{s}/{p}" for s, p in zip(frame["subject"], frame["photo"])]
    res = idm.attribute_preservation(ref, labels, gen, APS_ATTRIBUTES, photo_ids=ids, followed=followed)
    return {
        "score": None if not np.isfinite(res.score) else res.score,
        "per_attribute": res.per_attribute,
        "skipped": res.skipped,
        "_per_image": res.per_image,
    }
