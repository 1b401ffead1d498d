"""Dataset-level numbers of a run: ONE function over the per-image table (DESIGN §6.10, issue 9.3).

``summary.json`` (the engine's finalisation) and every table of ``stellar report`` (overall, per prompt
kind, per category) call :func:`aggregate` on rows of ``per_image.parquet``, so a number can never
differ between the two, and anyone can recompute it from the Parquet file alone.

The row rule (one for every table):

- a metric's value = the mean of the non-NaN values of its column. The engine has already applied the
  exclusion rule and the failure rule to the column (DESIGN §6.10: a failed job holds the metric's
  ``failure_value``; NaN only where the metric is undefined, or for failures under ``--partial``);
- APS = the mean over attributes A (with both classes among the counted rows) of ROC-AUC(``aps_label_A``,
  ``aps_pred_A``), counting the rows with a known label (≠ 0) and a prediction (≠ 0). The predictions
  come from probes fit once on the whole run, so a subset's APS is the AUC of the same predictions on
  that subset (probes are not refit per table);
- counts: ``missing`` (status ``missing``), ``undecodable`` (``decode_error``), ``reference_failures``
  (``reference_decode_error``), ``no_face`` (``no_face_generated``), ``no_face_reference`` and
  ``no_face_reference_other``, ``excluded`` (``followed_prompt`` is False); ``evaluated`` = rows with a
  decodable generated image; coverage = evaluated / expected jobs.

Pure functions: no model, no disk.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from stellar.metrics.base import METRICS, split_variant, variant_name
from stellar.metrics.identity import aps_from_predictions

#: CelebA attributes APS probes (DESIGN §6.3); kept here so this module needs no data layer.
APS_ATTRIBUTES = ("Young", "Male", "High_Cheekbones", "Pointy_Nose", "Narrow_Eyes", "Double_Chin", "Big_Lips", "Big_Nose")
APS_LABEL = "aps_label_"
APS_PRED = "aps_pred_"
#: Statuses of a job that has no decodable generated image.
IMAGE_FAILURES = ("missing", "decode_error")
COUNTS = ("evaluated", "missing", "undecodable", "reference_failures", "no_face", "no_face_reference", "no_face_reference_other", "excluded")


def _mean(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def aps_columns(frame: pd.DataFrame, variant: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """``(attributes, labels (N, A), predictions (N, A))`` from the ``aps_label_*`` / ``aps_pred_*`` columns.

    ``variant``: a face preset of a several-preset run (``aps@paper``): its ``aps_pred_A@paper`` columns,
    with ``aps_label_A@paper`` where the finaliser wrote one (``--partial``), else the shared labels.
    """
    def label(a: str) -> str:
        named = variant_name(f"{APS_LABEL}{a}", variant)
        return named if named in frame else f"{APS_LABEL}{a}"

    attrs = [a for a in APS_ATTRIBUTES if label(a) in frame and variant_name(f"{APS_PRED}{a}", variant) in frame]
    if not attrs:
        return None
    labels = np.stack([frame[label(a)].to_numpy(dtype=np.int64) for a in attrs], axis=1) if len(frame) else np.zeros((0, len(attrs)), np.int64)
    preds = np.stack([frame[variant_name(f"{APS_PRED}{a}", variant)].to_numpy(dtype=np.int64) for a in attrs], axis=1) if len(frame) else np.zeros((0, len(attrs)), np.int64)
    return attrs, labels, preds


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """The failure / diagnosis counts of a set of rows (see the module docstring)."""
    status = frame["status"] if "status" in frame else pd.Series([], dtype=object)
    excluded = int((frame["followed_prompt"] == False).sum()) if "followed_prompt" in frame else 0  # noqa: E712
    return {
        "evaluated": int((~status.isin(IMAGE_FAILURES)).sum()),
        "missing": int((status == "missing").sum()),
        "undecodable": int((status == "decode_error").sum()),
        "reference_failures": int((status == "reference_decode_error").sum()),
        "no_face": int((status == "no_face_generated").sum()),
        "no_face_reference": int((status == "no_face_reference").sum()),
        "no_face_reference_other": int((status == "no_face_reference_other").sum()),
        "excluded": excluded,
    }


def aggregate(frame: pd.DataFrame, metrics: Sequence[str], *, expected: int | None = None) -> dict:
    """Every dataset-level number of the rows ``frame`` (one row rule, module docstring).

    Args:
        frame: rows of ``per_image.parquet`` (all of them, or a kind / category subset).
        metrics: the run's metrics (image-level ones are column means; ``aps`` from the APS columns).
        expected: the number of jobs these rows stand for (coverage); default: the number of rows
            (right under the default failure rule, where every expected job has a row).

    Returns:
        ``{"rows", "means": {metric: value or None}, "undefined": {metric: NaN count},
        "aps": {"score", "per_attribute", "skipped"} (when asked), "counts": {...},
        "coverage": {"evaluated", "expected", "fraction"}}``.
    """
    out: dict = {"rows": int(len(frame)), "means": {}, "undefined": {}}
    for m in metrics:
        info = METRICS.get(m)
        if split_variant(m)[0] == "aps" or (info is not None and info.level != "image"):
            continue
        if m not in frame:
            out["means"][m] = None
            continue
        out["means"][m] = _mean(frame[m])
        nan = int(pd.to_numeric(frame[m], errors="coerce").isna().sum())
        if nan:
            out["undefined"][m] = nan
    if "aps" in metrics:
        cols = aps_columns(frame)
        if cols is None:
            out["aps"] = {"score": None, "per_attribute": {}, "skipped": {"*": "no APS columns in the table"}}
        else:
            attrs, labels, preds = cols
            score, per, skipped = aps_from_predictions(labels, preds, attrs)
            out["aps"] = {"score": None if not math.isfinite(score) else score, "per_attribute": per, "skipped": skipped}
        out["means"]["aps"] = out["aps"]["score"]
    for m in metrics:  # several face presets: aps@PRESET from that preset's prediction columns
        base, variant = split_variant(m)
        if base != "aps" or variant is None:
            continue
        cols = aps_columns(frame, variant)
        if cols is None:
            out[m] = {"score": None, "per_attribute": {}, "skipped": {"*": f"no APS columns of face preset {variant}"}}
        else:
            score, per, skipped = aps_from_predictions(cols[1], cols[2], cols[0])
            out[m] = {"score": None if not math.isfinite(score) else score, "per_attribute": per, "skipped": skipped}
        out["means"][m] = out[m]["score"]
    c = counts(frame)
    out["counts"] = c
    exp = int(len(frame)) if expected is None else int(expected)
    out["coverage"] = {"evaluated": c["evaluated"], "expected": exp, "fraction": (c["evaluated"] / exp) if exp else None}
    return out


def categories(frame: pd.DataFrame) -> list[str]:
    """The Stellar-T categories present in the table, sorted (a job counts in each of its prompt's)."""
    if "categories" not in frame:
        return []
    return sorted({c for cs in frame["categories"] for c in (cs if cs is not None else [])})


def category_mask(frame: pd.DataFrame, category: str) -> pd.Series:
    """Rows whose prompt has ``category`` (an image counts for each category of its prompt)."""
    return frame["categories"].map(lambda cs: cs is not None and category in list(cs))


def summarize(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    expected: int | None = None,
    expected_by_kind: dict[str, int] | None = None,
    expected_by_category: dict[str, int] | None = None,
) -> dict:
    """:func:`aggregate` overall, per prompt kind and per category: ``{"overall", "by_kind", "by_category"}``."""
    exp_k = expected_by_kind or {}
    exp_c = expected_by_category or {}
    kinds: Iterable[str] = sorted(set(frame["kind"]) | set(exp_k)) if "kind" in frame else []
    return {
        "overall": aggregate(frame, metrics, expected=expected),
        "by_kind": {k: aggregate(frame[frame["kind"] == k], metrics, expected=exp_k.get(k)) for k in kinds},
        "by_category": {
            c: aggregate(frame[category_mask(frame, c)], metrics, expected=exp_c.get(c)) for c in sorted(set(categories(frame)) | set(exp_c))
        },
    }
