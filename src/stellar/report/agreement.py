"""Agreement of the metrics with human judgement (DESIGN §6.13); reads results and judgments files only.

**Judgments file** (JSONL, version 1): an optional header line
``{"format": "stellar-judgments", "version": 1}``, then one record per line, either

- pairwise: ``{"rater", "job", "a": RUN, "b": RUN, "aspect", "choice": "a"|"b"|"tie"}``, or
- rating:   ``{"rater", "job", "run": RUN, "aspect", "score": number}``,

with optional ``"time_ms"``, ``"gold"`` (an attention check: any value other than null/false leaves
the record out of every statistic, counted), ``"item"`` (the judged item's id, the unit of the
bootstrap; default ``job|run₁|run₂`` with the two runs sorted) and ``"version"``. ``job`` is a job
name (``SSS-I-PP``); ``RUN`` is a run's name (its method, or the ``RUN=NAME`` given on the command
line). Records of unknown runs, jobs or aspects are listed in the result, never dropped silently.

**Orientation.** Each pairwise record is put in a canonical order (runs sorted by name, so
``"a": X, "b": Y, "choice": "a"`` and ``"a": Y, "b": X, "choice": "b"`` are the same judgement):
the human outcome is ``h = +1`` (first run better), ``−1`` or ``0`` (tie). A metric with per-image
values ``x`` *votes* ``m = sign(x_first − x_second)``, negated when lower is better
(``higher_is_better`` of :data:`stellar.metrics.METRICS`; the per-image APS ``aps_image`` follows APS).

**τ-like** (WMT relative-ranking form; Macháček & Bojar 2014), per metric and aspect, over the
records where neither the human nor the metric ties:

    C = #{h = m ≠ 0},  D = #{h = −m ≠ 0},  τ = (C − D) / (C + D)

**Pairwise accuracy with tie calibration** (Deutsch, Foster & Freitag 2023, EMNLP): the metric
predicts a tie when ``|x_first − x_second| ≤ ε``; accuracy = fraction of records (human ties
included) where the metric's outcome equals the human's; ``ε`` is chosen among ``{0} ∪ {|Δx|}``
to maximise it (the smallest maximiser), and reported.

**τ-b for ratings**: per metric and aspect, over the rated images (job, run) with the human score
averaged over raters: Kendall's τ-b = (n_c − n_d) / √((n₀ − n₁)(n₀ − n₂)) (ties corrected as in
``scipy.stats.kendalltau``). As quadratic forms over image weights ``w`` (all ones for the point,
draw counts in a replicate): ``τ_b(w) = wᵀAw / √((wᵀA_x w)(wᵀA_y w))`` with
``A_ij = sgn(x_i − x_j)·sgn(y_i − y_j)``, ``A_x = |sgn(x_i − x_j)|``, ``A_y`` likewise.

**Intervals**: percentile bootstrap over judged items (pairwise: the ``item`` of each record, all
raters and aspects of an item drawn together; ratings: the rated images), B replicates, seeded;
the tie threshold is re-calibrated in every replicate, so the accuracy interval includes the
optimism of choosing ε.

**Humans**: Krippendorff's α (the ``krippendorff`` package, ordinal level; pairwise outcomes
coded −1/0/+1, ratings as given) per aspect, units = items (pairwise) or images (ratings); the
first judgement of a rater on a unit is used. Pairwise rater agreement = fraction of identical
outcomes over all pairs of raters who judged the same unit, and the rater–rater τ-like (one rater
as the "metric" of another, pooled over rater pairs) — the human ceiling next to the metrics'.

**Metric–metric agreement**: τ-like between the votes of two metrics on the distinct judged pairs
(no human involved): values near 1 flag redundant metrics.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from stellar.errors import MissingDependencyError, StellarError
from stellar.metrics.base import METRICS
from stellar.report.stats import IMAGE_METRICS, percentile_interval, replicate_counts

JUDGMENTS_FORMAT = "stellar-judgments"
JUDGMENTS_VERSION = 1
#: The per-image APS (fraction of attributes predicted right) stands for APS in agreement tables.
APS_IMAGE = "aps_image"


# ----------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class PairJudgment:
    rater: str
    job: str
    first: str  # runs in canonical (sorted) order
    second: str
    aspect: str
    outcome: int  # +1 first better, -1 second better, 0 tie
    item: str
    line: int


@dataclass(frozen=True)
class Rating:
    rater: str
    job: str
    run: str
    aspect: str
    score: float
    line: int


@dataclass
class Judgments:
    path: Path
    version: int
    pairs: list[PairJudgment]
    ratings: list[Rating]
    gold: int = 0  # attention-check records left out
    notes: list[str] = field(default_factory=list)


def _field(rec: dict, key: str, path: Path, line: int) -> str:
    if key not in rec or rec[key] is None or (isinstance(rec[key], str) and not rec[key].strip()):
        raise StellarError(f"{path}:{line}: record has no {key!r}\n  fix: every record needs rater, job, aspect and either a/b/choice or run/score")
    return str(rec[key])


def read_judgments(path: str | Path) -> Judgments:
    """Read and validate a judgments JSONL file (format version 1, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise StellarError(f"{path}: no such judgments file")
    pairs: list[PairJudgment] = []
    ratings: list[Rating] = []
    version: int | None = None
    gold = 0
    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StellarError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise StellarError(f"{path}:{line_no}: expected a JSON object per line")
        v = rec.get("version")
        if v is not None:
            if v != JUDGMENTS_VERSION:
                raise StellarError(f"{path}:{line_no}: judgments format version {v!r} is not supported (this version reads {JUDGMENTS_VERSION})\n  fix: upgrade stellar-bench")
            version = JUDGMENTS_VERSION
        if rec.get("format") == JUDGMENTS_FORMAT and "rater" not in rec:
            continue  # the header
        if rec.get("gold") not in (None, False):
            gold += 1
            continue
        rater, job, aspect = (_field(rec, k, path, line_no) for k in ("rater", "job", "aspect"))
        if "choice" in rec:
            a, b = _field(rec, "a", path, line_no), _field(rec, "b", path, line_no)
            choice = rec["choice"]
            if choice not in ("a", "b", "tie"):
                raise StellarError(f"{path}:{line_no}: choice {choice!r}: use \"a\", \"b\" or \"tie\"")
            if a == b:
                raise StellarError(f"{path}:{line_no}: a and b are the same run {a!r}")
            outcome = {"a": 1, "b": -1, "tie": 0}[choice]
            first, second = (a, b) if a < b else (b, a)
            if first != a:
                outcome = -outcome
            item = str(rec["item"]) if rec.get("item") is not None else f"{job}|{first}|{second}"
            pairs.append(PairJudgment(rater, job, first, second, aspect, outcome, item, line_no))
        elif "score" in rec:
            run = _field(rec, "run", path, line_no)
            score = rec["score"]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise StellarError(f"{path}:{line_no}: score {score!r} is not a finite number")
            ratings.append(Rating(rater, job, run, aspect, float(score), line_no))
        else:
            raise StellarError(f"{path}:{line_no}: neither a pairwise record (a, b, choice) nor a rating (run, score)")
    notes = []
    if version is None:
        notes.append(f"{path.name} has no version header; read as version {JUDGMENTS_VERSION}")
    if not pairs and not ratings:
        raise StellarError(f"{path}: no judgments in the file" + (f" ({gold} gold records only)" if gold else ""))
    return Judgments(path, JUDGMENTS_VERSION, pairs, ratings, gold, notes)


# --------------------------------------------------------------------------------- statistics
def _higher_is_better(metric: str) -> bool:
    return METRICS["aps" if metric == APS_IMAGE else metric].higher_is_better


def display_name(metric: str) -> str:
    if metric == APS_IMAGE:
        return "APS-img"
    return METRICS[metric].display_name if metric in METRICS else metric


def tau_like(human: np.ndarray, metric_vote: np.ndarray) -> tuple[float, int, int]:
    """WMT τ-like = (C − D)/(C + D) over the entries where neither ``human`` nor ``metric_vote`` is 0.

    Both arrays hold outcomes in {−1, 0, +1}. Returns ``(τ, C, D)``; τ is NaN when C + D = 0.
    """
    h, m = np.asarray(human), np.asarray(metric_vote)
    c = int(np.count_nonzero((h != 0) & (h == m)))
    d = int(np.count_nonzero((h != 0) & (m != 0) & (h == -m)))
    return ((c - d) / (c + d) if c + d else float("nan")), c, d


def tie_calibrated_accuracy(human: np.ndarray, delta: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise accuracy with tie calibration (Deutsch, Foster & Freitag 2023).

    ``human`` ∈ {−1, 0, +1} per record, ``delta`` = the metric's oriented score difference (positive:
    votes for the first run). The metric predicts a tie when ``|delta| ≤ ε``; accuracy(ε) = weighted
    fraction of records whose predicted outcome equals ``human``. ``ε`` ranges over
    ``{0} ∪ {|delta|}``; returns ``(best accuracy, smallest best ε)`` for each row of ``weights``
    (``(B, n)``, default one row of ones).
    """
    h = np.asarray(human, dtype=np.int64)
    d = np.asarray(delta, dtype=np.float64)
    w = np.ones((1, len(h))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    mag = np.abs(d)
    order = np.argsort(mag, kind="stable")
    mag_s, h_s, sign_s = mag[order], h[order], np.sign(d[order]).astype(np.int64)
    w_s = w[:, order]
    tie_gain = w_s * (h_s == 0)  # gained when this record is predicted a tie
    vote_gain = w_s * ((h_s != 0) & (sign_s == h_s))  # lost when it is predicted a tie
    total = w.sum(axis=1)
    # candidate thresholds: ε = 0 (only exact ties) and every distinct |delta|; the records predicted
    # tie at ε = u are the sorted prefix ending at the last occurrence of u
    uniq = np.unique(mag_s)
    last = np.searchsorted(mag_s, uniq, side="right")  # prefix lengths
    eps = uniq
    if uniq.size == 0 or uniq[0] > 0:
        eps = np.concatenate([[0.0], uniq])
        last = np.concatenate([[0], last])
    ct = np.concatenate([np.zeros((len(w), 1)), np.cumsum(tie_gain, axis=1)], axis=1)
    cv = np.concatenate([np.zeros((len(w), 1)), np.cumsum(vote_gain, axis=1)], axis=1)
    correct = ct[:, last] + (cv[:, -1:] - cv[:, last])
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct / total[:, None]
    best = np.argmax(acc, axis=1)  # first maximiser = smallest ε
    rows = np.arange(len(w))
    return np.where(total > 0, acc[rows, best], np.nan), np.where(total > 0, eps[best], np.nan)


def _sgn_matrix(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.sign(v[lo:hi, None] - v[None, :])


def weighted_tau_b(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, block: int = 512) -> np.ndarray:
    """Kendall's τ-b of ``(x, y)`` for each row of ``weights (B, n)`` (multiplicities; default ones).

    ``τ_b(w) = wᵀAw / √((wᵀA_x w)(wᵀA_y w))`` with ``A_ij = sgn(x_i−x_j)·sgn(y_i−y_j)``,
    ``A_x = |sgn(x_i−x_j)|``, ``A_y = |sgn(y_i−y_j)|``; with unit weights this is
    ``scipy.stats.kendalltau(x, y)`` (variant b). Computed in row blocks (memory O(block · n)).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.ones((1, len(x))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    num = np.zeros(len(w))
    dx = np.zeros(len(w))
    dy = np.zeros(len(w))
    for lo in range(0, len(x), block):
        hi = min(lo + block, len(x))
        sx, sy = _sgn_matrix(x, lo, hi), _sgn_matrix(y, lo, hi)
        wb = w[:, lo:hi]
        num += np.einsum("bi,bi->b", wb, w @ (sx * sy).T)
        dx += np.einsum("bi,bi->b", wb, w @ np.abs(sx).T)
        dy += np.einsum("bi,bi->b", wb, w @ np.abs(sy).T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((dx > 0) & (dy > 0), num / np.sqrt(dx * dy), np.nan)


def krippendorff_alpha(reliability: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's α of a raters × units matrix (NaN = missing), via the ``krippendorff`` package."""
    try:
        import krippendorff
    except ImportError:
        raise MissingDependencyError("krippendorff", "agreement", "Krippendorff's alpha in `stellar agreement`") from None
    data = np.asarray(reliability, dtype=np.float64)
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if not pairable.any() or len(np.unique(data[:, pairable][~np.isnan(data[:, pairable])])) < 2:
        return float("nan")  # no unit judged twice, or a single value everywhere: α undefined
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def _reliability_matrix(records: list[tuple[str, str, float]]) -> tuple[np.ndarray, list[str], list[str]]:
    """raters × units matrix from ``(rater, unit, value)`` records; the first value of a (rater, unit) wins."""
    raters = sorted({r for r, _, _ in records})
    units = sorted({u for _, u, _ in records})
    ri = {r: i for i, r in enumerate(raters)}
    ui = {u: i for i, u in enumerate(units)}
    mat = np.full((len(raters), len(units)), np.nan)
    for r, u, v in records:
        if np.isnan(mat[ri[r], ui[u]]):
            mat[ri[r], ui[u]] = v
    return mat, raters, units


def rater_agreement(mat: np.ndarray) -> tuple[float, float, int]:
    """Pooled over pairs of raters and the units both judged: (fraction of equal values, τ-like, comparisons)."""
    same = total = c = d = 0
    for i, j in itertools.combinations(range(mat.shape[0]), 2):
        both = ~np.isnan(mat[i]) & ~np.isnan(mat[j])
        a, b = mat[i, both], mat[j, both]
        same += int(np.count_nonzero(a == b))
        total += int(both.sum())
        sa, sb = np.sign(a), np.sign(b)
        c += int(np.count_nonzero((sa != 0) & (sa == sb)))
        d += int(np.count_nonzero((sa != 0) & (sb != 0) & (sa == -sb)))
    frac = same / total if total else float("nan")
    tau = (c - d) / (c + d) if c + d else float("nan")
    return frac, tau, total


# ------------------------------------------------------------------------------------- result
@dataclass
class AgreementResult:
    """Long tables (one row per metric × aspect) and the lists of what could not be used."""

    tau: pd.DataFrame  # metric, aspect, value, lo, hi, n (judgements without ties), concordant, discordant
    accuracy: pd.DataFrame  # metric, aspect, value, lo, hi, epsilon, n (judgements incl. ties)
    tau_b: pd.DataFrame  # metric, aspect, value, lo, hi, n (rated images)
    humans: pd.DataFrame  # aspect, data, alpha, agreement, tau_like, units, raters, comparisons
    metric_matrix: pd.DataFrame  # metrics × metrics τ-like on the distinct judged pairs
    unused: dict[str, dict[str, int]]  # what could not be used: {kind: {name: records}}
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def metric_order(self, table: pd.DataFrame) -> list[str]:
        """Metrics sorted by their mean value over aspects (best agreement first, undefined last)."""
        if table.empty:
            return []
        means = table.groupby("metric", sort=False)["value"].mean()
        return sorted(means.index, key=lambda m: (-means[m] if not math.isnan(means[m]) else math.inf, m))

    def render(self, fmt: str = "md") -> str:
        if fmt not in ("md", "csv", "latex"):
            raise StellarError(f"--format {fmt!r}: use md, csv or latex")
        return self._csv() if fmt == "csv" else self._tables(fmt)

    def _csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["table", "row", "aspect", "value", "lo", "hi", "n", "epsilon"])

        def g(v):
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.6g}" if isinstance(v, float) else v)

        for name, t in (("tau_like", self.tau), ("accuracy", self.accuracy), ("tau_b", self.tau_b)):
            for r in t.to_dict("records"):
                w.writerow([name, r["metric"], r["aspect"], g(r["value"]), g(r["lo"]), g(r["hi"]), r["n"], g(r.get("epsilon"))])
        for r in self.humans.to_dict("records"):
            for k in ("alpha", "agreement", "tau_like"):
                w.writerow([f"raters_{k}", r["data"], r["aspect"], g(r[k]), "", "", r["comparisons"] if k != "alpha" else r["units"], ""])
        for m1 in self.metric_matrix.index:
            for m2 in self.metric_matrix.columns:
                w.writerow(["metric_metric", m1, m2, g(float(self.metric_matrix.loc[m1, m2])), "", "", "", ""])
        for kind, names in self.unused.items():
            for name, n in names.items():
                w.writerow([f"unused_{kind}", name, "", "", "", "", n, ""])
        return buf.getvalue()

    def _tables(self, fmt: str) -> str:
        lvl = int(round(self.settings["ci"] * 100))
        out: list[str] = []

        def f(v, d=3):
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"

        def table(title: str, caption: str, header: list[str], rows: list[list[str]]) -> None:
            if fmt == "md":
                out.extend([f"### {title}", "", caption, "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"])
                out.extend("| " + " | ".join(r) + " |" for r in rows)
                out.append("")
            else:
                def esc(s: str) -> str:
                    return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("ε", r"$\varepsilon$").replace("τ", r"$\tau$").replace("α", r"$\alpha$").replace("±", r"$\pm$")

                out.extend([r"\begin{table}[t]\centering", r"\caption{" + esc(title + ". " + caption) + "}", r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule"])
                out.append(" & ".join(esc(h) for h in header) + r" \\")
                out.append(r"\midrule")
                out.extend(" & ".join(esc(c) for c in r) + r" \\" for r in rows)
                out.extend([r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])

        def grid(t: pd.DataFrame, cell) -> tuple[list[str], list[list[str]]]:
            aspects = list(dict.fromkeys(t["aspect"]))
            idx = {(r["metric"], r["aspect"]): r for r in t.to_dict("records")}
            rows = []
            for m in self.metric_order(t):
                rows.append([display_name(m)] + [cell(idx[(m, a)]) if (m, a) in idx else "–" for a in aspects])
            return ["metric"] + aspects, rows

        ci_text = f"{lvl} % bootstrap interval over judged items ({self.settings['bootstrap']} replicates, seed {self.settings['seed']})"
        if not self.tau.empty:
            header, rows = grid(self.tau, lambda r: f"{f(r['value'])} [{f(r['lo'])}, {f(r['hi'])}] (n={r['n']})")
            hum = {r["aspect"]: r for r in self.humans.to_dict("records") if r["data"] == "pairwise"}
            if hum:
                rows.append(["rater vs rater (human ceiling)"] + [f"{f(hum[a]['tau_like'])} (n={hum[a]['comparisons']})" if a in hum else "–" for a in header[1:]])
            table("Agreement with human judgement: Kendall's τ-like", f"(C − D)/(C + D) over judged pairs where neither human nor metric ties; {ci_text}; n = pairs counted.", header, rows)
            header, rows = grid(self.accuracy, lambda r: f"{f(r['value'])} [{f(r['lo'])}, {f(r['hi'])}] ε={f(r['epsilon'], 4)} (n={r['n']})")
            table("Pairwise accuracy with tie calibration", f"Deutsch, Foster & Freitag (2023): the metric ties when |Δ| ≤ ε, ε chosen to maximise accuracy (re-chosen in each replicate); {ci_text}; n = judgements incl. ties.", header, rows)
        if not self.tau_b.empty:
            header, rows = grid(self.tau_b, lambda r: f"{f(r['value'])} [{f(r['lo'])}, {f(r['hi'])}] (n={r['n']})")
            table("Agreement with human ratings: Kendall's τ-b", f"τ-b between the metric and the mean rating of each image; {lvl} % bootstrap interval over rated images; n = images.", header, rows)
        if not self.humans.empty:
            rows = [[r["aspect"], r["data"], f(r["alpha"]), f(r["agreement"]), f(r["tau_like"]), str(r["units"]), str(r["raters"]), str(r["comparisons"])] for r in self.humans.to_dict("records")]
            table("Inter-rater reliability", "Krippendorff's α (ordinal); agreement = fraction of identical answers over pairs of raters on the same unit; τ-like between raters.", ["aspect", "data", "α", "agreement", "τ-like", "units", "raters", "comparisons"], rows)
        if not self.metric_matrix.empty:
            ms = list(self.metric_matrix.index)
            rows = [[display_name(a)] + [f(float(self.metric_matrix.loc[a, b])) for b in ms] for a in ms]
            table("Metric–metric agreement", "τ-like between the votes of two metrics on the distinct judged pairs; near 1 = redundant.", ["metric"] + [display_name(m) for m in ms], rows)
        lines = list(self.notes)
        for kind, names in self.unused.items():
            if names:
                shown = ", ".join(f"{k} ({v})" for k, v in list(names.items())[:20])
                more = f", … {len(names) - 20} more" if len(names) > 20 else ""
                lines.append(f"not used — {kind}: {shown}{more}")
        if lines:
            if fmt == "md":
                out += ["Notes:", ""] + [f"- {n}" for n in lines]
            else:
                out += [f"% {n}" for n in lines]
        return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------ analysis
def _metric_columns(runs: Sequence, metrics: Sequence[str] | None) -> list[str]:
    available = [m for m in IMAGE_METRICS + (APS_IMAGE,) if all(m in r.per_image and r.per_image[m].notna().any() for r in runs)]
    if metrics is None:
        return available
    for m in metrics:
        if m not in available:
            raise StellarError(f"metric {m!r} is not available in every run; available: {', '.join(available)}")
    return list(metrics)


def agreement(
    judgments: Judgments,
    runs: Sequence,
    *,
    aspects: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> AgreementResult:
    """Agreement of every metric of ``runs`` with ``judgments`` (formulas in the module docstring).

    ``runs`` are objects with ``name`` and ``per_image`` (:func:`stellar.report.leaderboard.load_run`).
    ``aspects`` restricts the aspects (records of other aspects are listed as unused).
    """
    if not runs:
        raise StellarError("agreement needs at least one run (--runs)")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise StellarError(f"two runs share the name {[n for n in names if names.count(n) > 1][0]!r}: name them with RUN=NAME")
    metrics = _metric_columns(runs, metrics)
    tables = {r.name: r.per_image.drop_duplicates("name").set_index("name") for r in runs}
    wanted = set(aspects) if aspects else None
    unused: dict[str, Counter] = {"runs": Counter(), "jobs": Counter(), "aspects": Counter(), "undefined metric values": Counter()}

    def usable(job: str, run_names: Sequence[str], aspect: str) -> bool:
        bad_runs = [r for r in run_names if r not in tables]
        if bad_runs:
            for r in bad_runs:
                unused["runs"][r] += 1
            return False
        if wanted is not None and aspect not in wanted:
            unused["aspects"][aspect] += 1
            return False
        if any(job not in tables[r].index for r in run_names):
            unused["jobs"][job] += 1
            return False
        return True

    pairs = [p for p in judgments.pairs if usable(p.job, (p.first, p.second), p.aspect)]
    ratings = [r for r in judgments.ratings if usable(r.job, (r.run,), r.aspect)]
    aspect_order = list(aspects) if aspects else list(dict.fromkeys([p.aspect for p in pairs] + [r.aspect for r in ratings]))

    def value(run: str, job: str, m: str) -> float:
        v = tables[run].at[job, m]
        return float(v) if v is not None and not pd.isna(v) else float("nan")

    tau_rows, acc_rows, taub_rows, human_rows = [], [], [], []
    # ----- pairwise
    if pairs:
        items = sorted({p.item for p in pairs})
        item_index = {it: i for i, it in enumerate(items)}
        rec_item = np.array([item_index[p.item] for p in pairs])
        human = np.array([p.outcome for p in pairs])
        rec_aspect = np.array([p.aspect for p in pairs])
        deltas = {}
        for m in metrics:
            sign = 1.0 if _higher_is_better(m) else -1.0
            d = np.array([value(p.first, p.job, m) - value(p.second, p.job, m) for p in pairs]) * sign
            deltas[m] = d
            if np.isnan(d).any():
                unused["undefined metric values"][display_name(m)] += int(np.isnan(d).sum())
        cells = [(m, a) for m in metrics for a in aspect_order if (rec_aspect == a).any()]
        masks = {(m, a): (rec_aspect == a) & ~np.isnan(deltas[m]) for m, a in cells}
        tau_reps = {c: [] for c in cells}
        acc_reps = {c: [] for c in cells}
        for w_items in replicate_counts(len(items), n_boot, seed):
            w_rec = w_items[:, rec_item]
            for m, a in cells:
                k = masks[(m, a)]
                h, d = human[k], deltas[m][k]
                vote = np.sign(d)
                conc = ((h != 0) & (h == vote)).astype(np.float64)
                disc = ((h != 0) & (vote != 0) & (h == -vote)).astype(np.float64)
                cw, dw = w_rec[:, k] @ conc, w_rec[:, k] @ disc
                with np.errstate(invalid="ignore", divide="ignore"):
                    tau_reps[(m, a)].append(np.where(cw + dw > 0, (cw - dw) / (cw + dw), np.nan))
                acc_reps[(m, a)].append(tie_calibrated_accuracy(h, d, w_rec[:, k])[0] if k.any() else np.full(len(w_rec), np.nan))
        for m, a in cells:
            k = masks[(m, a)]
            t, c, d_ = tau_like(human[k], np.sign(deltas[m][k]))
            lo, hi = percentile_interval(np.concatenate(tau_reps[(m, a)])[:, None], ci)
            tau_rows.append({"metric": m, "aspect": a, "value": t, "lo": float(lo[0]), "hi": float(hi[0]), "n": c + d_, "concordant": c, "discordant": d_})
            acc, eps = tie_calibrated_accuracy(human[k], deltas[m][k]) if k.any() else (np.array([np.nan]), np.array([np.nan]))
            lo, hi = percentile_interval(np.concatenate(acc_reps[(m, a)])[:, None], ci)
            acc_rows.append({"metric": m, "aspect": a, "value": float(acc[0]), "lo": float(lo[0]), "hi": float(hi[0]), "epsilon": float(eps[0]), "n": int(k.sum())})
        for a in aspect_order:
            recs = [(p.rater, p.item, float(p.outcome)) for p in pairs if p.aspect == a]
            if recs:
                mat, raters, units = _reliability_matrix(recs)
                frac, rtau, total = rater_agreement(mat)
                human_rows.append({"aspect": a, "data": "pairwise", "alpha": krippendorff_alpha(mat), "agreement": frac, "tau_like": rtau, "units": len(units), "raters": len(raters), "comparisons": total})
    # metric–metric agreement on the distinct judged pairs
    distinct = sorted({(p.job, p.first, p.second) for p in pairs})
    mm = pd.DataFrame(index=metrics, columns=metrics, dtype=float)
    if distinct and len(metrics) > 1:
        votes = {m: np.sign(np.array([value(f, j, m) - value(s, j, m) for j, f, s in distinct]) * (1.0 if _higher_is_better(m) else -1.0)) for m in metrics}
        for m1 in metrics:
            for m2 in metrics:
                v1, v2 = votes[m1], votes[m2]
                ok = ~np.isnan(v1) & ~np.isnan(v2)
                mm.loc[m1, m2] = tau_like(v1[ok], v2[ok])[0]
    else:
        mm = pd.DataFrame()
    # ----- ratings
    if ratings:
        for a in aspect_order:
            recs = [r for r in ratings if r.aspect == a]
            if not recs:
                continue
            per_image: dict[tuple[str, str], list[float]] = defaultdict(list)
            for r in recs:
                per_image[(r.job, r.run)].append(r.score)
            keys = sorted(per_image)
            y = np.array([np.mean(per_image[k]) for k in keys])
            reps_w = list(replicate_counts(len(keys), n_boot, seed))
            for m in metrics:
                x = np.array([value(run, job, m) for job, run in keys])
                ok = ~np.isnan(x)
                point = weighted_tau_b(x[ok], y[ok])[0] if ok.sum() > 1 else float("nan")
                reps = np.concatenate([weighted_tau_b(x[ok], y[ok], w[:, ok]) for w in reps_w]) if ok.sum() > 1 else np.full(n_boot, np.nan)
                lo, hi = percentile_interval(reps[:, None], ci)
                taub_rows.append({"metric": m, "aspect": a, "value": float(point), "lo": float(lo[0]), "hi": float(hi[0]), "n": int(ok.sum())})
            mat, raters, units = _reliability_matrix([(r.rater, f"{r.job}|{r.run}", r.score) for r in recs])
            frac, _, total = rater_agreement(mat)
            human_rows.append({"aspect": a, "data": "ratings", "alpha": krippendorff_alpha(mat), "agreement": frac, "tau_like": float("nan"), "units": len(units), "raters": len(raters), "comparisons": total})
    notes = list(judgments.notes)
    if judgments.gold:
        notes.append(f"{judgments.gold} gold (attention-check) record(s) left out")
    if not tau_rows and not taub_rows:
        raise StellarError(
            f"{judgments.path}: no judgment matches the runs, jobs and aspects given ("
            + "; ".join(f"{k}: {', '.join(list(v)[:5])}" for k, v in unused.items() if v)
            + ")\n  fix: pass the runs the study was built from, named as in the judgments (RUN=NAME)"
        )
    cols = ["metric", "aspect", "value", "lo", "hi", "n"]
    return AgreementResult(
        tau=pd.DataFrame(tau_rows, columns=cols + ["concordant", "discordant"]),
        accuracy=pd.DataFrame(acc_rows, columns=cols + ["epsilon"]),
        tau_b=pd.DataFrame(taub_rows, columns=cols),
        humans=pd.DataFrame(human_rows, columns=["aspect", "data", "alpha", "agreement", "tau_like", "units", "raters", "comparisons"]),
        metric_matrix=mm,
        unused={k: dict(sorted(v.items())) for k, v in unused.items() if v},
        settings={"ci": ci, "bootstrap": n_boot, "seed": seed},
        notes=notes,
    )
