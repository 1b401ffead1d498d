"""Identity metrics IPS, SIS, APS and the exclusion rule (DESIGN §6.1–6.4, Stellar arXiv 2312.06116 §4).

Pure functions over face embeddings (L2-normalised rows) and CLIP similarities; no model, no disk.

Notation: job *i* has generated image g_i, input photo x_i, subject photos R(s_i) ∋ x_i.

- **IPS_i** = max_{a ∈ faces(g_i), b ∈ faces(x_i)} cos(a, b); 0 when either side has no face
  (status ``no_face_generated`` / ``no_face_reference``).
- **SIS_i** = min_{r ∈ R(s_i)} IPS(g_i, r) ≤ IPS_i, over the subject's photos **that have a face**:
  when another photo of the subject has no face (or cannot be decoded), SIS_i is the minimum over
  the photos that have one, with status ``no_face_reference_other`` (issue 9.5: the old rule made
  SIS silently 0 with status ``ok``; a photo without a face says nothing about the identity, and
  the status lets reports count these jobs). When the job's own input photo has no face, IPS_i = 0
  (``no_face_reference``) and SIS_i = 0 too, so SIS_i ≤ IPS_i always holds.
- **Exclusion** (metric-exploitation penalty): followed_i ⇔ CLIP_T_i > CLIP_N_i + 2σ with
  σ = std(CLIP_N, ddof=1) over the evaluated set; where not followed, IPS_i = SIS_i = 0 and the APS
  prediction counts as wrong.
- **APS**: for each of the 8 attributes with both classes among the evaluated jobs' input labels, a
  logistic-regression probe (scikit-learn defaults) is fit on the input photos' largest-face
  embeddings → labels, one row per evaluated job — implemented as unique photos weighted by their
  job count, which is the same objective; predictions on the generated images' largest faces, a
  missing face (or an excluded image) counts as the wrong class; score = ROC-AUC of the hard ±1
  predictions against the input labels; APS = mean over attributes.

Deviations from the official code (DESIGN §6.9) on purpose: an input photo without a face is left
out of the probe's training rows instead of crashing; an excluded image without a face stays a
*wrong* prediction; single-class attributes are skipped and reported, never silently averaged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

NO_FACE_GENERATED = "no_face_generated"
NO_FACE_REFERENCE = "no_face_reference"
NO_FACE_REFERENCE_OTHER = "no_face_reference_other"
OK = "ok"


def _as_faces(x: np.ndarray | None) -> np.ndarray:
    if x is None:
        return np.zeros((0, 0), dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(0, 0) if x.size == 0 else np.atleast_2d(x)


def identity_preservation(generated: np.ndarray | None, reference: np.ndarray | None) -> tuple[float, str]:
    """IPS of one image: ``(max cosine over face pairs, status)``.

    Args:
        generated: (n, D) L2-normalised embeddings of the faces in the generated image (n may be 0).
        reference: (m, D) embeddings of the faces in the input photo.

    Returns:
        ``(score, status)``; ``(0.0, "no_face_generated")`` / ``(0.0, "no_face_reference")`` when a side is empty.

    >>> identity_preservation(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.8]]))
    (0.8, 'ok')
    """
    g, r = _as_faces(generated), _as_faces(reference)
    if len(g) == 0:
        return 0.0, NO_FACE_GENERATED
    if len(r) == 0:
        return 0.0, NO_FACE_REFERENCE
    if g.shape[1] != r.shape[1]:
        raise ValueError(f"embedding sizes differ: generated {g.shape[1]}, reference {r.shape[1]} (different face models?)")
    return float(np.max(g @ r.T)), OK


def stability_of_identity(
    generated: np.ndarray | None, references: Sequence[np.ndarray | None], own: int | None = None
) -> tuple[float, str]:
    """SIS of one image: ``min over the subject's photos that have a face of IPS(generated, photo)``.

    Args:
        generated: (n, D) embeddings of the generated image's faces.
        references: per photo of the subject, its (m, D) face embeddings; ``None`` or empty = no
            face / undecodable (left out, status ``no_face_reference_other``).
        own: index of the job's input photo in ``references``; without a face there, SIS = 0 with
            status ``no_face_reference`` (as IPS).

    >>> g = np.array([[1.0, 0.0]])
    >>> stability_of_identity(g, [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]])])
    (0.6, 'ok')
    >>> stability_of_identity(g, [np.array([[1.0, 0.0]]), None], own=0)
    (1.0, 'no_face_reference_other')
    """
    if not references:
        raise ValueError("SIS needs at least one reference photo")
    if len(_as_faces(generated)) == 0:
        return 0.0, NO_FACE_GENERATED
    has_face = [r is not None and len(_as_faces(r)) > 0 for r in references]
    if (own is not None and not has_face[own]) or not any(has_face):
        return 0.0, NO_FACE_REFERENCE
    scores = [identity_preservation(generated, r)[0] for r, ok in zip(references, has_face) if ok]
    return min(scores), OK if all(has_face) else NO_FACE_REFERENCE_OTHER


def exclusion_threshold(clip_n: np.ndarray) -> float:
    """σ of the rule: sample standard deviation (ddof = 1) of CLIP_N over the evaluated set."""
    clip_n = np.asarray(clip_n, dtype=np.float64)
    if clip_n.size < 2:
        raise ValueError("the exclusion rule needs at least 2 evaluated images to estimate σ")
    return float(np.std(clip_n, ddof=1))


def followed_prompt(clip_t: np.ndarray, clip_n: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """followed_i ⇔ CLIP_T_i > CLIP_N_i + 2σ (σ from :func:`exclusion_threshold` unless given)."""
    clip_t, clip_n = np.asarray(clip_t, dtype=np.float64), np.asarray(clip_n, dtype=np.float64)
    if sigma is None:
        sigma = exclusion_threshold(clip_n)
    return clip_t > clip_n + 2.0 * sigma


def apply_exclusion(scores: np.ndarray, followed: np.ndarray | None) -> np.ndarray:
    """Scores with non-followed images set to 0; ``followed=None`` (rule not applied) returns them as-is."""
    scores = np.asarray(scores, dtype=np.float64)
    if followed is None:
        return scores.copy()
    return np.where(np.asarray(followed, dtype=bool), scores, 0.0)


@dataclass
class APSResult:
    """Dataset-level APS with its per-attribute parts and a per-image diagnostic."""

    score: float  # mean AUC over the attributes that could be scored (NaN if none)
    per_attribute: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # attribute -> why (single class, no training faces)
    per_image: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fraction of scored attributes predicted right
    predictions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n_jobs, n_attributes) ±1, 0 = not scored


def aps_from_predictions(labels: np.ndarray, predictions: np.ndarray, attributes: Sequence[str]) -> tuple[float, dict[str, float], dict[str, str]]:
    """APS from hard predictions: the mean over attributes of ROC-AUC(label, prediction).

    Args:
        labels: (N, A) the input photos' labels, ±1, 0 = unknown.
        predictions: (N, A) the probes' hard predictions after the rules (±1); 0 = not scored (no
            probe for that attribute, or a failed job under ``--partial``). Rows with a 0 label or a 0
            prediction are left out of that attribute.
        attributes: the A names.

    Returns:
        ``(APS, {attribute: AUC}, {attribute: why skipped})`` — an attribute is skipped unless both
        classes are present among its counted rows; APS is NaN when every attribute is skipped.

    >>> aps_from_predictions(np.array([[1], [-1]]), np.array([[1], [1]]), ["Male"])
    (0.5, {'Male': 0.5}, {})
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    per_attribute: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for a, name in enumerate(attributes):
        rows = (y[:, a] != 0) & (p[:, a] != 0)
        if not rows.any() and (y[:, a] != 0).any():
            skipped[name] = "no prediction (no probe could be fit, or every job failed under --partial)"
            continue
        classes = set(y[rows, a].tolist())
        if classes != {-1, 1}:
            skipped[name] = f"single class among evaluated input photos ({sorted(classes)})"
            continue
        per_attribute[name] = _roc_auc_hard(y[rows, a], p[rows, a])
    score = float(np.mean(list(per_attribute.values()))) if per_attribute else float("nan")
    return score, per_attribute, skipped


def _roc_auc_hard(labels: np.ndarray, predictions: np.ndarray) -> float:
    """ROC-AUC of hard ±1 predictions against ±1 labels (both classes present).

    For a binary score the ROC curve has one inner point, so AUC = (1 + TPR − FPR) / 2 =
    (TPR + TNR) / 2 — exactly what ``sklearn.metrics.roc_auc_score`` returns, without its per-call
    overhead (a report computes it per attribute per table group). Other scores go to sklearn.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if not np.isin(predictions, (-1, 1)).all():
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(labels, predictions))
    positive = labels == 1
    tpr = float(np.mean(predictions[positive] == 1))
    tnr = float(np.mean(predictions[~positive] == -1))
    return (tpr + tnr) / 2


def attribute_preservation(
    reference_features: np.ndarray,
    labels: np.ndarray,
    generated_features: np.ndarray,
    attributes: Sequence[str],
    *,
    photo_ids: Sequence[object] | None = None,
    followed: np.ndarray | None = None,
) -> APSResult:
    """APS over the evaluated jobs.

    Args:
        reference_features: (N, D) largest-face embedding of each job's input photo; a row of NaN
            where the photo has no face (left out of the probe's training rows).
        labels: (N, A) the input photo's CelebA labels (±1) for ``attributes``; 0 = unknown
            (excluded from training and scoring for that attribute).
        generated_features: (N, D) largest-face embedding of each generated image; NaN rows = no face.
        attributes: the A attribute names.
        photo_ids: (N,) identifier of each job's input photo; rows of one photo are merged into one
            weighted training row (same objective, faster). Default: every row is its own photo.
        followed: (N,) exclusion-rule outcome; ``False`` forces a wrong prediction. None = rule not applied.

    Returns:
        :class:`APSResult`.
    """
    from sklearn.linear_model import LogisticRegression

    ref = np.asarray(reference_features, dtype=np.float64)
    gen = np.asarray(generated_features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = len(ref)
    if gen.shape[0] != n or y.shape != (n, len(attributes)):
        raise ValueError(f"shapes disagree: reference {ref.shape}, generated {gen.shape}, labels {y.shape}, {len(attributes)} attributes")
    followed_mask = np.ones(n, dtype=bool) if followed is None else np.asarray(followed, dtype=bool)
    ref_has_face = ~np.isnan(ref).any(axis=1) if ref.ndim == 2 and ref.size else np.zeros(n, dtype=bool)
    gen_usable = (~np.isnan(gen).any(axis=1) if gen.size else np.zeros(n, dtype=bool)) & followed_mask
    ids = np.arange(n) if photo_ids is None else np.asarray([str(p) for p in photo_ids])

    predictions = np.zeros((n, len(attributes)), dtype=np.int64)
    per_attribute: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for a, name in enumerate(attributes):
        known = y[:, a] != 0
        train = known & ref_has_face
        classes = set(y[known, a].tolist())
        if classes != {-1, 1}:
            skipped[name] = f"single class among evaluated input photos ({sorted(classes)})"
            continue
        if set(y[train, a].tolist()) != {-1, 1}:
            skipped[name] = "fewer than two classes among input photos with a detected face"
            continue
        # one weighted row per unique photo == one row per job (duplicated rows)
        uniq, first, counts = np.unique(ids[train], return_index=True, return_counts=True)
        rows = np.flatnonzero(train)[first]
        probe = LogisticRegression()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs may stop at max_iter on tiny sets; defaults are the spec
            probe.fit(ref[rows], y[rows, a], sample_weight=counts.astype(np.float64))
        pred = np.zeros(n, dtype=np.int64)
        if gen_usable.any():
            pred[gen_usable] = probe.predict(gen[gen_usable])
        # no face / excluded: the wrong class, never a lucky right one (DESIGN §6.9)
        pred[~gen_usable] = -y[~gen_usable, a]
        pred[~known] = 0
        predictions[:, a] = pred
        per_attribute[name] = _roc_auc_hard(y[known, a], pred[known])
    scored = [a for a, name in enumerate(attributes) if name in per_attribute]
    if scored:
        right = (predictions[:, scored] == y[:, scored]) & (y[:, scored] != 0)
        denom = (y[:, scored] != 0).sum(axis=1)
        per_image = np.where(denom > 0, right.sum(axis=1) / np.maximum(denom, 1), np.nan)
        score = float(np.mean(list(per_attribute.values())))
    else:
        per_image = np.full(n, np.nan)
        score = float("nan")
    return APSResult(score, per_attribute, skipped, per_image, predictions)


# ----------------------------------------------------------------------------- issue 12: FDFR, CPS
#: CPS of a job whose generated image has no face (and, via ``MetricInfo.failure_value``, of a job
#: without a decodable image): the metric's worst value (module :func:`copy_paste_score`).
CPS_WORST = 1.0


def face_detection_failure(n_faces: int | float | None) -> float:
    """FDFR indicator of one generated image: 1.0 when the analyzer found no face, else 0.0.

    ``None`` / NaN (the image was not analysed: missing or undecodable) is a detection failure too
    (DESIGN §6.10), so a failure never lowers the rate. The run's FDFR = the mean of the indicators.

    >>> [face_detection_failure(n) for n in (0, 1, 3, None)]
    [1.0, 0.0, 0.0, 1.0]
    """
    if n_faces is None or (isinstance(n_faces, float) and np.isnan(n_faces)):
        return 1.0
    return 0.0 if int(n_faces) > 0 else 1.0


def copy_paste_score(
    generated: np.ndarray | None, references: Sequence[np.ndarray | None], own: int
) -> tuple[float, float, str]:
    """CPS of one image (DESIGN §6.11): ``IPS(g, x) − mean_{r ∈ R(s) \\ {x}} IPS(g, r)``.

    Lower is better: a generator that pastes the input photo scores IPS(g, x) ≈ 1 against the
    natural same-person similarity of the other photos (CPS ≈ 1 − that similarity); one that renders
    the person anew scores ≈ 0 (as close to the input photo as to any other photo of the person).

    Args:
        generated: (n, D) embeddings of the generated image's faces (n may be 0).
        references: per photo of the subject, its (m, D) face embeddings; ``None`` / empty = no face
            or undecodable.
        own: index of the job's input photo x in ``references``.

    Returns:
        ``(cps, cps_raw, reason)``:

        - ``cps_raw`` — the definition where it is defined, else NaN;
        - ``cps`` — the value used for aggregation: ``cps_raw``; **the worst value** :data:`CPS_WORST`
          when the generated image has no face (a method must not lower its CPS by failing to
          produce faces: with 0 it would look like a perfect non-copier, with NaN it could drop its
          copied images selectively); NaN where CPS is undefined for the *job* whatever the image
          (fewer than 2 photos of the subject, no face on the input photo, no face on any other
          photo) — the same for every method on the same jobs, counted as ``undefined``;
        - ``reason`` — ``"ok"``, ``"no_face_generated"``, ``"single_photo"``, ``"no_face_reference"``
          or ``"no_face_reference_other"`` (no other photo has a face).

    Other photos without a face are left out of the mean (as SIS does).

    >>> g = np.array([[1.0, 0.0]])
    >>> [round(v, 6) for v in copy_paste_score(g, [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]])], own=0)[:2]]
    [0.4, 0.4]
    >>> copy_paste_score(np.zeros((0, 2)), [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]])], own=0)[0]
    1.0
    """
    nan = float("nan")
    if len(references) < 2:
        return nan, nan, "single_photo"
    has_face = [r is not None and len(_as_faces(r)) > 0 for r in references]
    if not has_face[own]:
        return nan, nan, NO_FACE_REFERENCE
    others = [r for k, (r, ok) in enumerate(zip(references, has_face)) if ok and k != own]
    if not others:
        return nan, nan, NO_FACE_REFERENCE_OTHER
    if len(_as_faces(generated)) == 0:
        return CPS_WORST, nan, NO_FACE_GENERATED
    ips_own = identity_preservation(generated, references[own])[0]
    ips_others = float(np.mean([identity_preservation(generated, r)[0] for r in others]))
    value = ips_own - ips_others
    return value, value, OK
