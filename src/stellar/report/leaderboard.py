"""Leaderboards from run directories (DESIGN §7 ``stellar report``).

Reads only results files (``run.json``, ``summary.json``, ``per_image.parquet``). One row per run;
one column per metric with its direction arrow (from :data:`stellar.metrics.METRICS`), the best
value of each column marked; failure and exclusion counts; a footnote with the models each number
came from. ``by="split"`` gives one table per prompt kind (Stellar-T / Stellar-H), ``by="category"``
one per Stellar-T category (an image counts for each category its prompt has).

APS is dataset level: the overall and per-kind values are the probes' AUC from ``summary.json``;
per category, where probes are not refit, the column is the mean per-image APS (``APS-img``: the
fraction of attributes predicted right), named differently so the two are never confused.
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
from stellar.metrics.base import METRICS

IMAGE_METRICS = tuple(m for m, info in METRICS.items() if info.level == "image")


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
    notes: list[str] = field(default_factory=list)

    def best(self) -> dict[str, float]:
        out = {}
        for c in self.columns:
            info = METRICS.get(c.replace("_img", "").split(":")[0])
            vals = [r[c] for _, r in self.rows if isinstance(r.get(c), (int, float)) and not _nan(r.get(c))]
            if info is not None and vals and len(self.rows) > 1:
                out[c] = max(vals) if info.higher_is_better else min(vals)
        return out


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _mean(s: pd.Series) -> float | None:
    s = s.astype(float).dropna()
    return float(s.mean()) if len(s) else None


def _header(col: str) -> str:
    if col == "aps_img":
        return "APS-img ↑"
    info = METRICS.get(col)
    if info is None:
        return col
    return f"{info.display_name} {'↑' if info.higher_is_better else '↓'}"


def _metric_columns(runs: Sequence[RunResult]) -> list[str]:
    present = {m for r in runs for m in r.run.get("metrics", [])}
    return [m for m in METRICS if m in present]


def _counts(r: RunResult, frame: pd.DataFrame) -> dict:
    ok = frame["status"] != "decode_error"
    excluded = int((frame["followed_prompt"] == False).sum()) if "followed_prompt" in frame else 0  # noqa: E712
    return {"images": int(len(frame)), "failures": int((~ok).sum()), "no_face": int((frame["status"] == "no_face_generated").sum()), "excluded": excluded}


def leaderboard(runs: Sequence[RunResult], by: str | None = None) -> list[Table]:
    """The tables of ``stellar report``."""
    if not runs:
        raise StellarError("no runs given")
    cols = _metric_columns(runs)
    tables: list[Table] = []
    notes = []
    for r in runs:
        excl = r.summary.get("exclusion", {})
        rule = f"applied (σ = {excl['sigma']:.4f})" if excl.get("applied") else f"NOT applied ({excl.get('reason', r.run.get('exclusion_rule'))})"
        notes.append(f"{r.name}: faces = {r.run['models'].get('faces')}; CLIP = {r.run['models'].get('clip')}; exclusion rule {rule}")
    counts = ["images", "failures", "no_face", "excluded"]
    if by is None:
        rows = []
        for r in runs:
            vals = {m: r.summary.get("means", {}).get(m) for m in cols}
            vals.update(_counts(r, r.per_image))
            rows.append((r.name, vals))
        tables.append(Table("Leaderboard", cols + counts, rows, notes))
    elif by == "split":
        for kind, label in (("T", "Stellar-T"), ("H", "Stellar-H")):
            rows = []
            for r in runs:
                frame = r.per_image[r.per_image["kind"] == kind]
                if not len(frame):
                    continue
                vals = {m: _mean(frame[m]) for m in cols if m in IMAGE_METRICS and m in frame}
                if "aps" in cols:
                    vals["aps"] = r.summary.get("by_kind", {}).get(kind, {}).get("aps")
                vals.update(_counts(r, frame))
                rows.append((r.name, vals))
            if rows:
                tables.append(Table(f"{label} prompts", cols + counts, rows, notes))
    elif by == "category":
        cats = sorted({c for r in runs for cs in r.per_image["categories"] for c in (cs if cs is not None else [])})
        ccols = [m for m in cols if m in IMAGE_METRICS] + (["aps_img"] if "aps" in cols else [])
        for cat in cats:
            rows = []
            for r in runs:
                mask = r.per_image["categories"].map(lambda cs: cs is not None and cat in list(cs))
                frame = r.per_image[mask]
                if not len(frame):
                    continue
                vals = {m: _mean(frame["aps_image" if m == "aps_img" else m]) for m in ccols}
                vals["images"] = int(len(frame))
                rows.append((r.name, vals))
            tables.append(Table(f"Category: {cat}", ccols + ["images"], rows, notes))
    else:
        raise StellarError(f"--by {by!r}: use split or category")
    return tables


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

        def cell(c, v, bold_open="**", bold_close="**"):
            s = _fmt(v)
            return f"{bold_open}{s}{bold_close}" if c in best and not _nan(v) and v == best[c] else s

        heads = ["method"] + [_header(c) for c in t.columns]
        if fmt == "md":
            out.append(f"### {t.title}\n")
            out.append("| " + " | ".join(heads) + " |")
            out.append("|" + "|".join(["---"] + ["---:"] * len(t.columns)) + "|")
            for name, vals in t.rows:
                out.append("| " + " | ".join([name] + [cell(c, vals.get(c)) for c in t.columns]) + " |")
            out.append("")
        elif fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["table"] + heads)
            for name, vals in t.rows:
                w.writerow([t.title, name] + [cell(c, vals.get(c), "", "*") for c in t.columns])
            out.append(buf.getvalue().rstrip("\n"))
        elif fmt == "latex":
            def esc(s: str) -> str:
                return s.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")

            out.append(r"\begin{table}[t]\centering")
            out.append(r"\caption{" + esc(t.title) + "}")
            out.append(r"\begin{tabular}{l" + "r" * len(t.columns) + "}")
            out.append(r"\toprule")
            out.append(" & ".join(esc(h) for h in heads) + r" \\")
            out.append(r"\midrule")
            for name, vals in t.rows:
                out.append(" & ".join([esc(name)] + [cell(c, vals.get(c), r"\textbf{", "}") for c in t.columns]) + r" \\")
            out.append(r"\bottomrule")
            out.append(r"\end{tabular}")
            out.append(r"\end{table}")
        elif fmt == "html":
            out.append(f"<h3>{html.escape(t.title)}</h3>")
            out.append("<table>")
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>")
            for name, vals in t.rows:
                tds = "".join(f"<td>{cell(c, vals.get(c), '<b>', '</b>')}</td>" for c in t.columns)
                out.append(f"<tr><td>{html.escape(name)}</td>{tds}</tr>")
            out.append("</table>")
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
    lines = [f"method {summary.get('method')}: {summary['n_jobs']} images, {summary.get('failures', 0)} failed"]
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
