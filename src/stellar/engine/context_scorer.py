"""The GOA / RFS scorer of the evaluation engine (DESIGN §6.5–6.6).

For each generated image of a Stellar-T job:

1. queries: GOA's ``goa_queries(detectables)`` (role words naming the subject dropped); with RFS also
   the objects of the prompt's triplets and ``"person"`` — all in one normal form
   (:func:`stellar.data.prompts.normalize_query`: lower case, single spaces), so a capitalised
   detectable and the same triplet object are one query (``goa_objects`` shows the user's spelling). Triplets: annotated in the dataset, else
   extracted from the template (:func:`stellar.data.prompts.resolve_triplets`).
2. the detector runs ONCE per image with all those queries (in sorted order, so the run does not
   depend on the prompt's word order); its detections are cached in the feature cache under the
   detector's protocol, keyed by ``image sha256 : hash(queries, GOA queries)``. Only the boxes that
   ground some query under GOA's labelling or RFS's (:func:`stellar.metrics.context.sufficient_boxes`)
   are kept, with their full per-query score rows: exact for both metrics, small on disk.
3. GOA from the groundings over the GOA queries; RFS from the groundings over all queries, the
   relation scorer run on the union boxes of the grounded (person, object) pairs of the whole batch.

Result columns: ``goa``, ``rfs`` (the metrics), ``goa_objects`` (JSON ``{query: best score}``) and
``rfs_triplets`` (JSON list of ``{"triplet", "p_person", "p_object", "p_predicate", "score"}``) for
diagnosis. Stellar-H jobs (no detectables, free text) get NaN for both: GOA and RFS are Stellar-T
metrics. A T prompt whose detectables are all role words has no GOA query: NaN (counted in the
summary's ``undefined``), or 0 with ``goa_empty="zero"`` (the official averaging); with no triplet,
RFS is NaN.

``scorer_options`` read by :func:`build_context_scorer`:

- ``detector``: registry card, local folder or hub id (default ``owlvit-large-patch14``), or a
  detector object (``detect``/``protocol``);
- ``goa_empty``: ``"nan"`` (default) | ``"zero"``;
- ``relation_scorer``: ``"clip"`` (default) | ``"vqa"`` | a scorer object (``score``/``protocol``);
- ``clip``: the CLIP of the relation scorer: card / folder / hub id (default
  ``clip-vit-bigg-14-laion2b``, the evaluation CLIP) or a loaded ``ClipEncoder`` (shared, loaded once);
- ``relation_model``: the VQA checkpoint for ``relation_scorer="vqa"`` (default ``Salesforce/blip-vqa-base``);
- ``predicates``: extra predicates for the CLIP scorer's vocabulary (e.g. the dataset's, from
  :func:`stellar.data.prompts.predicate_vocabulary`), added to the built-in list.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

from stellar.engine.cache import FeatureCache
from stellar.engine.scorers import ScoringItem
from stellar.errors import StellarError
from stellar.metrics.context import (
    EMPTY_POLICIES,
    PERSON,
    best_boxes,
    goa_query_labels,
    grounding_accuracy,
    relation_fidelity,
    sufficient_boxes,
    union_box,
)
from stellar.models.detectors import Detections

RELATION_SCORERS = ("clip", "vqa")


def _triplets(item: ScoringItem) -> tuple[tuple[str, str, str], ...]:
    # annotated or extracted, every element in the queries' normal form (one object = one query)
    from stellar.data.prompts import normalize_triplets, resolve_triplets

    if item.triplets is not None:
        return normalize_triplets(item.triplets)
    return normalize_triplets(resolve_triplets(item.job.prompt))


class _Plan:
    """What one item needs: its GOA queries, triplets and the detector's (sorted) queries."""

    def __init__(self, item: ScoringItem, want_goa: bool, want_rfs: bool):
        prompt = item.job.prompt
        self.t_job = item.job.kind == "T"
        # queries in normal form (stellar.data.prompts.normalize_query); labels: the user's spelling, for display
        self.labels = goa_query_labels(prompt.detectables) if self.t_job else {}
        self.goa = list(self.labels)
        self.triplets = _triplets(item) if (self.t_job and want_rfs) else ()
        # RFS labels boxes over L = GOA queries ∪ triplet objects ∪ {person} (stellar.metrics.context)
        wanted = set(self.goa) if want_goa or self.triplets else set()
        if self.triplets:
            wanted |= {o for _, _, o in self.triplets} | {PERSON}
        self.queries = sorted(wanted)
        digest = hashlib.sha256(json.dumps({"queries": self.queries, "goa": sorted(self.goa)}).encode()).hexdigest()[:20]
        self.key = f"{item.image_key}:{digest}"


class ContextScorer:
    """GOA and/or RFS of generated images (a :class:`~stellar.engine.scorers.Scorer`).

    Args:
        detector: an open-vocabulary detector (``detect(images, queries) -> list[Detections]``, ``protocol``).
        relation_scorer: ``score(list[RelationQuery]) -> list[float]`` + ``protocol``; needed for RFS.
        metrics: ``("goa",)``, ``("rfs",)`` or both.
        goa_empty: ``"nan"`` | ``"zero"`` (see the module docstring).
    """

    name = "context"

    def __init__(self, detector, relation_scorer=None, *, metrics: Sequence[str] = ("goa", "rfs"), goa_empty: str = "nan"):
        unknown = [m for m in metrics if m not in ("goa", "rfs")]
        if unknown:
            raise StellarError(f"the context scorer computes goa and rfs, not {unknown}")
        if goa_empty not in EMPTY_POLICIES:
            raise StellarError(f"goa_empty must be one of {', '.join(EMPTY_POLICIES)} (--goa-empty), got {goa_empty!r}")
        if "rfs" in metrics and relation_scorer is None:
            raise StellarError("RFS needs a relation scorer (--relation-scorer clip|vqa)")
        self.detector = detector
        self.relation_scorer = relation_scorer if "rfs" in metrics else None
        self.metrics = tuple(metrics)
        self.goa_empty = goa_empty

    @property
    def protocol(self) -> str:
        parts = [f"detector={self.detector.protocol}"]
        if self.relation_scorer is not None:
            parts.append(f"relation={self.relation_scorer.protocol}")
        if "goa" in self.metrics:
            parts.append(f"goa_empty={self.goa_empty}")
        return " ; ".join(parts)

    def _detections(self, items: Sequence[ScoringItem], plans: list[_Plan], cache: FeatureCache) -> list[Detections | None]:
        out: list[Detections | None] = [None] * len(items)
        todo = []
        for k, (item, plan) in enumerate(zip(items, plans)):
            if not plan.queries:
                continue
            hit = cache.get(self.detector.protocol, plan.key)
            if hit is not None:
                out[k] = Detections.from_arrays(hit)
            else:
                todo.append(k)
        if todo:
            found = self.detector.detect([items[k].image for k in todo], [plans[k].queries for k in todo])
            for k, det in zip(todo, found):
                plan = plans[k]
                cols = {q: i for i, q in enumerate(det.queries)}
                labellings = [[cols[q] for q in plan.goa], list(range(len(det.queries)))]
                det = det.subset(sufficient_boxes(det.query_scores, labellings))
                cache.put(self.detector.protocol, plan.key, det.to_arrays())
                out[k] = det
        return out

    def score(self, items: Sequence[ScoringItem], cache: FeatureCache) -> list[dict[str, object]]:
        want_goa, want_rfs = "goa" in self.metrics, "rfs" in self.metrics
        plans = [_Plan(item, want_goa, want_rfs) for item in items]
        dets = self._detections(items, plans, cache)
        rows: list[dict[str, object]] = [{} for _ in items]
        pending = []  # (row, triplet index, RelationQuery)
        groundings: list[dict] = [{} for _ in items]
        for k, (item, plan, det) in enumerate(zip(items, plans, dets)):
            if want_goa:
                if not plan.t_job:
                    rows[k].update(goa=math.nan, goa_objects=None)
                else:
                    scores = {}
                    if det is not None and plan.goa:
                        cols = {q: i for i, q in enumerate(det.queries)}
                        best = best_boxes(det.query_scores, [cols[q] for q in plan.goa])
                        scores = {q: best[cols[q]][1] for q in plan.goa}
                    shown = {plan.labels[q]: v for q, v in scores.items()}  # the user's spelling, for display only
                    rows[k].update(goa=grounding_accuracy(scores, plan.goa, empty=self.goa_empty), goa_objects=json.dumps(shown))
            if want_rfs and plan.triplets and det is not None:
                from stellar.models.relations import RelationQuery

                cols = {q: i for i, q in enumerate(det.queries)}
                best = best_boxes(det.query_scores)
                person_box, person_score = best[cols[PERSON]]
                objects = {o: best[cols[o]] for _, _, o in plan.triplets}
                groundings[k] = {"person": person_score, "objects": {o: s for o, (_, s) in objects.items()}}
                for t, (subj, pred, obj) in enumerate(plan.triplets):
                    obj_box = objects[obj][0]
                    if person_box >= 0 and obj_box >= 0:
                        box = union_box(det.boxes[person_box], det.boxes[obj_box])
                        pending.append((k, t, RelationQuery(item.image, box, subj, pred, obj)))
        probs = self.relation_scorer.score([q for _, _, q in pending]) if pending else []
        by_item: dict[int, dict[int, float]] = {}
        for (k, t, _), p in zip(pending, probs):
            by_item.setdefault(k, {})[t] = float(p)
        if want_rfs:
            for k, plan in enumerate(plans):
                if not plan.triplets or not groundings[k]:
                    rows[k].update(rfs=math.nan, rfs_triplets=None)
                    continue
                g = groundings[k]
                p_pred = [by_item.get(k, {}).get(t) for t in range(len(plan.triplets))]
                score, per = relation_fidelity(plan.triplets, g["person"], g["objects"], p_pred)
                detail = [
                    {"triplet": list(t), "p_person": g["person"], "p_object": g["objects"][t[2]], "p_predicate": p, "score": c}
                    for t, p, c in zip(plan.triplets, p_pred, per)
                ]
                rows[k].update(rfs=score, rfs_triplets=json.dumps(detail))
        return rows


def _relation_scorer(options: dict, device: str | None, batch_size: int):
    kind = options.get("relation_scorer") or "clip"
    if not isinstance(kind, str):
        return kind  # an injected scorer object
    if kind not in RELATION_SCORERS:
        raise StellarError(f"unknown relation scorer {kind!r}; choose one of {', '.join(RELATION_SCORERS)} (--relation-scorer)")
    if kind == "vqa":
        from stellar.models.relations import DEFAULT_VQA, VqaRelationScorer

        return VqaRelationScorer.from_pretrained(options.get("relation_model") or DEFAULT_VQA, device=device, batch_size=batch_size)
    from stellar.models.clip import DEFAULT_CLIP_CARD, load_clip
    from stellar.models.relations import ClipRelationScorer

    clip = options.get("clip") or DEFAULT_CLIP_CARD
    if isinstance(clip, str):
        clip = load_clip(clip, device=device, batch_size=batch_size)
    extra = list(options.get("predicates") or ())
    vocabulary = None
    if extra:
        from stellar.data.prompts import predicate_vocabulary

        vocabulary = predicate_vocabulary([("person", p, "x") for p in extra])
    return ClipRelationScorer(clip, vocabulary)


def build_context_scorer(options: dict, device: str | None, batch_size: int, metrics: tuple[str, ...]) -> ContextScorer:
    """The GOA/RFS scorer for ``metrics`` from the CLI's ``scorer_options`` (keys: module docstring)."""
    from stellar.models.detectors import DEFAULT_DETECTOR, load_detector

    goa_empty = options.get("goa_empty") or "nan"
    if goa_empty not in EMPTY_POLICIES:
        raise StellarError(f"goa_empty must be one of {', '.join(EMPTY_POLICIES)} (--goa-empty), got {goa_empty!r}")
    spec = options.get("detector") or DEFAULT_DETECTOR
    detector = spec if hasattr(spec, "detect") else load_detector(spec, device=device, batch_size=batch_size)
    relation = _relation_scorer(options, device, batch_size) if "rfs" in metrics else None
    return ContextScorer(detector, relation, metrics=metrics, goa_empty=goa_empty)
