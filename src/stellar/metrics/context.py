"""Context metrics GOA and RFS (DESIGN §6.5–6.6; Stellar arXiv 2312.06116 §4).

Pure functions over open-vocabulary *detections*; no model, no disk. A detector gives, for an image
and its text queries q_1..q_Q, boxes b_1..b_N and the per-query scores
``S[n, q] = sigmoid(logit(b_n, q))``. Everything here takes those arrays.

**Box labels.** Over a set of queries L, box n takes the label of its best query and that query's
score (no threshold)::

    label_L(n) = argmax_{q ∈ L} S[n, q]        score_L(n) = max_{q ∈ L} S[n, q] = sigmoid(max logit)

**Grounding.** The grounding of query q over L is the best box labelled q::

    g_L(q) = argmax_{n : label_L(n) = q} score_L(n)        s_L(q) = score_L(g_L(q))  (0, no box, if no box is labelled q)

**GOA_i** = (1/|Q_i|) Σ_{q ∈ Q_i} s_{Q_i}(q), Q_i = the prompt's detectables minus the person-role
words that name the subject itself (:data:`ROLE_WORDS`). No query left: GOA_i is undefined (NaN),
or 0 with ``empty="zero"`` (the official averaging).

**RFS_i** = (1/|T_i|) Σ_{(person, pred, obj) ∈ T_i} c(t) with the triplet confidence
``c(t) = s_L(person) · s_L(obj) · p_pred(t)``, L = the GOA queries ∪ the triplets' objects ∪
{"person"}, p_pred = the relation scorer's probability of the predicate on the union box of the two
groundings. A missing grounding (no box labelled person / obj) gives c(t) = 0. No triplet: NaN.

Choices (documented deviations / precisions of the paper's text):

- GOA labels boxes over the GOA queries only, even when the detector also ran with "person" and the
  triplet objects for RFS: GOA does not change when RFS is requested too (for OWL-ViT/OWLv2 the
  per-query logits are independent of the other queries, so this equals a GOA-only detector pass).
- Every query is in one normal form (:func:`stellar.data.prompts.normalize_query`: NFC, lower case,
  single spaces) — GOA queries, triplet objects (extracted or annotated) and "person" alike — so one
  object is one query; the user's spelling is kept for display only (:func:`goa_query_labels`).
  Duplicate detectables are queried once (a repeated object does not weigh twice); role words are
  matched on the normal form of whole detectables.
- Known official defect not reproduced: GOA gave −1 or 0 inconsistently for empty query lists; here
  it is NaN (counted by the engine) unless ``empty="zero"`` is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from stellar.data.prompts import ROLE_WORDS as _PROMPT_ROLE_WORDS
from stellar.data.prompts import normalize_query

#: Person-role words of the Stellar-T templates that name the subject itself, not an object (DESIGN §6.5);
#: the one list lives in :mod:`stellar.data.prompts` (the triplet extractor uses it too).
ROLE_WORDS: frozenset[str] = frozenset(_PROMPT_ROLE_WORDS)

#: The query that grounds the subject for RFS.
PERSON = "person"

EMPTY_POLICIES = ("nan", "zero")


def goa_queries(detectables: Iterable[str], role_words: Iterable[str] = ROLE_WORDS) -> list[str]:
    """The GOA text queries of a prompt: its detectables minus role words, in normal form
    (:func:`stellar.data.prompts.normalize_query`: lower case, single spaces), first occurrence kept.

    Queries are normalised once, here, so that GOA, RFS and annotated triplets name one object with
    one query: "Eiffel Tower" (a detectable) and "eiffel tower" (a triplet object) would otherwise be
    two queries that the detector's lower-casing tokenizer makes equal — they tie, and the arg-max
    labelling gives every box to the first, leaving the other without any (RFS silently 0).
    :func:`goa_query_labels` keeps the user's spelling for display.

    >>> goa_queries(["doctor", "hospital", "Hospital "])
    ['hospital']
    >>> goa_queries(["Egyptian  Pharaoh", "Eiffel  Tower"])
    ['eiffel tower']
    """
    return list(goa_query_labels(detectables, role_words))


def goa_query_labels(detectables: Iterable[str], role_words: Iterable[str] = ROLE_WORDS) -> dict[str, str]:
    """``{query (normal form): the user's spelling (first occurrence, spaces collapsed)}`` of the GOA queries.

    >>> goa_query_labels(["Eiffel Tower", "eiffel tower", "DJ"])
    {'eiffel tower': 'Eiffel Tower'}
    """
    roles = {normalize_query(w) for w in role_words}
    out: dict[str, str] = {}
    for d in detectables:
        key = normalize_query(d)
        if not key or key in roles or key in out:
            continue
        out[key] = " ".join(str(d).split())
    return out


def _scores(query_scores: np.ndarray) -> np.ndarray:
    s = np.asarray(query_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"query_scores must be (boxes, queries), got shape {s.shape}")
    return s


def box_labels(query_scores: np.ndarray, among: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, scores)`` of every box over the query columns ``among`` (default: all).

    ``labels[n]`` is a column index of ``query_scores`` (one of ``among``), ``scores[n]`` its score:
    ``label_L(n) = argmax_{q∈L} S[n,q]``, ``score_L(n) = max_{q∈L} S[n,q]``. With no column, every
    label is -1 and every score 0.
    """
    s = _scores(query_scores)
    cols = np.arange(s.shape[1]) if among is None else np.asarray(list(among), dtype=np.int64)
    if len(cols) == 0 or len(s) == 0:
        return np.full(len(s), -1, dtype=np.int64), np.zeros(len(s))
    sub = s[:, cols]
    best = np.argmax(sub, axis=1)
    return cols[best], sub[np.arange(len(s)), best]


def best_boxes(query_scores: np.ndarray, among: Sequence[int] | None = None) -> dict[int, tuple[int, float]]:
    """Grounding of each query column in ``among``: ``{q: (box index, score)}``, ``(-1, 0.0)`` if no box is labelled q.

    >>> S = np.array([[0.9, 0.2], [0.8, 0.1], [0.3, 0.4]])
    >>> best_boxes(S)
    {0: (0, 0.9), 1: (2, 0.4)}
    >>> best_boxes(S[:2])  # query 1 never wins a box
    {0: (0, 0.9), 1: (-1, 0.0)}
    """
    s = _scores(query_scores)
    cols = list(range(s.shape[1])) if among is None else [int(c) for c in among]
    labels, scores = box_labels(s, cols)
    out: dict[int, tuple[int, float]] = {}
    for q in cols:
        idx = np.flatnonzero(labels == q)
        if len(idx) == 0:
            out[q] = (-1, 0.0)
        else:
            k = int(idx[np.argmax(scores[idx])])
            out[q] = (k, float(scores[k]))
    return out


def sufficient_boxes(query_scores: np.ndarray, labellings: Sequence[Sequence[int]]) -> np.ndarray:
    """Indices of the boxes that are the grounding of some query under some labelling (sorted).

    Keeping only these boxes (with their full score rows) leaves :func:`best_boxes` unchanged for
    each of the ``labellings`` — so detections can be cached compactly and exactly.
    """
    keep: set[int] = set()
    for among in labellings:
        keep.update(k for k, _ in best_boxes(query_scores, among).values() if k >= 0)
    return np.asarray(sorted(keep), dtype=np.int64)


def grounding_accuracy(query_scores: Mapping[str, float], queries: Sequence[str], *, empty: str = "nan") -> float:
    """GOA of one image: the mean over ``queries`` of their best scores (a query absent from ``query_scores`` counts 0).

    Args:
        query_scores: ``{query: s(q)}``, the best score among boxes labelled with the query.
        queries: the GOA queries (:func:`goa_queries`).
        empty: ``"nan"`` (default: no query → undefined) or ``"zero"`` (the official averaging).

    >>> grounding_accuracy({"horse": 0.8, "jungle": 0.4}, ["horse", "jungle"])
    0.6000000000000001
    >>> grounding_accuracy({"horse": 0.8}, ["horse", "saddle"])
    0.4
    >>> grounding_accuracy({}, []), grounding_accuracy({}, [], empty="zero")
    (nan, 0.0)
    """
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
    if not queries:
        return math.nan if empty == "nan" else 0.0
    return float(np.mean([float(query_scores.get(q, 0.0)) for q in queries]))


def union_box(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """Smallest (x1, y1, x2, y2) box containing boxes ``a`` and ``b``.

    >>> union_box((10, 20, 30, 40), (25, 5, 50, 35))
    (10.0, 5.0, 50.0, 40.0)
    """
    return (float(min(a[0], b[0])), float(min(a[1], b[1])), float(max(a[2], b[2])), float(max(a[3], b[3])))


def relation_fidelity(
    triplets: Sequence[Sequence[str]],
    person_scores: Mapping[str, float] | float,
    object_scores: Mapping[str, float],
    predicate_probs: Sequence[float | None],
) -> tuple[float, list[float]]:
    """RFS of one image: ``(mean triplet confidence, per-triplet confidences)``.

    ``c(t) = p_person · p_object · p_pred``; a grounding score of 0 (no box) or a missing predicate
    probability (``None``/NaN: not scored because a box is missing) gives ``c(t) = 0``. No triplet: NaN.

    Args:
        triplets: ``(subject, predicate, object)`` per triplet (the subject is the person).
        person_scores: the person's grounding score s(person), or ``{subject: score}``.
        object_scores: ``{object: s(object)}``; an object not in it has no box (score 0).
        predicate_probs: p_pred per triplet, aligned with ``triplets``.

    >>> relation_fidelity([("person", "riding", "horse"), ("person", "in", "jungle")], 0.9, {"horse": 0.5}, [0.8, None])
    (0.18000000000000002, [0.36000000000000004, 0.0])
    """
    if len(predicate_probs) != len(triplets):
        raise ValueError(f"{len(predicate_probs)} predicate probabilities for {len(triplets)} triplets")
    per: list[float] = []
    for (subj, _, obj), p in zip(triplets, predicate_probs):
        ps = float(person_scores.get(subj, 0.0)) if isinstance(person_scores, Mapping) else float(person_scores)
        po = float(object_scores.get(obj, 0.0))
        pp = 0.0 if p is None or not math.isfinite(float(p)) else float(p)
        per.append(ps * po * pp if ps > 0 and po > 0 else 0.0)
    if not per:
        return math.nan, []
    return float(np.mean(per)), per
