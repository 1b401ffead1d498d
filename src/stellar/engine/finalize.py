"""Finalisation: part files -> ``per_image.parquet`` -> ``summary.json`` (DESIGN §6.4, §6.10, §7).

Dataset-level finalisers are **pure functions of the per-image table** (plus the run's reference
table, one row per input photo): each takes ``(frame, context)`` and returns the columns it sets and
the summary entries it adds; the engine applies them in order. Built in, in this order:

1. ``exclusion`` — σ over the evaluated images' CLIP_N, ``followed_prompt`` (DESIGN §6.4);
2. ``identity`` — IPS / SIS after exclusion from ``ips_raw`` / ``sis_raw``;
3. ``aps`` — the attribute probes fit on the input photos' largest-face embeddings (``reference.parquet``),
   hard predictions on the generated faces, ``aps_pred_A`` / ``aps_image`` (labels ``aps_label_A`` are
   row columns written by the engine);
4. ``failure`` — the failure rule (DESIGN §6.10) on every per-image metric column.

A plug-in metric with a dataset-level part adds a finaliser with :func:`register_finalizer`. Every
number of ``summary.json`` then comes from :func:`stellar.metrics.aggregate.summarize` over the final
table (the function ``stellar report`` uses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from stellar.data.dataset import Job
from stellar.engine.store import ResultsStore, atomic_write_parquet
from stellar.errors import StellarError
from stellar.metrics import aggregate as agg
from stellar.metrics import identity as idm
from stellar.metrics.base import METRICS, failure_value, split_variant

IMAGE_FAILURES = agg.IMAGE_FAILURES
REFERENCE_FAILURE = "reference_decode_error"
COUNTER_KEYS = ("face_passes_generated", "face_passes_reference", "clip_image_passes", "generated_images")


@dataclass
class FinalizeContext:
    """What a finaliser may read besides the table: the run's metadata and reference table."""

    run: dict
    metrics: list[str]
    failure_rule: str
    reference: pd.DataFrame | None = None


@dataclass(frozen=True)
class Finalizer:
    name: str
    applies: Callable[[Sequence[str]], bool]  # on the run's metrics
    compute: Callable[[pd.DataFrame, FinalizeContext], tuple[dict, dict]]  # -> (columns, summary entries)
    description: str = ""


def needs_reference(metric: str) -> bool:
    info = METRICS.get(metric)
    return info is not None and bool({"reference", "references"} & set(info.needs))


def exclusion(frame: pd.DataFrame, ctx: FinalizeContext) -> tuple[dict, dict]:
    """The exclusion rule over the evaluated rows: ``followed_prompt`` and the summary's ``exclusion``."""
    valid = frame["clip_n"].notna() & frame["clip_t"].notna() & ~frame["status"].isin(IMAGE_FAILURES)
    rule = ctx.run.get("exclusion_rule", "not applied: unknown")
    none = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if rule != "applied":
        return {"followed_prompt": none}, {"exclusion": {"applied": False, "reason": rule.removeprefix("not applied: ")}}
    if valid.sum() < 2:
        return {"followed_prompt": none}, {"exclusion": {"applied": False, "reason": f"σ needs CLIP values of at least 2 images, {int(valid.sum())} have them"}}
    sigma = idm.exclusion_threshold(frame.loc[valid, "clip_n"].to_numpy())
    followed = np.ones(len(frame), dtype=bool)
    followed[valid.to_numpy()] = idm.followed_prompt(frame.loc[valid, "clip_t"].to_numpy(), frame.loc[valid, "clip_n"].to_numpy(), sigma)
    col = pd.Series(np.where(valid, followed, None), index=frame.index, dtype=object)
    return {"followed_prompt": col}, {"exclusion": {"applied": True, "sigma": sigma, "margin": 2 * sigma, "excluded": int((valid & ~followed).sum())}}


def _followed(frame: pd.DataFrame) -> np.ndarray | None:
    """``followed_prompt`` as a bool array (rows without a decision count as followed); None = rule not applied."""
    if "followed_prompt" not in frame or frame["followed_prompt"].isna().all():
        return None
    def decided(v) -> bool:
        return True if v is None or (isinstance(v, float) and np.isnan(v)) else bool(v)

    return frame["followed_prompt"].map(decided).to_numpy(dtype=bool)


def identity_after_exclusion(frame: pd.DataFrame, ctx: FinalizeContext) -> tuple[dict, dict]:
    followed = _followed(frame)
    cols = {}
    for m in ("ips", "sis"):
        if m in ctx.metrics:
            raw = frame[f"{m}_raw"].to_numpy(dtype=float)
            cols[m] = np.where(np.isnan(raw), np.nan, idm.apply_exclusion(np.nan_to_num(raw), followed))
    return cols, {}


def attribute_probes(frame: pd.DataFrame, ctx: FinalizeContext) -> tuple[dict, dict]:
    """APS predictions: probes fit on the table's input photos, predictions on its generated faces."""
    ref_by_photo = {}
    if ctx.reference is not None:
        for s, p, e in zip(ctx.reference["subject"], ctx.reference["photo"], ctx.reference["face_embedding"]):
            ref_by_photo[(s, int(p))] = None if e is None else np.asarray(e, np.float64)
    dim = next((len(e) for e in ref_by_photo.values() if e is not None), None)
    if dim is None:
        dim = next((len(e) for e in frame["face_embedding"] if e is not None), 1)
    n = len(frame)
    ref = np.full((n, dim), np.nan)
    gen = np.full((n, dim), np.nan)
    failed = frame["status"].isin(IMAGE_FAILURES).to_numpy()
    for k, (s, p, e) in enumerate(zip(frame["subject"], frame["photo"], frame["face_embedding"])):
        r = ref_by_photo.get((s, int(p)))
        if r is not None:
            ref[k] = r
        if e is not None and not failed[k]:
            gen[k] = np.asarray(e, np.float64)
    attrs = list(agg.APS_ATTRIBUTES)
    labels = np.stack([frame[f"{agg.APS_LABEL}{a}"].to_numpy(dtype=np.int64) for a in attrs], axis=1)
    ids = [f"{s}/{p}" for s, p in zip(frame["subject"], frame["photo"])]
    res = idm.attribute_preservation(ref, labels, gen, attrs, photo_ids=ids, followed=_followed(frame))
    preds, per_image = res.predictions.copy(), res.per_image.copy()
    cols: dict[str, object] = {}
    if ctx.failure_rule == "partial":  # failures are left out, not counted wrong: label and prediction 0 (unknown)
        preds[failed] = 0
        labels[failed] = 0
        per_image[failed] = np.nan
        cols.update({f"{agg.APS_LABEL}{a}": labels[:, k].astype(np.int8) for k, a in enumerate(attrs)})
    # an attribute without a probe (fewer than two classes among the input photos with a face) has no
    # prediction column, so every reader of the table (aggregate, stats) leaves it out the same way
    cols.update({f"{agg.APS_PRED}{a}": preds[:, k].astype(np.int8) for k, a in enumerate(attrs) if a in res.per_attribute})
    cols["aps_image"] = per_image
    return cols, ({"aps_probes": {"skipped": res.skipped}} if res.skipped else {})


def face_variants(metrics: Sequence[str]) -> list[str]:
    """The face presets of a several-preset run, in order (``ips@paper``, ``ips@arcface`` -> paper, arcface)."""
    return list(dict.fromkeys(v for m in metrics for v in [split_variant(m)[1]] if v is not None))


def per_face_preset(frame: pd.DataFrame, ctx: FinalizeContext) -> tuple[dict, dict]:
    """Several face presets (issue 12): the ``identity`` and ``aps`` finalisers once per preset, each on
    the table with that preset's ``COLUMN@preset`` columns under their plain names (and the reference
    table's ``face_embedding@preset``); their outputs come back named ``COLUMN@preset``. The exclusion
    rule (CLIP) is the same for every preset; the failure rule then handles ``ips@paper`` like ``ips``."""
    cols: dict = {}
    entries: dict = {}
    for v in face_variants(ctx.metrics):
        suffix = f"@{v}"
        mine = [split_variant(m)[0] for m in ctx.metrics if split_variant(m)[1] == v]
        sub = frame.rename(columns={c: c[: -len(suffix)] for c in frame.columns if c.endswith(suffix)})
        sub = sub.loc[:, ~sub.columns.duplicated(keep="last")]
        ref = ctx.reference
        if ref is not None:
            ref = ref.rename(columns={c: c[: -len(suffix)] for c in ref.columns if c.endswith(suffix)})
            ref = ref.loc[:, ~ref.columns.duplicated(keep="last")]
        sub_ctx = FinalizeContext(ctx.run, mine, ctx.failure_rule, ref)
        for f in (identity_after_exclusion, attribute_probes):
            if f is attribute_probes and "aps" not in mine:
                continue
            got, add = f(sub, sub_ctx)
            for name, values in got.items():
                cols[f"{name}{suffix}"] = values
            if add:
                entries.setdefault("face_presets", {}).setdefault(v, {}).update(add)
    return cols, entries


def failure_rule(frame: pd.DataFrame, ctx: FinalizeContext) -> tuple[dict, dict]:
    """DESIGN §6.10 on the final metric columns: a failed job holds the metric's failure value (NaN: --partial)."""
    status = frame["status"]
    kinds = frame["kind"].to_numpy()
    cols = {}
    for m in ctx.metrics:
        if m not in frame or METRICS[m].level != "image":
            continue
        # face metrics come from the face scorer, which needs the input photo: on a reference failure
        # FDFR is not measured either, so it scores its failure value too
        failed = status.isin(IMAGE_FAILURES) | ((status == REFERENCE_FAILURE) & (needs_reference(m) or "faces" in METRICS[m].models))
        if not failed.any():
            continue
        values = frame[m].to_numpy(dtype=float).copy()
        idx = np.flatnonzero(failed.to_numpy())
        values[idx] = np.nan if ctx.failure_rule == "partial" else [failure_value(m, kinds[k]) for k in idx]
        cols[m] = values
    return cols, {}


FINALIZERS: list[Finalizer] = [
    Finalizer("exclusion", lambda ms: True, exclusion, "exclusion rule: σ of CLIP_N, followed_prompt"),
    Finalizer("identity", lambda ms: "ips" in ms or "sis" in ms, identity_after_exclusion, "IPS/SIS after exclusion"),
    Finalizer("aps", lambda ms: "aps" in ms, attribute_probes, "APS probes on the input photos, predictions on the generated faces"),
    Finalizer("face_presets", lambda ms: bool(face_variants(ms)), per_face_preset, "IPS/SIS after exclusion and APS probes once per face preset"),
    Finalizer("failure", lambda ms: True, failure_rule, "failure rule on every per-image metric"),
]


def register_finalizer(finalizer: Finalizer, *, before: str = "failure") -> None:
    """Add a dataset-level finaliser (a plug-in's), by default just before the failure rule."""
    if any(f.name == finalizer.name for f in FINALIZERS):
        raise ValueError(f"finaliser {finalizer.name!r} already registered")
    at = next((k for k, f in enumerate(FINALIZERS) if f.name == before), len(FINALIZERS))
    FINALIZERS.insert(at, finalizer)


def finalizers_for(metrics: Sequence[str]) -> list[Finalizer]:
    return [f for f in FINALIZERS if f.applies(metrics)]


def in_job_order(frame: pd.DataFrame, expected: Sequence[Job] | None, out: Path) -> pd.DataFrame:
    """Rows of the expected jobs in job order (O(N): one dict, one set — issue 9.21)."""
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


def merged_counters(out: Path) -> dict:
    """Model passes summed over every shard's counters (``parts/<shard>.counters.json``)."""
    total = {k: 0 for k in COUNTER_KEYS}
    for f in sorted((out / "parts").glob("*.counters.json")):
        try:
            for k, v in json.loads(f.read_text()).items():
                total[k] = total.get(k, 0) + int(v)
        except (OSError, ValueError, TypeError):
            continue
    if total.get("generated_images"):
        total["face_passes_per_generated_image"] = (total["face_passes_generated"] + total["face_passes_reference"]) / total["generated_images"]
    return total


def finalize_table(frame: pd.DataFrame, ctx: FinalizeContext) -> tuple[pd.DataFrame, dict]:
    """Every finaliser in order over ``frame`` (a new frame) -> (final table, their summary entries)."""
    frame = frame.copy()
    if ctx.failure_rule == "partial":
        frame = frame[frame["status"] != "missing"].reset_index(drop=True)
    for a in agg.APS_ATTRIBUTES:  # the contract's dtype: int8 ±1, 0 = unknown
        if f"{agg.APS_LABEL}{a}" in frame:
            frame[f"{agg.APS_LABEL}{a}"] = frame[f"{agg.APS_LABEL}{a}"].fillna(0).astype(np.int8)
    entries: dict = {}
    for f in finalizers_for(ctx.metrics):
        cols, add = f.compute(frame, ctx)
        for name, values in cols.items():
            frame[name] = values
        entries.update(add)
    for m in ("clip_t", "clip_i"):
        if m not in ctx.metrics and m in frame:
            frame = frame.drop(columns=[m])
    if face_variants(ctx.metrics):  # several presets: the plain face columns were never filled
        frame = frame.drop(columns=[c for c in ("ips_raw", "sis_raw", "n_faces_generated", "n_faces_reference", "face_score", "face_boxes", "face_embedding") if c in frame])
    return frame, entries


def finalize_run(out: str | Path, dataset=None, *, expected: Sequence[Job] | None = None, counters=None, extra: dict | None = None) -> dict:
    """Merge the part files into ``per_image.parquet``; every dataset-level number into ``summary.json``.

    ``dataset`` is only read for parts written before the APS labels were row columns. ``counters``
    (a ``RunCounters``) overrides the shards' summed counters.
    """
    out = Path(out)
    run = json.loads((out / "run.json").read_text())
    metrics = run["metrics"]
    rule = run.get("failure_rule", "worst")
    store = ResultsStore(out)
    frame = store.read_parts()
    reference_file = store.merge_reference()
    if not len(frame):
        raise StellarError(f"{out}: no evaluated images (nothing matched the jobs?)")
    frame = in_job_order(frame, expected, out)
    for col in ("image", "image_sha256", "face_boxes"):  # an all-null part reads back as NaN: null is None
        if col in frame:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    if rule == "partial" and not (frame["status"] != "missing").any():
        raise StellarError(f"{out}: no job has an image (nothing matched the jobs?)")
    missing_labels = [a for a in agg.APS_ATTRIBUTES if f"{agg.APS_LABEL}{a}" not in frame]
    if missing_labels and dataset is not None:  # parts written before the labels were row columns
        labels = {(s, p.index): p.attributes for s in set(frame["subject"]) for p in dataset.subject(s).photos}
        for a in missing_labels:
            frame[f"{agg.APS_LABEL}{a}"] = [int(labels.get((s, int(p)), {}).get(a, 0)) for s, p in zip(frame["subject"], frame["photo"])]
    reference = pd.read_parquet(reference_file) if reference_file is not None else None
    frame, entries = finalize_table(frame, FinalizeContext(run, metrics, rule, reference))

    jobs = run.get("jobs") or {}
    tables = agg.summarize(frame, metrics, expected=jobs.get("expected"), expected_by_kind=jobs.get("by_kind"), expected_by_category=jobs.get("by_category"))
    overall = tables["overall"]
    summary: dict = {
        "method": run["method"],
        "failure_rule": rule,
        "failure_rule_note": "mean over the jobs that have an image (--partial)" if rule == "partial" else "failed jobs score each metric's worst value",
        "n_jobs": int(len(frame)),
        "status_counts": frame["status"].value_counts().to_dict(),
        **entries,
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
    summary["model_passes"] = merged_counters(out)
    if counters is not None:
        from dataclasses import asdict

        summary["model_passes"] = {**summary["model_passes"], **asdict(counters)}
    summary["models"] = run["models"]
    summary.update(extra or {})
    atomic_write_parquet(out / "per_image.parquet", frame.drop(columns=[c for c in frame.columns if split_variant(c)[0] == "face_embedding"]))
    store.write_json("summary.json", summary)
    return summary
