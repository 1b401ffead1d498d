"""Leaderboards from run directories (DESIGN §7b ``stellar report``).

Reads only results files (``run.json``, ``summary.json``, ``per_image.parquet``). Every number of every
table — overall, per prompt kind (``by="split"``), per Stellar-T category (``by="category"``; an image
counts for each category its prompt has) — comes from :func:`stellar.metrics.aggregate.aggregate` over
the rows of ``per_image.parquet``, the function the engine uses for ``summary.json``: one row rule,
the same numbers everywhere. APS of a subset is the ROC-AUC of the run's fixed probe predictions
(``aps_pred_*``) on that subset.

Columns: one per metric with its direction arrow (from :data:`stellar.metrics.METRICS`); ``coverage``
(evaluated / expected jobs); ``missing`` and ``undecodable`` (jobs without a decodable image, which
score each metric's worst value unless the run used ``--partial``); ``no_face``; ``excluded``;
``exclusion`` (whether the metric-exploitation rule was applied — in the table itself, since copying
the input wins IPS/SIS/APS when it is not); ``failures`` (the run's failure rule).

With ``ci`` (``stellar report --ci 0.95``, the command's default) every metric cell also carries the
half-width of its bootstrap interval (``mean ± half-width``; ``_lo`` / ``_hi`` columns in csv), from
:func:`stellar.report.stats.bootstrap_intervals` on the same rows — a cluster bootstrap over
subjects whose statistic is :func:`~stellar.metrics.aggregate.aggregate`'s row rule (DESIGN §6.12).

Best values are marked only among *comparable* runs: the same dataset (fingerprint) and job set, the
same model protocols (faces, CLIP, scorers), the same failure rule and exclusion status, and — for
``--partial`` runs — the same evaluated jobs. When runs are not all comparable, the best is marked
within the largest comparable group and a note under the table says which runs were left out and why.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from stellar.errors import StellarError
from stellar.metrics import aggregate as agg
from stellar.metrics.base import METRICS, split_variant

IMAGE_METRICS = tuple(m for m, info in METRICS.items() if info.level == "image")
COUNT_COLUMNS = ["images", "coverage", "missing", "undecodable", "no_face", "excluded", "exclusion", "failures"]


@dataclass
class RunResult:
    path: Path
    name: str
    run: dict
    summary: dict
    per_image: pd.DataFrame


def load_run(path: str | Path, name: str | None = None) -> RunResult:
    path = Path(path)
    for f in ("run.json", "summary.json", "per_image.parquet"):
        if not (path / f).is_file():
            raise StellarError(f"{path}: no {f} — not a finished run directory (run `stellar evaluate` to finish it)")
    run = json.loads((path / "run.json").read_text())
    summary = json.loads((path / "summary.json").read_text())
    name = name or run.get("method") or path.name
    if (run.get("models") or {}).get("non_reference_weights"):  # --weights with a file that is not the card's reference file
        name += " (non-reference weights)"
    return RunResult(path, name, run, summary, pd.read_parquet(path / "per_image.parquet"))


@dataclass
class Table:
    title: str
    columns: list[str]  # metric keys or count columns
    rows: list[tuple[str, dict]]  # (run name, {column: value})
    notes: list[str] = field(default_factory=list)  # the models behind the numbers (printed once per report)
    comparable: set[str] | None = None  # run names among which a best value may be marked (None = all)
    remarks: list[str] = field(default_factory=list)  # said under this table (comparability, warnings)
    intervals: dict[str, dict] = field(default_factory=dict)  # run name -> metric -> stats.Interval (with ci)
    interval_note: str = ""  # how the intervals were computed (said under the title)

    def best(self) -> dict[str, float]:
        out = {}
        rows = [(n, r) for n, r in self.rows if self.comparable is None or n in self.comparable]
        for c in self.columns:
            info = METRICS.get(c.replace("_img", "").split(":")[0])
            vals = [r[c] for _, r in rows if isinstance(r.get(c), (int, float)) and not _nan(r.get(c))]
            if info is not None and vals and len(rows) > 1:
                out[c] = max(vals) if info.higher_is_better else min(vals)
        return out

    def is_best(self, name: str, column: str, value, best: dict) -> bool:
        return column in best and not _nan(value) and value == best[column] and (self.comparable is None or name in self.comparable)


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _header(col: str) -> str:
    if col == "aps_img":
        return "APS-img ↑"
    info = METRICS.get(col)
    if info is None:
        return col
    return f"{info.display_name} {'↑' if info.higher_is_better else '↓'}"


def _metric_columns(runs: Sequence[RunResult]) -> list[str]:
    """The runs' metric columns in :data:`METRICS` order; face-preset variants (``ips@paper``,
    ``ips@arcface``) side by side after their base metric's place (issue 12)."""
    present = list(dict.fromkeys(m for r in runs for m in r.run.get("metrics", [])))
    out = []
    for m in METRICS:
        out += [c for c in present if c == m or split_variant(c)[0] == m]
    return out


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two paired score lists (NaN when fewer than 2 pairs or a side is constant)."""
    pairs = [(a, b) for a, b in zip(x, y) if not _nan(a) and not _nan(b)]
    conc = disc = tx = ty = 0
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            dx = (pairs[i][0] > pairs[j][0]) - (pairs[i][0] < pairs[j][0])
            dy = (pairs[i][1] > pairs[j][1]) - (pairs[i][1] < pairs[j][1])
            if dx and dy:
                conc += dx == dy
                disc += dx != dy
            elif dx:
                ty += 1
            elif dy:
                tx += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


def preset_agreement(runs: Sequence[RunResult], cols: Sequence[str]) -> list[str]:
    """Remarks: for each face metric computed with several presets, Kendall τ-b between the presets'
    rankings of the runs (overall means); said when at least 2 runs have both values."""
    by_base: dict[str, list[str]] = {}
    for c in cols:
        base, variant = split_variant(c)
        if variant is not None:
            by_base.setdefault(base, []).append(c)
    lines = []
    for base, variants in by_base.items():
        for i in range(len(variants)):
            for j in range(i + 1, len(variants)):
                a, b = variants[i], variants[j]
                xa = [r.summary.get("means", {}).get(a) for r in runs]
                xb = [r.summary.get("means", {}).get(b) for r in runs]
                n = sum(not _nan(u) and not _nan(v) for u, v in zip(xa, xb))
                if n >= 2:
                    tau = kendall_tau_b(xa, xb)
                    lines.append(f"Rank agreement of the face presets on {METRICS[base].display_name}: Kendall τ-b({a}, {b}) = {_fmt(tau)} over {n} runs.")
    return lines


def failure_rule(r: RunResult) -> str:
    """The run's failure rule; runs made before it existed averaged over what existed (``partial``)."""
    return r.run.get("failure_rule", "partial")


def _exclusion_applied(r: RunResult) -> bool:
    return bool(r.summary.get("exclusion", {}).get("applied"))


def comparability_key(r: RunResult) -> tuple:
    """Runs with equal keys may be ranked against each other (module docstring)."""
    jobs = r.run.get("jobs", {})
    key = (
        r.run.get("dataset", {}).get("fingerprint"),
        jobs.get("digest"),
        json.dumps(r.run.get("models"), sort_keys=True),
        failure_rule(r),
        _exclusion_applied(r),
    )
    if failure_rule(r) == "partial":
        evaluated = r.per_image.loc[~r.per_image["status"].isin(agg.IMAGE_FAILURES), "name"]
        key += (tuple(sorted(evaluated)),)
    return key


def _why_different(a: RunResult, b: RunResult) -> str:
    reasons = []
    if a.run.get("dataset", {}).get("fingerprint") != b.run.get("dataset", {}).get("fingerprint"):
        reasons.append("another dataset")
    elif a.run.get("jobs", {}).get("digest") != b.run.get("jobs", {}).get("digest"):
        reasons.append("another job set")
    if a.run.get("models") != b.run.get("models"):
        reasons.append("other model protocols")
    if failure_rule(a) != failure_rule(b):
        reasons.append(f"failure rule {failure_rule(b)}")
    if _exclusion_applied(a) != _exclusion_applied(b):
        reasons.append("exclusion rule " + ("applied" if _exclusion_applied(b) else "NOT applied"))
    if not reasons:
        reasons.append("--partial over other evaluated jobs")
    return ", ".join(reasons)


def _comparability(runs: Sequence[RunResult]) -> tuple[set[str] | None, list[str]]:
    """(names of the largest comparable group, or None when all are comparable; remarks)."""
    groups: dict[tuple, list[RunResult]] = {}
    for r in runs:
        groups.setdefault(comparability_key(r), []).append(r)
    remarks = []
    fps = {r.run.get("dataset", {}).get("fingerprint") for r in runs}
    if len(fps) > 1:
        remarks.append("WARNING: these runs were evaluated on different datasets (dataset fingerprints differ).")
    not_applied = [r.name for r in runs if not _exclusion_applied(r)]
    if not_applied and any(METRICS[m].exclusion_applies for r in runs for m in r.run.get("metrics", []) if m in METRICS):
        remarks.append(
            f"Exclusion rule NOT applied for {', '.join(not_applied)} (no CLIP model): IPS/SIS/APS then reward copying the input photo."
        )
    for r in runs:  # issue 12: scored with the encoder the method was conditioned on
        for w in r.run.get("warnings", []):
            remarks.append(f"WARNING {r.name}: {w}")
    partial = [r.name for r in runs if failure_rule(r) == "partial"]
    if partial:
        remarks.append(f"{', '.join(partial)}: --partial — means over the jobs that have an image; failures are left out, not counted.")
    if len(groups) == 1:
        return None, remarks
    main = max(groups.values(), key=len)  # first largest group (dict order = run order)
    names = {r.name for r in main}
    left = [f"{r.name} ({_why_different(main[0], r)})" for r in runs if r.name not in names]
    if len(main) > 1:
        remarks.append(f"Best values are marked among {', '.join(sorted(names))} only; not comparable with them: {'; '.join(left)}.")
    else:
        remarks.append(f"No best value is marked: the runs are not comparable ({'; '.join(left)}).")
        names = set()
    return names, remarks


def _row(r: RunResult, frame: pd.DataFrame, cols: list[str], expected: int | None) -> dict:
    res = agg.aggregate(frame, cols, expected=expected)
    vals: dict = {m: res["means"].get(m) for m in cols}
    c = res["counts"]
    cov = res["coverage"]
    vals.update(
        images=int(len(frame)),
        coverage=f"{cov['evaluated']}/{cov['expected']}",
        missing=c["missing"],
        undecodable=c["undecodable"],
        no_face=c["no_face"],
        excluded=c["excluded"],
        exclusion="applied" if _exclusion_applied(r) else "NOT applied",
        failures="partial" if failure_rule(r) == "partial" else "worst",
    )
    return vals


def leaderboard(
    runs: Sequence[RunResult],
    by: str | None = None,
    *,
    ci: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    resample: str = "subject",
) -> list[Table]:
    """The tables of ``stellar report`` (every number from :func:`stellar.metrics.aggregate.aggregate`).

    With ``ci`` (e.g. 0.95) each metric of each row also gets its percentile bootstrap interval over
    the same rows (``n_boot`` replicates resampling ``resample`` units, seeded): ``Table.intervals``.
    """
    if not runs:
        raise StellarError("no runs given")
    cols = _metric_columns(runs)
    notes = []
    for r in runs:
        excl = r.summary.get("exclusion", {})
        rule = f"applied (σ = {excl['sigma']:.4f})" if excl.get("applied") else f"NOT applied ({excl.get('reason', r.run.get('exclusion_rule'))})"
        notes.append(f"{r.name}: faces = {r.run['models'].get('faces')}; CLIP = {r.run['models'].get('clip')}; exclusion rule {rule}")
    comparable, remarks = _comparability(runs)
    remarks = remarks + preset_agreement(runs, cols)

    def table(title: str, select, expected_of) -> Table | None:
        rows, intervals = [], {}
        for r in runs:
            frame = select(r.per_image)
            if not len(frame):
                continue
            rows.append((r.name, _row(r, frame, cols, expected_of(r))))
            if ci is not None:
                intervals[r.name] = row_intervals(frame, cols, n_boot=n_boot, seed=seed, ci=ci, resample=resample)
        if not rows:
            return None
        note = interval_note(ci, n_boot, seed, resample) if any(intervals.values()) else ""
        return Table(title, cols + COUNT_COLUMNS, rows, notes, comparable, remarks, intervals, note)

    if ci is not None:
        from stellar.report.stats import interval_note, row_intervals

    def jobs(r: RunResult, part: str | None = None, key: str | None = None) -> int | None:
        j = r.run.get("jobs")
        if not j:
            return None
        return j.get("expected") if part is None else j.get(part, {}).get(key, 0)

    tables: list[Table | None] = []
    if by is None:
        tables.append(table("Leaderboard", lambda f: f, jobs))
    elif by == "split":
        for kind, label in (("T", "Stellar-T"), ("H", "Stellar-H")):
            tables.append(table(f"{label} prompts", lambda f, k=kind: f[f["kind"] == k], lambda r, k=kind: jobs(r, "by_kind", k)))
    elif by == "category":
        cats = sorted({c for r in runs for cs in r.per_image["categories"] for c in (cs if cs is not None else [])})
        for cat in cats:
            tables.append(table(f"Category: {cat}", lambda f, c=cat: f[agg.category_mask(f, c)], lambda r, c=cat: jobs(r, "by_category", c)))
    else:
        raise StellarError(f"--by {by!r}: use split or category")
    return [t for t in tables if t is not None]


def _fmt(v) -> str:
    if _nan(v):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render(tables: Sequence[Table], fmt: str = "md") -> str:
    """``md`` | ``csv`` | ``latex`` | ``html``; the best value per column is bold (``*`` in csv)."""
    out: list[str] = []
    for t in tables:
        best = t.best()

        def cell(c, v, bold_open="**", bold_close="**", name=None, pm=None):
            s = _fmt(v)
            s = f"{bold_open}{s}{bold_close}" if t.is_best(name, c, v, best) else s
            iv = t.intervals.get(name, {}).get(c) if pm else None
            if iv is not None and not _nan(v) and not math.isnan(iv.lo):
                s += f"{pm}{iv.half_width:.4f}"  # mean ± half-width of the interval
            return s

        heads = ["method"] + [_header(c) for c in t.columns]
        if fmt == "md":
            out.append(f"### {t.title}\n")
            if t.interval_note:
                out.append(t.interval_note + "\n")
            out.append("| " + " | ".join(heads) + " |")
            out.append("|" + "|".join(["---"] + ["---:"] * len(t.columns)) + "|")
            for name, vals in t.rows:
                out.append("| " + " | ".join([name] + [cell(c, vals.get(c), name=name, pm=" ± ") for c in t.columns]) + " |")
            out.append("")
            out += [f"*{r}*" for r in t.remarks] + ([""] if t.remarks else [])
        elif fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            # intervals: METRIC_lo / METRIC_hi columns after the others, for the metrics that have them
            ivc = [c for c in t.columns if any(c in t.intervals.get(n, {}) for n, _ in t.rows)]
            w.writerow(["table"] + heads + [f"{c}_{e}" for c in ivc for e in ("lo", "hi")])
            for name, vals in t.rows:
                ivs = t.intervals.get(name, {})
                bounds = [_fmt(getattr(ivs[c], e)) if c in ivs and not _nan(vals.get(c)) else "" for c in ivc for e in ("lo", "hi")]
                w.writerow([t.title, name] + [cell(c, vals.get(c), "", "*", name) for c in t.columns] + bounds)
            for r in t.remarks:
                w.writerow([t.title, "# " + r])
            out.append(buf.getvalue().rstrip("\n"))
        elif fmt == "latex":
            def esc(s: str) -> str:
                return s.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")

            out.append(r"\begin{table}[t]\centering")
            caption = esc(t.title + (f". {t.interval_note}" if t.interval_note else "")).replace("±", r"$\pm$")
            out.append(r"\caption{" + caption + "}")
            out.append(r"\begin{tabular}{l" + "r" * len(t.columns) + "}")
            out.append(r"\toprule")
            out.append(" & ".join(esc(h) for h in heads) + r" \\")
            out.append(r"\midrule")
            for name, vals in t.rows:
                out.append(" & ".join([esc(name)] + [cell(c, vals.get(c), r"\textbf{", "}", name, r" $\pm$ ") for c in t.columns]) + r" \\")
            out.append(r"\bottomrule")
            out.append(r"\end{tabular}")
            out += [f"% {r}" for r in t.remarks]
            out.append(r"\end{table}")
        elif fmt == "html":
            out.append(f"<h3>{html.escape(t.title)}</h3>")
            if t.interval_note:
                out.append(f"<p>{html.escape(t.interval_note)}</p>")
            out.append("<table>")
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>")
            for name, vals in t.rows:
                tds = "".join(f"<td>{cell(c, vals.get(c), '<b>', '</b>', name, ' ± ')}</td>" for c in t.columns)
                out.append(f"<tr><td>{html.escape(name)}</td>{tds}</tr>")
            out.append("</table>")
            out += [f"<p><em>{html.escape(r)}</em></p>" for r in t.remarks]
        else:
            raise StellarError(f"unknown format {fmt!r}: use md, csv, latex or html")
    # the models behind the numbers: once, after the tables (every table of a report shares them)
    notes = tables[0].notes if tables else []
    if fmt == "md":
        out += ["Models:", ""] + [f"- {n}" for n in notes]
    elif fmt == "html":
        out.append("<h4>Models</h4><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    elif fmt == "latex":
        out += [f"% {n}" for n in notes]
    if fmt == "html":
        return "<!doctype html><meta charset='utf-8'><title>Stellar-Bench report</title>\n" + "\n".join(out) + "\n"
    return "\n".join(out).rstrip() + "\n"


def console_summary(summary: dict) -> str:
    """The table printed at the end of ``stellar evaluate``."""
    lines = [f"method {summary.get('method')}: {summary['n_jobs']} jobs, {summary.get('failures', 0)} failed"]
    cov, counts = summary.get("coverage"), summary.get("counts", {})
    if cov:
        lines.append(
            f"  coverage {cov['evaluated']}/{cov['expected']} jobs evaluated; missing {counts.get('missing', 0)}, "
            f"undecodable {counts.get('undecodable', 0)}; failure rule: {summary.get('failure_rule_note', summary.get('failure_rule'))}"
        )
    for m, v in summary.get("means", {}).items():
        info = METRICS.get(m)
        arrow = "↑" if info is None or info.higher_is_better else "↓"
        lines.append(f"  {(info.display_name if info else m):8s}{arrow} {_fmt(v)}")
    excl = summary.get("exclusion", {})
    if excl.get("applied"):
        lines.append(f"  exclusion rule: applied, σ = {excl['sigma']:.4f}, {excl['excluded']} image(s) did not follow the prompt")
    else:
        lines.append(f"  exclusion rule: NOT applied ({excl.get('reason')})")
    lines.append("  status: " + ", ".join(f"{k} {v}" for k, v in summary.get("status_counts", {}).items()))
    if summary.get("aps", {}).get("skipped"):
        lines.append("  APS skipped: " + "; ".join(f"{a}: {why}" for a, why in summary["aps"]["skipped"].items()))
    return "\n".join(lines)
