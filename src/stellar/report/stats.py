"""Uncertainty and paired comparisons of runs (DESIGN §6.12); reads results files only, never models.

Everything here works on ``per_image.parquet`` tables (the results contract): one row per expected
job, keys ``name``/``subject``/``kind``/``categories``, one column per image-level metric (NaN only
where the metric is undefined for that job) and, for APS, ``aps_label_A`` / ``aps_pred_A`` (±1,
0 = unknown label / no prediction) for each attribute ``A``. The statistic of every replicate is the
one :func:`stellar.metrics.aggregate.aggregate` computes for the tables (the same row rule: a mean
over the finite values of a column; APS over the rows whose label and prediction are both non-zero),
so each point estimate here equals the table's number.

**Resampling unit.** The jobs of one identity are correlated (same face, same photos), so the
default unit is the *subject*: a replicate draws ``U`` subjects with replacement from the ``U``
subjects of the table and keeps all of their jobs (cluster bootstrap). ``resample="job"`` draws
rows instead (the classical bootstrap; too narrow when jobs within a subject are correlated).

**Vectorisation.** A replicate is a vector of draw counts ``c`` over units (``c_u`` = how often
unit ``u`` was drawn; built from one ``rng.integers`` index array per chunk of replicates and a
``bincount``). Every statistic here is a ratio of sums over units, so with per-unit sums
``S_u = Σ_{j∈u, x_j defined} x_j`` and counts ``K_u = #{j∈u : x_j defined}``:

    mean_b = (c_b · S) / (c_b · K)                                       (NaN-aware mean)

one matrix product for all replicates and metrics. Memory is O(chunk × U); no per-replicate or
per-image Python loop.

**APS** (dataset level) is bootstrapped with the probes fixed: the hard predictions on the
generated images are resampled. For binary scores the ROC-AUC equals the balanced accuracy,

    AUC = (TPR + TNR) / 2,  TPR = TP / P,  TNR = TN / N

(the ROC curve of a ±1 score has one inner point (FPR, TPR); the trapezoid gives
(1 + TPR − FPR)/2 — the same value ``sklearn.metrics.roc_auc_score`` returns), so a replicate's
``TP, P, TN, N`` are again draw-count-weighted sums of per-unit counts. APS_b = mean over the
attributes that have both classes among the counted rows of the full table; an attribute whose
class vanishes from a replicate is left out of that replicate's mean.

**Intervals** are percentile intervals: the ``(1−ci)/2`` and ``(1+ci)/2`` quantiles (numpy's
default linear interpolation) of the replicate values; replicates where a statistic is undefined
(all drawn values NaN) are ignored.

**Paired comparison** of runs A and B on the same jobs: the same draw counts are applied to both
runs, so the interval of ``Δ = mean_A − mean_B`` reflects only the difference between methods.
The p-value is a paired sign-flip permutation test by unit: under H0 the two runs' values of a
subject are exchangeable, so each of the ``2^U`` ways of swapping whole subjects between A and B is
equally likely. With ``e ∈ {0,1}^U`` the swap indicators and per-unit sums of each run,

    mean_A(e) = (ΣS_A + e·(S_B − S_A)) / (ΣK_A + e·(K_B − K_A))     (and symmetrically for B)

    p = #{e : |Δ(e)| ≥ |Δ_obs|} / 2^U                              (exact, U ≤ 16)
    p = (1 + #{e_r : |Δ(e_r)| ≥ |Δ_obs|}) / (R + 1)                (R seeded Monte-Carlo draws)

Two runs with identical values give Δ(e) = 0 for every e, so p = 1. The p-values of all
(pair, metric) tests of one comparison are Holm-corrected (step-down:
``p_(i) ← max_{j≤i} min(1, (m − j + 1) p_(j))``); the verdict names the better run when the
corrected p is below ``1 − ci``. The *probability of being best* of a run for a metric is the
fraction of bootstrap replicates in which it has the best mean (direction from
:data:`stellar.metrics.METRICS`); a tie for first splits the replicate equally.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from stellar.errors import StellarError
from stellar.metrics import aggregate as agg
from stellar.metrics.aggregate import APS_ATTRIBUTES
from stellar.metrics.base import METRICS, split_variant

Resample = Literal["subject", "job"]

IMAGE_METRICS = tuple(m for m, info in METRICS.items() if info.level == "image")
#: Largest number of units for which the permutation test enumerates all 2^U swaps.
EXACT_MAX_UNITS = 16
_CHUNK_CELLS = 1 << 22  # draw-count cells per chunk of replicates (≈ 32 MiB of float64)


# ----------------------------------------------------------------------------------------- units
def unit_codes(frame: pd.DataFrame, resample: Resample = "subject") -> tuple[np.ndarray, int]:
    """Integer code of each row's resampling unit (``subject`` or ``job`` = row) and the number of units.

    Codes follow the order of first appearance, so they depend only on the table's row order.
    """
    if resample == "subject":
        if "subject" not in frame:
            raise StellarError("per_image table has no 'subject' column: not a Stellar-Bench results table")
        codes, uniques = pd.factorize(frame["subject"].astype(str), sort=False)
        return codes.astype(np.int64), len(uniques)
    if resample == "job":
        return np.arange(len(frame), dtype=np.int64), len(frame)
    raise StellarError(f"--resample {resample!r}: use subject or job")


def replicate_counts(n_units: int, n_replicates: int, seed: int) -> Iterator[np.ndarray]:
    """Draw counts of ``n_replicates`` bootstrap replicates over ``n_units`` units, in chunks.

    Yields float64 arrays ``(chunk, n_units)``; row ``b`` counts how often each unit was drawn in
    replicate ``b`` (``n_units`` draws with replacement). The stream depends only on
    ``(n_units, n_replicates, seed)`` — the chunk size is a function of ``n_units`` — so the same
    seed gives the same replicates on any machine.
    """
    if n_replicates < 1:
        raise StellarError(f"--bootstrap {n_replicates}: need at least 1 replicate")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_replicates, _CHUNK_CELLS // max(n_units, 1)))
    done = 0
    while done < n_replicates:
        c = min(chunk, n_replicates - done)
        idx = rng.integers(0, n_units, size=(c, n_units))
        flat = (idx + (np.arange(c) * n_units)[:, None]).ravel()
        yield np.bincount(flat, minlength=c * n_units).reshape(c, n_units).astype(np.float64)
        done += c


def _metric_values(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``(N, M)`` float values of metric columns (non-numeric entries → NaN, as ``metrics.aggregate`` reads them)."""
    if not columns:
        return np.zeros((len(frame), 0))
    return np.stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64) for c in columns], axis=1)


def _unit_sums(values: np.ndarray, codes: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sums of the defined values and their counts: ``(U, M)`` each, for ``values (N, M)``."""
    defined = np.isfinite(values)  # the row rule of metrics.aggregate: non-finite values are undefined
    return _sum_by_unit(np.where(defined, values, 0.0), codes, n_units), _sum_by_unit(defined, codes, n_units)


def _sum_by_unit(columns: np.ndarray, codes: np.ndarray, n_units: int) -> np.ndarray:
    """``out[u, k] = Σ_{rows j of unit u} columns[j, k]`` (one ``bincount`` per column)."""
    cols = np.asarray(columns, dtype=np.float64)
    out = np.zeros((n_units, cols.shape[1]))
    for k in range(cols.shape[1]):
        out[:, k] = np.bincount(codes, weights=cols[:, k], minlength=n_units)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# ------------------------------------------------------------------------------------------- APS
def aps_attributes(frame: pd.DataFrame) -> list[str]:
    """The APS attributes whose ``aps_label_A`` and ``aps_pred_A`` columns the table has."""
    return [a for a in APS_ATTRIBUTES if f"{agg.APS_LABEL}{a}" in frame and f"{agg.APS_PRED}{a}" in frame]


@dataclass
class _ApsCounts:
    """Per-unit confusion counts ``(U, A)``: positives, true positives, negatives, true negatives."""

    p: np.ndarray
    tp: np.ndarray
    n: np.ndarray
    tn: np.ndarray
    attributes: tuple[str, ...]
    used: np.ndarray  # (A,) bool: both classes present among the known labels of the full table

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """APS for each row of ``weights (B, U)``: mean over used attributes of (TPR + TNR) / 2."""
        tpr = _ratio(weights @ self.p_tp, weights @ self.p_p)
        tnr = _ratio(weights @ self.p_tn, weights @ self.p_n)
        per_attr = (tpr + tnr) / 2.0
        with np.errstate(invalid="ignore"):
            valid = ~np.isnan(per_attr)
            k = valid.sum(axis=1)
            return np.where(k > 0, np.where(valid, per_attr, 0.0).sum(axis=1) / np.maximum(k, 1), np.nan)

    # the used attributes only (unused ones never enter the mean)
    @functools.cached_property
    def p_p(self):
        return self.p[:, self.used]

    @functools.cached_property
    def p_tp(self):
        return self.tp[:, self.used]

    @functools.cached_property
    def p_n(self):
        return self.n[:, self.used]

    @functools.cached_property
    def p_tn(self):
        return self.tn[:, self.used]

    def stacked(self) -> np.ndarray:
        """``(U, 4A')`` per-unit counts of the used attributes: TP | P | TN | N."""
        return np.concatenate([self.p_tp, self.p_p, self.p_tn, self.p_n], axis=1)

    def aps_of_totals(self, totals: np.ndarray) -> np.ndarray:
        """APS from totals ``(R, 4A')`` laid out as :meth:`stacked`."""
        tp, p, tn, n = np.split(totals, 4, axis=1)
        return _nanmean_rows((_ratio(tp, p) + _ratio(tn, n)) / 2.0)


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(x)
    k = valid.sum(axis=1)
    return np.where(k > 0, np.where(valid, x, 0.0).sum(axis=1) / np.maximum(k, 1), np.nan)


def _aps_counts(frame: pd.DataFrame, codes: np.ndarray, n_units: int, variant: str | None = None) -> _ApsCounts | None:
    """Per-unit confusion counts under the row rule of :func:`stellar.metrics.aggregate.aggregate`:
    a row counts for an attribute when its label and its prediction are both non-zero. ``variant``:
    a face preset of a several-preset run (``aps@paper`` reads the ``aps_pred_A@paper`` columns)."""
    cols = agg.aps_columns(frame, variant)
    if cols is None:
        return None
    attrs, labels, preds = cols
    counted = (labels != 0) & (preds != 0)
    pos, neg = counted & (labels == 1), counted & (labels == -1)
    out = [_sum_by_unit(c, codes, n_units) for c in (pos, pos & (preds == 1), neg, neg & (preds == -1))]
    used = (out[0].sum(axis=0) > 0) & (out[2].sum(axis=0) > 0)
    return _ApsCounts(*out, attributes=tuple(attrs), used=used)


def aps_from_table(frame: pd.DataFrame) -> float:
    """APS of a results table from its ``aps_label_*``/``aps_pred_*`` columns (NaN without them).

    = mean over attributes with both classes among known labels of ROC-AUC(label, hard prediction),
    computed as (TPR + TNR) / 2 (equal to ``roc_auc_score`` for ±1 scores).
    """
    counts = _aps_counts(frame, np.zeros(len(frame), dtype=np.int64), 1)
    if counts is None or not counts.used.any():
        return float("nan")
    return float(counts.auc(np.ones((1, 1)))[0])


# ------------------------------------------------------------------------------------ intervals
@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    mean: float
    lo: float
    hi: float
    n: int  # defined values (images) behind the mean

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0


def percentile_interval(replicates: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` = the ``(1−ci)/2`` and ``(1+ci)/2`` quantiles of ``replicates (B, …)`` along axis 0, NaN-aware."""
    if not 0.0 < ci < 1.0:
        raise StellarError(f"--ci {ci}: use a level between 0 and 1, e.g. 0.95")
    reps = np.asarray(replicates, dtype=np.float64)
    lo = np.full(reps.shape[1:], np.nan)
    hi = np.full(reps.shape[1:], np.nan)
    ok = (~np.isnan(reps)).any(axis=0)
    if ok.any():
        q = np.nanquantile(reps[:, ok], [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi


def _is_aps(metric: str) -> bool:
    return split_variant(metric)[0] == "aps"


def _aps_presets(frame: pd.DataFrame) -> list[str]:
    """``aps@PRESET`` for each face preset of a several-preset run whose APS columns the table has."""
    presets = dict.fromkeys(split_variant(c)[1] for c in frame.columns if c.startswith(agg.APS_PRED) and split_variant(c)[1])
    return [f"aps@{v}" for v in presets if agg.aps_columns(frame, v) is not None]


def table_metrics(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> list[str]:
    """Image-level metric columns of the table (in :data:`METRICS` order), plus ``aps`` (and ``aps@PRESET``)
    when its columns exist."""
    if metrics is None:
        out = [m for m in IMAGE_METRICS if m in frame]
        out += [c for c in frame.columns if split_variant(c)[1] is not None and split_variant(c)[0] in IMAGE_METRICS]  # ips@paper, ... (issue 12)
        return out + (["aps"] if aps_attributes(frame) else []) + _aps_presets(frame)
    for m in metrics:
        if _is_aps(m) and m != "aps":
            if agg.aps_columns(frame, split_variant(m)[1]) is None:
                raise StellarError(f"metric {m!r}: the results table has no aps_pred_*@{split_variant(m)[1]} columns")
        elif m == "aps":
            if not aps_attributes(frame):
                raise StellarError("metric 'aps': the results table has no aps_label_*/aps_pred_* columns (re-run `stellar evaluate` with a version that writes them)")
        elif m not in frame:
            raise StellarError(f"metric {m!r} is not a column of the results table; columns: {', '.join(c for c in frame.columns if c in METRICS)}")
    return list(metrics)


def bootstrap_intervals(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resample: Resample = "subject",
) -> dict[str, Interval]:
    """Mean and percentile bootstrap interval of each metric of one results table (or a subset of rows).

    ``mean`` = mean of the non-NaN values of the column (the contract's aggregation); for ``aps``
    the probes-fixed AUC described in the module docstring. Deterministic for a given
    ``(table, seed, n_boot, resample)``.
    """
    metrics = table_metrics(frame, metrics)
    img = [m for m in metrics if not _is_aps(m)]
    codes, n_units = unit_codes(frame, resample)
    values = _metric_values(frame, img)
    sums, counts = _unit_sums(values, codes, n_units)
    aps_all = {m: _aps_counts(frame, codes, n_units, split_variant(m)[1]) for m in metrics if _is_aps(m)}
    aps_all = {m: a for m, a in aps_all.items() if a is not None}
    reps = []
    for w in replicate_counts(max(n_units, 1), n_boot, seed):
        if n_units == 0:
            w = np.zeros((len(w), 0))
        cols = [_ratio(w @ sums, w @ counts)]
        for aps in aps_all.values():
            cols.append(aps.auc(w)[:, None] if aps.used.any() else np.full((len(w), 1), np.nan))
        reps.append(np.concatenate(cols, axis=1))
    rep = np.concatenate(reps, axis=0)
    lo, hi = percentile_interval(rep, ci)
    point = list(_ratio(sums.sum(axis=0), counts.sum(axis=0)))
    ns = [int(c) for c in counts.sum(axis=0)]
    for aps in aps_all.values():
        point.append(float(aps.auc(np.ones((1, n_units)))[0]) if aps.used.any() and n_units else float("nan"))
        ns.append(len(frame))
    names = img + list(aps_all)
    return {m: Interval(float(point[i]), float(lo[i]), float(hi[i]), ns[i]) for i, m in enumerate(names)}


def interval_table(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    by: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resample: Resample = "subject",
) -> dict[str, dict[str, Interval]]:
    """Intervals of one run for the row groups of ``stellar report``: ``{group: {metric: Interval}}``.

    ``by=None`` → ``{"all": …}``; ``by="split"`` → one group per prompt kind (``T``, ``H``);
    ``by="category"`` → one group per Stellar-T category (a job counts in each category of its
    prompt). Each group is bootstrapped on its own rows with the same seed. Metrics missing from
    the table are left out.
    """
    metrics = [m for m in metrics if (_is_aps(m) and agg.aps_columns(frame, split_variant(m)[1]) is not None) or m in frame]
    kw = dict(n_boot=n_boot, seed=seed, ci=ci, resample=resample)
    return {g: bootstrap_intervals(f, metrics, **kw) for g, f in row_groups(frame, by).items()}


def row_groups(frame: pd.DataFrame, by: str | None) -> dict[str, pd.DataFrame]:
    """The row groups of a report table: ``None`` → ``{"all": frame}``; ``"split"`` → ``T``/``H`` (kinds
    present); ``"category"`` → one group per Stellar-T category (:func:`stellar.metrics.aggregate.category_mask`)."""
    if by is None:
        return {"all": frame}
    if by == "split":
        return {k: frame[frame["kind"] == k] for k in ("T", "H") if (frame["kind"] == k).any()}
    if by == "category":
        return {c: frame[agg.category_mask(frame, c).to_numpy(dtype=bool)] for c in agg.categories(frame)}
    raise StellarError(f"--by {by!r}: use split or category")


# ------------------------------------------------------------------------------------- compare
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return list(out)
    order = idx[np.argsort(p[idx], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return [float(x) for x in out]


def _describe_models(run: dict, roles: set[str]) -> dict:
    models = run.get("models") or {}
    return {r: models.get(r) for r in sorted(roles) if r in models}


def check_comparable(runs: Sequence, metrics: Sequence[str]) -> None:
    """Refuse runs that were not evaluated on the same jobs under the same rules and model protocols.

    Checks, against the first run: the set of job names of ``per_image.parquet``, the dataset
    fingerprint, the failure rule (``partial`` when run.json predates it), whether the exclusion
    rule was applied (when a compared metric is subject to it) and the models of the roles the
    compared metrics use. The error names the two runs and the difference.
    """
    base = runs[0]
    roles = {r for m in metrics for r in (METRICS[m].models if m in METRICS else ())}
    base_jobs = set(base.per_image["name"])
    for r in runs[1:]:
        jobs = set(r.per_image["name"])
        if jobs != base_jobs:
            only_a, only_b = sorted(base_jobs - jobs), sorted(jobs - base_jobs)
            raise StellarError(
                f"runs {base.name} and {r.name} were not evaluated on the same jobs: {len(only_a)} job(s) only in {base.name}"
                f"{' (e.g. ' + ', '.join(only_a[:3]) + ')' if only_a else ''}, {len(only_b)} only in {r.name}"
                f"{' (e.g. ' + ', '.join(only_b[:3]) + ')' if only_b else ''}\n  fix: evaluate both on the same dataset split and job set"
            )
        fa = (base.run.get("dataset") or {}).get("fingerprint")
        fb = (r.run.get("dataset") or {}).get("fingerprint")
        if fa != fb:
            raise StellarError(f"runs {base.name} and {r.name} come from different datasets: fingerprint {fa} ({base.path}) vs {fb} ({r.path})")
        # runs written before the failure rule existed averaged over what existed (as the report reads them)
        ra, rb = base.run.get("failure_rule", "partial"), r.run.get("failure_rule", "partial")
        if ra != rb:
            raise StellarError(f"runs {base.name} and {r.name} use different failure rules: {ra} vs {rb}\n  fix: re-evaluate one of them with the other's rule (--partial or not)")
        if any(METRICS[m].exclusion_applies for m in metrics if m in METRICS):
            ea = bool((base.summary.get("exclusion") or {}).get("applied"))
            eb = bool((r.summary.get("exclusion") or {}).get("applied"))
            if ea != eb:
                on, off = (base, r) if ea else (r, base)
                raise StellarError(
                    f"runs {base.name} and {r.name}: the exclusion rule was applied in {on.name} but not in {off.name}, so their identity metrics are not comparable\n"
                    f"  fix: evaluate {off.name} with a CLIP model (--clip) or compare only metrics the rule does not touch (--metrics clip_t,…)"
                )
        ma, mb = _describe_models(base.run, roles), _describe_models(r.run, roles)
        if ma != mb:
            diff = [f"{k}: {ma.get(k)} vs {mb.get(k)}" for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]
            raise StellarError(f"runs {base.name} and {r.name} used different model protocols ({'; '.join(diff)})\n  fix: evaluate both with the same --faces / model options")


@dataclass
class Comparison:
    """Result of :func:`compare_runs`: paired differences and probabilities of being best."""

    runs: list[str]
    metrics: list[str]
    pairs: pd.DataFrame  # one row per (pair, metric)
    best: pd.DataFrame  # one row per metric, one column per run
    settings: dict = field(default_factory=dict)

    def to_json(self) -> str:
        def clean(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        return json.dumps(
            {
                "settings": self.settings,
                "runs": self.runs,
                "pairs": [{k: clean(v) for k, v in row.items()} for row in self.pairs.to_dict("records")],
                "probability_best": [{k: clean(v) for k, v in row.items()} for row in self.best.to_dict("records")],
            },
            indent=2,
            ensure_ascii=False,
        ) + "\n"

    def to_csv(self) -> str:
        return self.pairs.to_csv(index=False, float_format="%.6g", lineterminator="\n") + "\n" + self.best.to_csv(index=False, float_format="%.6g", lineterminator="\n")

    def to_markdown(self) -> str:
        s = self.settings
        lvl = int(round(s["ci"] * 100))
        lines = [
            "### Paired differences",
            "",
            f"Δ = mean(A) − mean(B) with its {lvl} % bootstrap interval ({s['bootstrap']} replicates, resampling {s['resample']}s, seed {s['seed']}); "
            f"p = paired sign-flip permutation test by {s['resample']} ({s['permutation']}), Holm-corrected over {s['tests']} test(s).",
            "",
            "| A | B | metric | A | B | Δ | CI | p | p (Holm) | verdict |",
            "|---|---|---|---:|---:|---:|---|---:|---:|---|",
        ]

        def f(v, d=4):
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"

        for r in self.pairs.to_dict("records"):
            lines.append(
                f"| {r['a']} | {r['b']} | {_display(r['metric'])} | {f(r['mean_a'])} | {f(r['mean_b'])} | {f(r['diff'])} | "
                f"[{f(r['diff_lo'])}, {f(r['diff_hi'])}] | {f(r['p'])} | {f(r['p_holm'])} | {r['verdict']} |"
            )
        lines += ["", "### Probability of being best", "", "Fraction of bootstrap replicates in which each run has the best mean (ties share).", ""]
        lines.append("| metric | " + " | ".join(self.runs) + " |")
        lines.append("|---|" + "---:|" * len(self.runs))
        for r in self.best.to_dict("records"):
            lines.append(f"| {_display(r['metric'])} | " + " | ".join(f(r[n], 3) for n in self.runs) + " |")
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        if fmt == "md":
            return self.to_markdown()
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return self.to_json()
        raise StellarError(f"--format {fmt!r}: use md, csv or json")


def _display(metric: str) -> str:
    info = METRICS.get(metric)
    return f"{info.display_name} {'↑' if info.higher_is_better else '↓'}" if info else metric


def _swap_chunks(n_units: int, permutations: int, seed: int) -> tuple[Iterator[np.ndarray], bool]:
    """Swap indicator vectors ``(chunk, U)`` in {0, 1}: all ``2^U`` (exact) when ``U ≤ EXACT_MAX_UNITS``,
    else ``permutations`` seeded random ones, in chunks of bounded size (memory O(chunk · U))."""
    if n_units <= EXACT_MAX_UNITS:
        grid = (np.arange(2**n_units)[:, None] >> np.arange(n_units)[None, :]) & 1
        return iter([grid.astype(np.float64)]), True

    def draws() -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, 0x5157])  # a stream of its own: independent of the bootstrap's
        chunk = max(1, _CHUNK_CELLS // n_units)
        done = 0
        while done < permutations:
            c = min(chunk, permutations - done)
            bits = np.unpackbits(np.frombuffer(rng.bytes((c * n_units + 7) // 8), dtype=np.uint8))[: c * n_units]
            yield bits.reshape(c, n_units).astype(np.float64)
            done += c

    return draws(), False


def _perm_p(hits: int, total: int, exact: bool) -> float:
    """Exact: hits / 2^U (the identity swap is among them); Monte Carlo: (1 + hits) / (1 + R)."""
    if total == 0:
        return float("nan")
    return hits / total if exact else (hits + 1) / (total + 1)


def compare_runs(
    runs: Sequence,
    metrics: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resample: Resample = "subject",
    permutations: int = 10000,
) -> Comparison:
    """Paired comparison of every pair of ``runs`` (objects with ``name``, ``path``, ``run``, ``per_image``).

    Rows are joined on the job name; the runs must pass :func:`check_comparable`. For each pair
    (A, B) (in the order given) and metric: the two means, ``Δ = mean_A − mean_B``, its percentile
    bootstrap interval (same draws for both runs), the sign-flip permutation p-value, the
    Holm-corrected p over all pairs × metrics, and a verdict. Also the probability of being best.
    """
    if len(runs) < 2:
        raise StellarError("compare needs at least two runs")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise StellarError(f"two runs share the name {[n for n in names if names.count(n) > 1][0]!r}: name them with RUN=NAME")
    if metrics is None:  # the per-preset APS of a several-preset run (aps@PRESET) has intervals, not paired tests
        common = [set(table_metrics(r.per_image)) for r in runs]
        metrics = [m for m in table_metrics(runs[0].per_image) if all(m in c for c in common) and (m == "aps" or not _is_aps(m))]
    else:
        if any(_is_aps(m) and m != "aps" for m in metrics):
            raise StellarError("stellar compare tests 'aps' of the first face preset only; aps@PRESET has intervals in `stellar report --ci`")
        for r in runs:
            try:
                table_metrics(r.per_image, metrics)
            except StellarError as exc:
                raise StellarError(f"{r.path}: {exc}") from None
        metrics = list(metrics)
    if not metrics:
        raise StellarError("the runs share no metric to compare")
    check_comparable(runs, metrics)
    alpha = 1.0 - ci
    frames = [r.per_image.sort_values("name", kind="stable").reset_index(drop=True) for r in runs]
    codes, n_units = unit_codes(frames[0], resample)
    img = [m for m in metrics if m != "aps"]
    sums, counts, aps = [], [], []
    for fr in frames:
        s, k = _unit_sums(_metric_values(fr, img), codes, n_units)
        sums.append(s)
        counts.append(k)
        aps.append(_aps_counts(fr, codes, n_units) if "aps" in metrics else None)

    # per run: [sums | counts | APS confusion counts] per unit; every replicate total is one product
    stacked = [np.concatenate([sums[i], counts[i]] + ([aps[i].stacked()] if "aps" in metrics else []), axis=1) for i in range(len(runs))]
    width = stacked[0].shape[1]
    all_runs = np.concatenate(stacked, axis=1)
    m_img = len(img)

    def means_of_totals(tot: np.ndarray, i: int) -> np.ndarray:  # tot (B, width) of run i -> (B, M)
        out = _ratio(tot[:, :m_img], tot[:, m_img : 2 * m_img])
        if "aps" in metrics:
            out = np.concatenate([out, aps[i].aps_of_totals(tot[:, 2 * m_img :])[:, None]], axis=1)
        return out

    def means(w: np.ndarray) -> np.ndarray:  # (B, R, M)
        tot = w @ all_runs
        return np.stack([means_of_totals(tot[:, i * width : (i + 1) * width], i) for i in range(len(runs))], axis=1)

    order = img + (["aps"] if "aps" in metrics else [])
    point = means(np.ones((1, n_units)))[0]  # (R, M)
    rep = np.concatenate([means(w) for w in replicate_counts(n_units, n_boot, seed)], axis=0)

    pairs = list(itertools.combinations(range(len(runs)), 2))
    # Permutation distribution of Δ for every pair and metric at once. Swapping unit u moves
    # (X_j − X_i)_u from run i's totals to run j's — for sums, counts and APS confusion counts
    # alike — so one matrix product per chunk of swaps gives every swapped total of every pair.
    # Columns whose difference is zero everywhere (equal counts, equal labels) are left out of it.
    deltas = [stacked[j] - stacked[i] for i, j in pairs]
    moving = [np.flatnonzero(np.any(d != 0, axis=0)) for d in deltas]
    offsets = np.cumsum([0] + [len(m) for m in moving])
    delta_all = np.concatenate([d[:, m] for d, m in zip(deltas, moving)], axis=1)
    del deltas
    t_obs = np.abs(point[[i for i, _ in pairs]] - point[[j for _, j in pairs]])  # (P, M)
    tol = 1e-12 * np.maximum(1.0, np.nan_to_num(t_obs))
    hits = np.zeros(t_obs.shape, dtype=np.int64)
    valid = np.zeros(t_obs.shape, dtype=np.int64)
    totals = [x.sum(axis=0)[None, :] for x in stacked]
    swaps, exact = _swap_chunks(n_units, permutations, seed)
    for swap in swaps:
        moved_all = swap @ delta_all
        for q, (i, j) in enumerate(pairs):
            moved = np.zeros((len(swap), stacked[i].shape[1]))
            moved[:, moving[q]] = moved_all[:, offsets[q] : offsets[q + 1]]
            t_perm = means_of_totals(totals[i] + moved, i) - means_of_totals(totals[j] - moved, j)
            ok = ~np.isnan(t_perm)
            valid[q] += ok.sum(axis=0)
            hits[q] += (ok & (np.abs(np.where(ok, t_perm, 0.0)) >= t_obs[q] - tol[q])).sum(axis=0)
    rows = []
    for q, (i, j) in enumerate(pairs):
        lo, hi = percentile_interval(rep[:, i, :] - rep[:, j, :], ci)
        for k, m in enumerate(order):
            d = float(point[i, k] - point[j, k])
            rows.append(
                {
                    "a": names[i], "b": names[j], "metric": m,
                    "mean_a": float(point[i, k]), "mean_b": float(point[j, k]), "diff": d,
                    "diff_lo": float(lo[k]), "diff_hi": float(hi[k]),
                    "p": float("nan") if math.isnan(d) else _perm_p(int(hits[q, k]), int(valid[q, k]), exact),
                }
            )  # fmt: skip
    adj = holm([r["p"] for r in rows])
    for r, pa in zip(rows, adj):
        r["p_holm"] = pa
        info = METRICS.get(r["metric"])
        if math.isnan(pa) or pa >= alpha or r["diff"] == 0:
            r["verdict"] = "no significant difference"
        else:
            a_better = (r["diff"] > 0) == (info.higher_is_better if info else True)
            r["verdict"] = f"{r['a'] if a_better else r['b']} better"
    best_rows = []
    for k, m in enumerate(order):
        vals = rep[:, :, k]
        hib = METRICS[m].higher_is_better if m in METRICS else True
        ok = ~np.isnan(vals).all(axis=1)
        v = vals[ok]
        filled = np.where(np.isnan(v), -np.inf if hib else np.inf, v)
        top = filled.max(axis=1, keepdims=True) if hib else filled.min(axis=1, keepdims=True)
        is_best = (filled == top).astype(np.float64)
        share = is_best / is_best.sum(axis=1, keepdims=True)
        prob = share.mean(axis=0) if len(v) else np.full(len(runs), np.nan)
        best_rows.append({"metric": m, **{n: float(prob[i]) for i, n in enumerate(names)}})
    settings = {
        "ci": ci, "bootstrap": n_boot, "seed": seed, "resample": resample,
        "permutation": f"exact, {2 ** n_units} swaps" if exact else f"Monte Carlo, {permutations} swaps",
        "units": n_units, "tests": int(np.count_nonzero(~np.isnan([r["p"] for r in rows]))),
    }  # fmt: skip
    return Comparison(names, order, pd.DataFrame(rows), pd.DataFrame(best_rows), settings)


# ------------------------------------------------------------------------------ report tables
#: Report columns whose interval comes from another results column.
_REPORT_SOURCE = {"aps_img": "aps_image"}


def row_intervals(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resample: Resample = "subject",
) -> dict[str, Interval]:
    """Intervals for the metric columns of one row of a ``stellar report`` table: ``{column: Interval}``.

    ``frame`` = the rows the table's number is computed from (a run, a kind, a category).
    ``columns`` are report columns: image-level metrics, ``aps`` (the probes-fixed AUC; needs the
    ``aps_label_*`` / ``aps_pred_*`` columns) and ``aps_img`` (the per-image APS, column
    ``aps_image``); other columns (counts) and metrics the table lacks are left out.
    """
    wanted = {c: _REPORT_SOURCE.get(c, c) for c in columns if c in METRICS or c in _REPORT_SOURCE}
    sources = [
        s for s in dict.fromkeys(wanted.values())
        if (_is_aps(s) and agg.aps_columns(frame, split_variant(s)[1]) is not None)
        or (not _is_aps(s) and s in frame and (s in _REPORT_SOURCE.values() or METRICS[s].level == "image"))
    ]  # fmt: skip
    if not sources or not len(frame):
        return {}
    ivs = bootstrap_intervals(frame, sources, n_boot=n_boot, seed=seed, ci=ci, resample=resample)
    return {c: ivs[s] for c, s in wanted.items() if s in ivs}


def report_intervals(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    by: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resample: Resample = "subject",
) -> dict[str, dict[str, Interval]]:
    """:func:`row_intervals` for every row group of a run's report: ``{group: {column: Interval}}``.

    Groups as :func:`interval_table`: ``by=None`` → ``{"all": …}``; ``"split"`` → ``T``/``H``;
    ``"category"`` → one group per Stellar-T category (rows selected by
    :func:`stellar.metrics.aggregate.category_mask`, as the tables are).
    """
    kw = dict(n_boot=n_boot, seed=seed, ci=ci, resample=resample)
    return {g: ivs for g, f in row_groups(frame, by).items() if (ivs := row_intervals(f, columns, **kw))}


def interval_note(ci: float, n_boot: int, seed: int, resample: str) -> str:
    """The sentence printed with a table of ``mean ± half-width`` cells."""
    how = "cluster bootstrap over subjects" if resample == "subject" else "bootstrap over jobs"
    return f"± = half-width of the {ci * 100:g} % percentile interval ({how}, {n_boot} replicates, seed {seed})"
