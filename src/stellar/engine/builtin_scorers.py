"""Faces (IPS, SIS, APS inputs) and CLIP (CLIP-T, CLIP-I, the exclusion rule's inputs) as scorers of
the one protocol (:mod:`stellar.engine.scorers`), like every other metric family.

:class:`FaceScorer` — reference phase: the faces of every input photo once (feature cache keyed by the
photo's sha256 under the analyzer's protocol); generated phase: the faces of each generated image once,
then IPS_i / SIS_i before exclusion (``ips_raw``, ``sis_raw``), the face status and diagnostics
(``n_faces_generated``, ``n_faces_reference``, ``face_score``, ``face_boxes``) and the largest face's
embedding (``face_embedding``, used by the APS finaliser, not kept in ``per_image.parquet``). APS, the
exclusion rule and the failure rule are dataset-level finalisers (:mod:`stellar.engine.finalize`).

:class:`ClipScorer` — reference phase: the CLIP image embedding of every input photo; text phase: one
embedding per unique filled prompt; generated phase: ``clip_t`` = cos(text, generated), ``clip_n`` =
cos(text, input photo) (what an unedited copy scores; the exclusion rule's baseline), ``clip_i`` =
cos(input photo, generated).

``reuse=False`` (``--no-reuse``, benchmarks only) makes the face scorer recompute the reference faces of
the input photo and of every photo of the subject for each generated image, and the generated faces
once per face metric — the per-metric recompute of a naive implementation, for comparison.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.engine.cache import FeatureCache
from stellar.engine.scorers import ReferencePhoto, ScoringItem
from stellar.metrics import identity as idm
from stellar.metrics.base import variant_name

FACE_METRICS = ("ips", "sis", "aps", "fdfr", "cps")
#: the per-image columns the face scorer writes; with several face presets each is named ``COLUMN@PRESET``
FACE_COLUMNS = ("status", "ips_raw", "sis_raw", "fdfr", "cps", "cps_raw", "n_faces_generated", "n_faces_reference", "face_score", "face_boxes", "face_embedding")
CLIP_METRICS = ("clip_t", "clip_i")


def face_arrays(faces) -> dict[str, np.ndarray]:
    """A face analyzer's faces of one image as named arrays (what the feature cache stores)."""
    if not faces:
        return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros((0,), np.float32), "embeddings": np.zeros((0, 0), np.float32)}
    return {
        "boxes": np.stack([np.asarray(f.box, np.float32) for f in faces]),
        "scores": np.asarray([f.score for f in faces], np.float32),
        "embeddings": np.stack([np.asarray(f.embedding, np.float32) for f in faces]),
    }


def largest_face(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    emb, boxes = arrays["embeddings"], arrays["boxes"]
    if len(emb) == 0:
        return None
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    return emb[int(np.argmax(area))]


def through_cache(cache: FeatureCache, protocol: str, images, keys, compute) -> tuple[list, int]:
    """``compute(images) -> list[dict of arrays]`` on the images whose key misses the cache.

    ``None`` images (undecodable) get ``None``; returns (per-image arrays, how many were computed).
    """
    out: list[dict | None] = [None] * len(images)
    todo = []
    for i, (im, key) in enumerate(zip(images, keys)):
        if im is None:
            continue
        hit = cache.get(protocol, key)
        if hit is not None:
            out[i] = hit
        else:
            todo.append(i)
    if todo:
        for i, arrays in zip(todo, compute([images[i] for i in todo])):
            cache.put(protocol, keys[i], arrays)
            out[i] = arrays
    return out, len(todo)


class FaceScorer:
    """IPS / SIS raw values and the face inputs of APS (module docstring)."""

    name = "faces"
    needs_reference = True

    def __init__(self, analyzer, metrics: Sequence[str] = FACE_METRICS, *, reuse: bool = True, variant: str | None = None, primary: bool = True):
        self.analyzer = analyzer
        self.protocol = analyzer.protocol
        self.metrics = tuple(m for m in metrics if m in FACE_METRICS)
        self.reuse = reuse
        #: several face presets in one run (issue 12): every column is named ``COLUMN@variant``; the
        #: ``primary`` (first) preset also sets the row's plain ``status``
        self.variant = variant
        self.primary = primary
        self.passes: Counter = Counter()
        self._faces: dict[Path, dict | None] = {}  # reference photo -> faces (None: undecodable)
        self._subject_photos: dict[str, list[Path]] = {}
        self._sha: dict[Path, str] = {}

    def _analyze(self, images, keys, cache, counter: str) -> list[dict | None]:
        out, n = through_cache(cache, self.protocol, images, keys, lambda ims: [face_arrays(f) for f in self.analyzer.analyze(ims)])
        self.passes[counter] += n
        return out

    def _named(self, row: dict) -> dict:
        if self.variant is None:
            return row
        out = {variant_name(k, self.variant): v for k, v in row.items()}
        if self.primary and "status" in row:
            out["status"] = row["status"]
        return out

    def reference(self, photos: Sequence[ReferencePhoto], cache: FeatureCache, found: list | None = None) -> list[dict]:
        if found is None:
            found = self._analyze([p.image for p in photos], [p.sha256 or "" for p in photos], cache, "face_passes_reference")
        rows = []
        for p, f in zip(photos, found):
            self._faces[p.path] = f
            self._sha[p.path] = p.sha256 or ""
            subject = self._subject_photos.setdefault(p.photo.subject, [])
            if p.path not in subject:
                subject.append(p.path)
            largest = None if f is None else largest_face(f)
            rows.append(self._named({"n_faces": None if f is None else len(f["embeddings"]), "face_embedding": None if largest is None else largest.astype(np.float32).tolist()}))
        return rows

    def _reference_faces(self, path: Path, cache: FeatureCache) -> dict | None:
        if self.reuse or self._faces.get(path) is None:
            return self._faces.get(path)
        from stellar.images import load_image  # --no-reuse: decode and analyse again, per image and metric

        return self._analyze([np.array(load_image(path))], [self._sha[path]], cache, "face_passes_reference")[0]

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache, found: list | None = None) -> list[dict[str, object]]:
        images, keys = [it.image for it in items], [it.image_key for it in items]
        if found is None:
            found = self._analyze(images, keys, cache, "face_passes_generated")
        if not self.reuse:  # the per-metric recompute: the detector again for each further face metric
            for _ in range(len(self.metrics) - 1):
                self._analyze(images, keys, cache, "face_passes_generated")
        rows = []
        for it, gf in zip(items, found):
            photos = self._subject_photos.get(it.job.subject, [it.job.photo.path])
            own = self._reference_faces(it.job.photo.path, cache)
            others = [self._reference_faces(p, cache) for p in photos]
            emb = lambda a: None if a is None else a["embeddings"]  # noqa: E731
            ips, status = idm.identity_preservation(emb(gf), emb(own))
            own_index = photos.index(it.job.photo.path) if it.job.photo.path in photos else None
            sis, sis_status = idm.stability_of_identity(emb(gf), [emb(o) for o in others], own=own_index)
            if status == idm.OK and sis_status == idm.NO_FACE_REFERENCE_OTHER:
                status = sis_status
            largest = largest_face(gf)
            extra = {}
            if "fdfr" in self.metrics:
                extra["fdfr"] = idm.face_detection_failure(len(gf["embeddings"]))
            if "cps" in self.metrics and own_index is not None:
                extra["cps"], extra["cps_raw"], _ = idm.copy_paste_score(emb(gf), [emb(o) for o in others], own=own_index)
            elif "cps" in self.metrics:
                extra["cps"], extra["cps_raw"] = np.nan, np.nan
            rows.append(
                {
                    **extra,
                    "status": status,
                    "ips_raw": ips,
                    "sis_raw": sis,
                    "n_faces_generated": len(gf["embeddings"]),
                    "n_faces_reference": 0 if own is None else len(own["embeddings"]),
                    "face_score": float(gf["scores"].max()) if len(gf["scores"]) else np.nan,
                    "face_boxes": [[float(v) for v in box] + [float(s)] for box, s in zip(gf["boxes"], gf["scores"])] or None,
                    "face_embedding": None if largest is None else largest.astype(np.float32).tolist(),
                }
            )
        return [self._named(r) for r in rows]

    def counters(self) -> dict:
        return {"face_passes_generated": self.passes["face_passes_generated"], "face_passes_reference": self.passes["face_passes_reference"]}


class MultiFaceScorer:
    """Several face presets in one pass (issue 12, ``--faces paper,arcface``): each preset's
    :class:`FaceScorer` writes ``COLUMN@preset``; the decoded image is shared, and presets whose
    analyzers share one detector instance (:func:`stellar.models.faces.presets_from_names`: paper and
    offline both use MTCNN) detect once per image and embed once per preset. Cache hits are per
    preset (its protocol), so a rerun with one preset added computes only that preset."""

    name = "faces"
    needs_reference = True

    def __init__(self, analyzers: dict, metrics: Sequence[str] = FACE_METRICS, *, reuse: bool = True):
        self.scorers = [FaceScorer(a, metrics, reuse=reuse, variant=p, primary=k == 0) for k, (p, a) in enumerate(analyzers.items())]
        self.metrics = self.scorers[0].metrics
        self.protocol = " ; ".join(f"{s.variant}={s.protocol}" for s in self.scorers)
        self.detections = Counter()  # detector passes (shared ones counted once)

    def _analyze_all(self, images, keys, cache, counter: str) -> list[list[dict | None]]:
        """Per scorer, the face arrays of every image: cache first; the misses detected once per detector."""
        per: list[list[dict | None]] = []
        todo: list[list[int]] = []
        for s in self.scorers:
            out: list[dict | None] = [None] * len(images)
            miss = []
            for i, (im, key) in enumerate(zip(images, keys)):
                if im is None:
                    continue
                hit = cache.get(s.protocol, key)
                if hit is not None:
                    out[i] = hit
                else:
                    miss.append(i)
            per.append(out)
            todo.append(miss)
        groups: dict[int, list[int]] = {}
        for k, s in enumerate(self.scorers):
            groups.setdefault(id(s.analyzer.detector), []).append(k)
        for members in groups.values():
            union = sorted({i for k in members for i in todo[k]})
            if not union:
                continue
            dets = dict(zip(union, self.scorers[members[0]].analyzer.detect([images[i] for i in union])))
            self.detections[counter] += len(union)
            for k in members:
                if not todo[k]:
                    continue
                s = self.scorers[k]
                faces = s.analyzer.analyze([images[i] for i in todo[k]], detections=[dets[i] for i in todo[k]])
                for i, f in zip(todo[k], faces):
                    arrays = face_arrays(f)
                    cache.put(s.protocol, keys[i], arrays)
                    per[k][i] = arrays
                s.passes[counter] += len(todo[k])
        return per

    def reference(self, photos: Sequence[ReferencePhoto], cache: FeatureCache) -> list[dict]:
        found = self._analyze_all([p.image for p in photos], [p.sha256 or "" for p in photos], cache, "face_passes_reference")
        rows = [{} for _ in photos]
        for s, f in zip(self.scorers, found):
            for row, values in zip(rows, s.reference(photos, cache, found=f)):
                row.update(values)
        return rows

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        found = self._analyze_all([it.image for it in items], [it.image_key for it in items], cache, "face_passes_generated")
        rows = [{} for _ in items]
        for s, f in zip(self.scorers, found):
            for row, values in zip(rows, s.score(items, cache, found=f)):
                row.update(values)
        return rows

    def counters(self) -> dict:
        total = Counter()
        for s in self.scorers:
            total.update(s.counters())
        return {**total, "face_detections_generated": self.detections["face_passes_generated"], "face_detections_reference": self.detections["face_passes_reference"]}


class ClipScorer:
    """CLIP-T, CLIP-I and CLIP_N (the exclusion rule's baseline) with one CLIP model (module docstring)."""

    name = "clip"
    needs_reference = False  # CLIP-T needs no input photo; CLIP-I / CLIP_N are NaN (then the failure value) without it

    def __init__(self, clip, metrics: Sequence[str] = CLIP_METRICS):
        self.clip = clip
        self.protocol = getattr(clip, "protocol", None) or clip.name  # weights identity + dtype + preprocessing
        self.metrics = tuple(m for m in metrics if m in CLIP_METRICS) or CLIP_METRICS
        self.passes: Counter = Counter()
        self.truncated = 0
        self._image: dict[Path, np.ndarray | None] = {}
        self._text: dict[str, np.ndarray] = {}

    def _encode(self, images, keys, cache) -> list[np.ndarray | None]:
        out, n = through_cache(cache, self.protocol, images, keys, lambda ims: [{"image": e} for e in self.clip.encode_images(ims)])
        self.passes["clip_image_passes"] += n
        return [None if a is None else a["image"] for a in out]

    def reference(self, photos: Sequence[ReferencePhoto], cache: FeatureCache) -> None:
        for p, e in zip(photos, self._encode([p.image for p in photos], [p.sha256 or "" for p in photos], cache)):
            self._image[p.path] = e

    def text(self, prompts: Sequence[str], cache: FeatureCache) -> None:
        new = [t for t in dict.fromkeys(prompts) if t not in self._text]
        if new:
            self._text.update(zip(new, self.clip.encode_texts(new)))
            self.truncated += int(getattr(self.clip, "last_truncated", 0) or 0)

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        self.text([it.prompt for it in items], cache)  # prompts not seen in the text phase (direct callers)
        gen = self._encode([it.image for it in items], [it.image_key for it in items], cache)
        rows = []
        for it, g in zip(items, gen):
            text, ref = self._text[it.prompt], self._image.get(it.job.photo.path)
            row = {"clip_t": float(np.dot(text, g)), "clip_n": np.nan, "clip_i": np.nan}
            if ref is not None:
                row.update(clip_n=float(np.dot(text, ref)), clip_i=float(np.dot(ref, g)))
            rows.append(row)
        return rows

    def counters(self) -> dict:
        return {"clip_image_passes": self.passes["clip_image_passes"]}
