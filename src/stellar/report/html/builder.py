"""``stellar report RUN… --format html --out REPORT/``: a browsable, self-contained report folder.

Layout of ``REPORT/`` (everything local: no CDN, no network, works from ``file://`` and any static host)::

    index.html              leaderboard, run provenance, failure views, plots (inline SVG), gallery shell
    assets/report.css|js    the page's style and code (package data, copied)
    data/meta.js            what the gallery needs to start: runs, metrics, statuses, chunk count
    data/rows-NNNNN.js      gallery rows (scores, statuses, thumbnail ids), ``chunk_rows`` jobs per file
    data/detail-NNNNN.js    per-image details (prompt, error, face boxes, GOA queries, RFS triplets)
    data/leaderboard.json   the leaderboard numbers (machine readable; equal to ``--format csv``)
    thumbs/ab/<sha>-S.jpg   thumbnails named by content hash (see :mod:`.thumbs`)
    warnings.txt            images that could not be shown, and why

Data files are ``<script>`` files that call ``window.__stellarChunk(kind, k, data)`` (JSONP style):
Chromium blocks ``fetch()`` of local files, a script tag is not blocked. The page loads
``meta.js`` and the first row chunk; the other chunks load only when a filter or sort needs them
and detail chunks only when an image is enlarged, so the initial page weight does not grow with
the number of images.

Choices where the issue is silent (also in the README):

- The gallery has one row per job of the union of the runs' jobs, in the first run's order. A job a
  run lacks shows a placeholder for that run.
- ``max_gallery`` keeps at most N jobs: jobs where some run failed (any status other than ``ok``, or
  excluded by the CLIP rule) first, then the others in job order; the leaderboard, counts and plots
  always use every image.
- "GOA queries never found": a query whose best box score is below ``goa_found_threshold``
  (default 0.1, the detection threshold OWL-ViT's post-processing uses by default).
- "Runs disagree most": the range (max − min) of a metric across the runs of the job.
- The enlarged image is the thumbnail (the report does not copy full-size images); face boxes are
  scaled from the original image's pixel size.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Sequence

import numpy as np
import pandas as pd

from stellar.errors import StellarError
from stellar.fileio import atomic_write_bytes, atomic_write_text, json_bytes, write_if_changed
from stellar.metrics.base import METRICS, split_variant
from stellar.report.html import plots
from stellar.report.html.thumbs import make_thumbnails, unused_thumbnails
from stellar.metrics import aggregate as agg
from stellar.report.leaderboard import COUNT_COLUMNS, IMAGE_METRICS, RunResult, Table, _header, comparability_key, failure_rule, leaderboard

#: Statuses of the results contract, in the order the page lists them (others found are appended).
STATUSES = ("ok", "no_face_generated", "no_face_reference", "no_face_reference_other", "decode_error", "missing", "reference_decode_error")
#: Statuses where the run has no (decodable) generated image.
NO_IMAGE = ("missing", "decode_error")
APS_ATTRIBUTES = ("Young", "Male", "High_Cheekbones", "Pointy_Nose", "Narrow_Eyes", "Double_Chin", "Big_Lips", "Big_Nose")


@dataclass
class HtmlReport:
    """What :func:`build_html_report` wrote."""

    out: Path
    index: Path
    warnings: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)  # images shown as placeholders, with the reason
    n_jobs: int = 0
    n_gallery: int = 0
    n_chunks: int = 0
    thumbnails: int = 0
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------ checks
def check_comparable_datasets(runs: Sequence[RunResult]) -> None:
    """Refuse runs evaluated on different datasets or splits, naming the runs and the difference."""
    seen: dict[str, tuple[str, str]] = {}
    for r in runs:
        fp = (r.run.get("dataset") or {}).get("fingerprint")
        split = (r.run.get("config") or {}).get("split")
        if fp is not None:
            seen.setdefault("fingerprint", (r.name, fp))
            first, first_fp = seen["fingerprint"]
            if fp != first_fp:
                raise StellarError(
                    f"runs from different datasets cannot share one report: {first} was evaluated on dataset "
                    f"{first_fp} ({(runs[0].run.get('dataset') or {}).get('root')}), {r.name} on {fp} "
                    f"({(r.run.get('dataset') or {}).get('root')})\n  fix: report runs of the same dataset together"
                )
        if split is not None:
            seen.setdefault("split", (r.name, split))
            first, first_split = seen["split"]
            if split != first_split:
                raise StellarError(
                    f"runs of different splits cannot share one report: {first} is split {first_split!r}, {r.name} is {split!r}"
                    "\n  fix: report runs of the same split together"
                )


# ------------------------------------------------------------------------------------- small utils
def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _round(v, digits: int = 4) -> float | None:
    f = _num(v)
    return None if f is None else round(f, digits)


def _parse_json(v):
    """A detail column: JSON text, or already a list/dict/array (parquet list columns)."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (bytes, str)):
        try:
            return json.loads(v)
        except ValueError:
            return None
    if isinstance(v, np.ndarray):
        return [_parse_json(x) if isinstance(x, np.ndarray) else x for x in v.tolist()]
    return v


def _boxes(v) -> list[list[float]]:
    boxes = _parse_json(v) or []
    out = []
    for b in boxes:
        vals = [float(x) for x in (b.tolist() if isinstance(b, np.ndarray) else b)]
        if len(vals) >= 4:
            out.append([round(x, 2) for x in vals[:5]])
    return out


def _fmt(v) -> str:
    """A cell as ``stellar report`` writes it: floats with 4 decimals, ints and text as they are, – for none."""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    f = _num(v)
    return "–" if f is None else f"{f:.4f}"


def _js_chunk(kind: str, k: int, data) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return f"window.__stellarChunk({json.dumps(kind)},{k},{payload});\n".encode("utf-8")


# ------------------------------------------------------------------------------------ run summary
def run_counts(r: RunResult) -> dict:
    """Counts shown next to each run (:func:`stellar.metrics.aggregate.counts`) and its coverage.

    ``missing`` counts rows with status ``missing`` plus, for ``--partial`` runs, the expected jobs
    that have no row at all (``run.json["jobs"]["expected"]``).
    """
    f = r.per_image
    c = agg.counts(f)
    expected = (r.run.get("jobs") or {}).get("expected")
    rows = int(len(f))
    return {
        "rows": rows,
        "evaluated": c["evaluated"],
        "expected": int(expected) if expected is not None else rows,
        "missing": c["missing"] + max(0, (int(expected) if expected is not None else rows) - rows),
        "decode_error": c["undecodable"],
        "no_face_generated": c["no_face"],
        "no_face_reference": c["no_face_reference"] + c["reference_failures"],
        "excluded": c["excluded"],
        "failure_rule": failure_rule(r),
    }


def comparability(runs: Sequence[RunResult], counts: dict[str, dict]) -> dict[str, list[str]]:
    """Why each run is not comparable with the others (empty list = comparable).

    A run with missing jobs, a ``--partial`` run, a run on other jobs, or one whose
    :func:`stellar.report.leaderboard.comparability_key` (dataset, job set, model protocols,
    failure rule, exclusion status) differs from the first run's is flagged.
    """
    names = [set(r.per_image["name"]) for r in runs]
    key0 = comparability_key(runs[0])
    union = set().union(*names) if names else set()
    faces = {r.name: (r.run.get("models") or {}).get("faces") for r in runs}
    clip = {r.name: (r.run.get("models") or {}).get("clip") for r in runs}
    out: dict[str, list[str]] = {}
    for r, jobs in zip(runs, names):
        why = []
        c = counts[r.name]
        if c["missing"]:
            why.append(f"{c['missing']} of {c['expected']} expected job(s) have no image")
        if c["failure_rule"] == "partial":
            why.append("evaluated with --partial (means over existing images only)")
        if len(runs) > 1 and jobs != union:
            why.append(f"evaluated on {len(jobs)} of the {len(union)} jobs of the report")
        if len(set(faces.values())) > 1 and faces[r.name] != faces[runs[0].name]:
            why.append("different face models than " + runs[0].name)
        if len(set(clip.values())) > 1 and clip[r.name] != clip[runs[0].name]:
            why.append("different CLIP model than " + runs[0].name)
        if (r.summary.get("exclusion") or {}).get("applied") != (runs[0].summary.get("exclusion") or {}).get("applied"):
            why.append("exclusion rule applied in one of it and " + runs[0].name + " only")
        if not why and r is not runs[0] and comparability_key(r) != key0:
            why.append("other model protocols or job set than " + runs[0].name)
        out[r.name] = why
    return out


# -------------------------------------------------------------------------------------- statistics
def statistics(
    runs: Sequence[RunResult], sections: dict[str, list[Table]], *, ci: float = 0.95, n_boot: int = 1000, seed: int = 0, resample: str = "subject"
) -> dict:
    """The intervals of every leaderboard cell and the pairwise verdicts of ``stellar compare``.

    The intervals are those the leaderboard tables carry (``Table.intervals``, computed by
    :func:`stellar.report.leaderboard.leaderboard` with ``ci``: the same numbers as ``stellar report
    --ci``); the verdicts and probabilities of being best come from
    :func:`stellar.report.stats.compare_runs` with the same settings. Runs that ``stellar compare``
    refuses to pair (different jobs or protocols) get no verdicts, with its reason on the page.

    Returns ``{"available", "note", "ci": {table title: {run: {column: [lo, hi]}}}, "pairs": […],
    "best": […], "pairs_reason", "compare_settings"}``.
    """
    try:
        from stellar.report import stats as st
    except ModuleNotFoundError as exc:  # only its absence; a broken module is an error, not "no CI"
        if exc.name != "stellar.report.stats":
            raise
        return {"available": False, "reason": "the statistics layer (stellar.report.stats) is not part of this installation"}
    cis: dict[str, dict[str, dict[str, list[float]]]] = {}
    notes = []
    for tables in sections.values():
        for t in tables:
            notes.append(getattr(t, "interval_note", ""))
            for name, ivs in (getattr(t, "intervals", None) or {}).items():
                for col, iv in ivs.items():
                    if math.isfinite(iv.lo) and math.isfinite(iv.hi):
                        cis.setdefault(t.title, {}).setdefault(name, {})[col] = [iv.lo, iv.hi]
    note = next((n for n in notes if n), f"± = half-width of the {ci * 100:g} % percentile interval")
    out = {"available": True, "note": note, "ci": cis, "pairs": [], "best": []}
    if len(runs) > 1:
        try:
            cmp = st.compare_runs(runs, n_boot=n_boot, seed=seed, ci=ci, resample=resample)
        except StellarError as exc:
            out["pairs_reason"] = str(exc).splitlines()[0]
        else:
            clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
            out["pairs"] = [{k: clean(v) for k, v in row.items()} for row in cmp.pairs.to_dict("records")]
            out["best"] = [{k: clean(v) for k, v in row.items()} for row in cmp.best.to_dict("records")]
            out["compare_settings"] = cmp.settings
    return out


# ------------------------------------------------------------------------------------ leaderboard
def leaderboard_sections(runs: Sequence[RunResult], **ci) -> dict[str, list[Table]]:
    """The tables of ``stellar report`` overall, per kind and per category (the same function, same ``ci`` options)."""
    return {"overall": leaderboard(runs, **ci), "split": leaderboard(runs, by="split", **ci), "category": leaderboard(runs, by="category", **ci)}


def leaderboard_json(sections: dict[str, list[Table]]) -> list[dict]:
    """Every number of the leaderboard tables as data (what ``data/leaderboard.json`` holds)."""
    out = []
    for section, tables in sections.items():
        for t in tables:
            best = t.best()
            out.append(
                {
                    "section": section,
                    "title": t.title,
                    "columns": t.columns,
                    "headers": [_header(c) for c in t.columns],
                    "rows": [{"run": name, "values": {c: vals.get(c) for c in t.columns}} for name, vals in t.rows],
                    "best": best,
                }
            )
    return out


def _table_html(t: Table, counts_cols: set[str], stats: dict, flags: dict[str, list[str]]) -> str:
    best = t.best()
    metric_cols = [c for c in t.columns if c not in counts_cols]
    ci = stats.get("available")
    heads = "".join(
        f"<th class='num' title='{html.escape(c)}'>{html.escape(_header(c))}{'' if ci or c not in IMAGE_METRICS and c not in ('aps', 'aps_img') else ' <span class=noci>(no CI)</span>'}</th>"
        for c in metric_cols
    ) + "".join(f"<th class='num count'>{html.escape(c.replace('_', ' '))}</th>" for c in t.columns if c in counts_cols)
    rows = []
    for name, vals in t.rows:
        tds = []
        for c in t.columns:
            v = vals.get(c)
            is_best = _num(v) is not None and t.is_best(name, c, v, best)
            text = _fmt(v)
            interval = (stats.get("ci", {}).get(t.title, {}).get(name, {}) or {}).get(c) if ci else None
            if interval and _num(v) is not None:  # mean ± half-width, as every other format; the bounds on hover
                text += f" <span class='ci' title='[{interval[0]:.4f}, {interval[1]:.4f}]'>± {(interval[1] - interval[0]) / 2:.4f}</span>"
            cls = "num" + (" best" if is_best else "") + (" count" if c in counts_cols else "")
            tds.append(f"<td class='{cls}' data-col='{html.escape(c)}' data-value='{'' if _num(v) is None else repr(float(v))}'>{'★ ' if is_best else ''}{text}</td>")
        flag = flags.get(name) or []
        mark = f" <span class='flag' title='{html.escape('; '.join(flag))}'>⚠ not comparable</span>" if flag else ""
        rows.append(f"<tr><th scope='row'>{html.escape(name)}{mark}</th>{''.join(tds)}</tr>")
    return (
        f"<table class='lb'><caption>{html.escape(t.title)}</caption><thead><tr><th>run</th>{heads}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# ------------------------------------------------------------------------------------------ builder
#: Cache of the statistics and plots, keyed by the digest of the runs' results files.
DERIVED_FILE = ".derived-cache.json"
DERIVED_VERSION = 3  # bump when statistics or plots change


def _inputs_digest(runs: Sequence[RunResult], settings: dict) -> str:
    """sha256 over every results file of the runs, their names and ``settings``."""
    import hashlib

    from stellar import __version__

    h = hashlib.sha256(json.dumps([settings, __version__, [r.name for r in runs]], sort_keys=True, default=str).encode())
    for r in runs:
        for f in ("run.json", "summary.json", "per_image.parquet"):
            with open(r.path / f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _tables_to_json(sections: dict[str, list[Table]]) -> dict:
    return {
        sec: [{"title": t.title, "columns": t.columns, "rows": [[n, v] for n, v in t.rows], "notes": t.notes,
               "comparable": None if t.comparable is None else sorted(t.comparable), "remarks": t.remarks} for t in tables]
        for sec, tables in sections.items()
    }  # fmt: skip


def _tables_from_json(data: dict) -> dict[str, list[Table]]:
    return {
        sec: [Table(t["title"], t["columns"], [(n, v) for n, v in t["rows"]], t["notes"],
                    None if t["comparable"] is None else set(t["comparable"]), t["remarks"]) for t in tables]
        for sec, tables in data.items()
    }  # fmt: skip


def _read_derived(out: Path, digest: str) -> dict | None:
    try:
        cached = json.loads((out / DERIVED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return cached if cached.get("digest") == digest else None


def _dataset_of(runs: Sequence[RunResult], warnings: list[str]):
    root = (runs[0].run.get("dataset") or {}).get("root")
    if not root:
        warnings.append("the runs do not name their dataset folder: input photos and prompt texts are not shown")
        return None
    from stellar.data.dataset import StellarDataset

    try:
        return StellarDataset(root, strict=False)
    except StellarError as exc:
        warnings.append(f"dataset {root} cannot be read ({str(exc).splitlines()[0]}): input photos and prompt texts are not shown")
        return None


def _resolve(path, run_dir: Path) -> str | None:
    if path is None or (isinstance(path, float) and math.isnan(path)) or path == "":
        return None
    if str(path).startswith("/"):  # the engine records absolute paths: no filesystem call needed
        return str(path)
    p = Path(str(path))
    if not p.is_absolute() and not p.exists() and (run_dir / p).exists():
        p = run_dir / p
    return str(p)


def build_html_report(
    runs: Sequence[RunResult],
    out: str | Path,
    *,
    thumb_size: int = 256,
    max_gallery: int | None = None,
    chunk_rows: int = 500,
    workers: int | None = None,
    goa_found_threshold: float = 0.1,
    ci: float | None = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    resample: str = "subject",
    progress: bool = True,
) -> HtmlReport:
    """Write the HTML report of ``runs`` into the folder ``out`` (see the module docstring).

    Args:
        runs: loaded runs (:func:`stellar.report.leaderboard.load_run`), all of one dataset and split.
        out: the report folder (created; files this builder wrote before are replaced).
        thumb_size: longest side of the thumbnails in pixels.
        max_gallery: keep at most this many jobs in the gallery (failures first); None = all.
        chunk_rows: jobs per data file.
        workers: thumbnail processes (default: CPU count).
        goa_found_threshold: a GOA query scoring below it counts as "never found".
        ci, n_boot, seed, resample: the intervals and comparisons (as ``stellar report --ci`` /
            ``stellar compare``); ``ci=None`` shows means only.
        progress: progress bars.

    Raises:
        StellarError: no runs, runs of different datasets/splits, bad sizes, ``out`` is a file.
    """
    started = time.perf_counter()
    if not runs:
        raise StellarError("no runs given")
    if thumb_size < 16 or thumb_size > 2048:
        raise StellarError(f"--thumb-size {thumb_size}: use 16 … 2048 pixels")
    if max_gallery is not None and max_gallery < 1:
        raise StellarError(f"--max-gallery {max_gallery}: use a positive number of jobs")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise StellarError(f"two runs are named alike ({names}); name them with RUN=NAME")
    check_comparable_datasets(runs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StellarError(f"{out}: exists and is not a folder\n  fix: pass a folder for the HTML report (--out REPORT/)")
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []

    # ---- leaderboard (the same tables as every other format) and statistics
    # leaderboard tables, statistics and plots depend only on the results files: reused when those did not change
    stats_settings = {"ci": ci, "n_boot": n_boot, "seed": seed, "resample": resample}
    digest = _inputs_digest(runs, {"stats": stats_settings, "goa": goa_found_threshold, "v": DERIVED_VERSION})
    derived = _read_derived(out, digest)
    if derived:
        sections = _tables_from_json(derived["tables"])
    else:
        sections = leaderboard_sections(runs, ci=ci, n_boot=n_boot, seed=seed, resample=resample) if ci is not None else leaderboard_sections(runs)
    if derived:
        stats = derived["stats"]
    elif ci is None:
        stats = {"available": False, "reason": "intervals hidden (--ci none)"}
    else:
        stats = statistics(runs, sections, **stats_settings)
    counts = {r.name: run_counts(r) for r in runs}
    flags = comparability(runs, counts)

    # ---- metrics shown per image
    # image metrics in METRICS order; face-preset variants (``ips@paper``) after their base metric
    present = list(dict.fromkeys(c for r in runs for c in r.per_image.columns if split_variant(c)[0] in IMAGE_METRICS))
    metric_cols = [c for m in METRICS if m in IMAGE_METRICS for c in present if split_variant(c)[0] == m]
    if any("aps_image" in r.per_image for r in runs):
        metric_cols.append("aps_image")
    def label(c: str) -> str:
        base, variant = split_variant(c)
        return METRICS[base].display_name + (f"@{variant}" if variant else "")

    labels = {m: ("APS-img" if m == "aps_image" else label(m)) for m in metric_cols}

    # ---- jobs: union of the runs' jobs in first-seen order
    dataset = _dataset_of(runs, warnings)
    frames = {r.name: r.per_image.drop_duplicates("name").set_index("name", drop=False) for r in runs}
    order: dict[str, None] = {}
    for r in runs:
        order.update(dict.fromkeys(frames[r.name].index))
    job_names = list(order)
    n_jobs = len(job_names)

    if max_gallery is not None and n_jobs > max_gallery:
        failing: set[str] = set()
        for f in frames.values():
            bad = f["status"] != "ok" if "status" in f else pd.Series(False, index=f.index)
            if "followed_prompt" in f:
                bad |= (f["followed_prompt"] == False).to_numpy()  # noqa: E712
            failing.update(f.index[bad.to_numpy()])
            failing.update(set(job_names) - set(f.index))
        keep = [n for n in job_names if n in failing][:max_gallery]
        keep_set = set(keep)
        keep += [n for n in job_names if n not in keep_set][: max_gallery - len(keep)]
        keep_set = set(keep)
        gallery = [n for n in job_names if n in keep_set]
        warnings.append(f"gallery limited to {len(gallery)} of {n_jobs} jobs (--max-gallery; jobs where a run failed first)")
    else:
        gallery = job_names

    # ---- keys of each job (from the first run that has it) and the input photo
    first_frame = pd.concat([f.reindex(gallery) for f in frames.values()]).groupby(level=0, sort=False).first().reindex(gallery)
    first = dict(zip(gallery, first_frame.to_dict("records")))
    categories: dict[str, int] = {}
    photo_path: dict[str, str | None] = {}
    prompt_text: dict[str, str] = {}
    subjects_cache: dict[str, object] = {}
    for name in gallery:
        row = first[name]
        subject = str(row.get("subject"))
        path = None
        if dataset is not None:
            subj = subjects_cache.get(subject)
            if subj is None and subject in dataset.subjects:
                subj = subjects_cache[subject] = dataset.subjects[subject]
            if subj is not None:
                photo = next((p for p in subj.photos if p.index == int(row.get("photo", -1))), None)
                path = str(photo.path) if photo is not None else None
                prompt = next((p for p in subj.prompts if p.index == int(row.get("prompt_index", -1))), None)
                if prompt is not None:
                    prompt_text[name] = prompt.fill()
        photo_path[name] = path
        for c in row.get("categories") if row.get("categories") is not None else []:
            categories.setdefault(str(c), len(categories))

    # ---- thumbnails (parallel, cached by content hash)
    image_of: dict[tuple[str, str], str | None] = {}
    for r in runs:
        f = frames[r.name]
        if "image" not in f:
            continue
        sub = f.reindex(gallery)
        for name, path in zip(gallery, sub["image"].tolist()):
            image_of[(r.name, name)] = _resolve(path, r.path)
    sources = [p for p in list(photo_path.values()) + list(image_of.values()) if p]
    infos = make_thumbnails(sources, out, thumb_size, workers=workers, progress=progress)
    lost: list[str] = []

    # ---- statuses
    statuses = list(STATUSES)
    for f in frames.values():
        for s in f["status"].unique() if "status" in f else []:
            if s not in statuses:
                statuses.append(str(s))
    status_code = {s: k for k, s in enumerate(statuses)}

    # ---- rows and details, chunked
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    written: set[str] = set()
    n_chunks = max(1, math.ceil(len(gallery) / chunk_rows))
    run_subs = {r.name: dict(zip(gallery, frames[r.name].reindex(gallery).to_dict("records"))) for r in runs}
    failure_counts = {r.name: {"goa_not_found": 0} for r in runs}
    thumbs_used: set[str] = set()
    for k in range(n_chunks):
        names_k = gallery[k * chunk_rows : (k + 1) * chunk_rows]
        rows_k, details_k = [], []
        for name in names_k:
            key = first[name]
            cats = key.get("categories")
            photo = photo_path.get(name)
            pinfo = infos.get(photo) if photo else None
            if photo and pinfo is not None and pinfo.thumb_id is None:
                lost.append(f"input photo {photo}: {pinfo.error}")
            pthumb = pinfo.thumb_id if pinfo is not None else None
            if pthumb:
                thumbs_used.add(pthumb)
            per_run, per_run_detail = [], []
            for r in runs:
                row = run_subs[r.name][name]
                present = isinstance(row.get("name"), str)
                status = str(row.get("status", "ok")) if present else "missing"
                path = image_of.get((r.name, name))
                info = infos.get(path) if path else None
                thumb = info.thumb_id if info is not None else None
                reason = None
                if not present:
                    reason = "job not in this run"
                elif status in NO_IMAGE:
                    reason = status.replace("_", " ")
                    thumb = None if status == "missing" else thumb
                elif path is None:
                    reason = "no image path recorded"
                elif thumb is None:
                    reason = info.error if info is not None else "image not available"
                    lost.append(f"{r.name}: {path} ({name}): {reason}")
                if thumb:
                    thumbs_used.add(thumb)
                followed = row.get("followed_prompt") if present else None
                followed = None if followed is None or (isinstance(followed, float) and math.isnan(followed)) else bool(followed)
                goa = _parse_json(row.get("goa_objects")) if present and "goa_objects" in row else None
                not_found = sorted(q for q, s in (goa or {}).items() if _num(s) is not None and s < goa_found_threshold) if isinstance(goa, dict) else []
                if not_found:
                    failure_counts[r.name]["goa_not_found"] += 1
                per_run.append(
                    [status_code.get(status, 0), thumb, None if followed is None else int(followed), 1 if not_found else 0]
                    + [(_round(row.get(m)) if present and m in row else None) for m in metric_cols]
                )
                per_run_detail.append(
                    {
                        "error": (str(row.get("error")) if present and row.get("error") not in (None, "") and not _is_nan(row.get("error")) else None) or reason,
                        "boxes": _boxes(row.get("face_boxes")) if present and "face_boxes" in row else [],
                        "nfaces": _round(row.get("n_faces_generated"), 0) if present and "n_faces_generated" in row else None,
                        "size": [info.width, info.height] if info is not None and info.width else None,
                        "goa": goa if isinstance(goa, dict) else None,
                        "goa_missing": not_found,
                        "rfs": _parse_json(row.get("rfs_triplets")) if present and "rfs_triplets" in row else None,
                        "ips_raw": _round(row.get("ips_raw")) if present and "ips_raw" in row else None,
                        "clip_n": _round(row.get("clip_n")) if present and "clip_n" in row else None,
                        "path": path,
                    }
                )
            cat_ids = [categories[str(c)] for c in (cats if cats is not None else [])]
            rows_k.append([name, str(key.get("subject")), str(key.get("kind")), cat_ids, pthumb, per_run, prompt_text.get(name)])
            details_k.append({"photo": photo, "runs": per_run_detail})
        for kind, data in (("rows", rows_k), ("detail", details_k)):
            fname = f"{kind}-{k:05d}.js"
            write_if_changed(data_dir / fname, _js_chunk(kind, k, data))
            written.add(fname)
    for old in data_dir.glob("*.js"):
        if old.name not in written and old.name != "meta.js":
            old.unlink()
    for p in unused_thumbnails(out, sorted(thumbs_used), thumb_size):
        p.unlink()

    lost = list(dict.fromkeys(lost))
    if lost:
        warnings.append(f"{len(lost)} image(s) could not be shown (placeholders in the gallery); see warnings.txt")

    # ---- meta (what the page needs to start)
    meta = {
        "runs": names,
        "metrics": metric_cols,
        "labels": labels,
        "higher": {m: (True if m == "aps_image" else METRICS[split_variant(m)[0]].higher_is_better) for m in metric_cols},
        "statuses": statuses,
        "categories": list(categories),
        "n_rows": len(gallery),
        "n_jobs": n_jobs,
        "chunk_rows": chunk_rows,
        "n_chunks": n_chunks,
        "thumb_size": thumb_size,
        "goa_threshold": goa_found_threshold,
        "status_counts": {r.name: {s: int(c) for s, c in frames[r.name]["status"].value_counts().items()} if "status" in frames[r.name] else {} for r in runs},
    }
    write_if_changed(data_dir / "meta.js", _js_chunk("meta", 0, meta))
    lb = leaderboard_json(sections)
    write_if_changed(data_dir / "leaderboard.json", json_bytes({"tables": lb, "statistics": stats}))

    # ---- plots
    plot_html = derived["plots"] if derived else _plots_html(runs, metric_cols, labels)
    if not derived:
        cached = {"digest": digest, "tables": _tables_to_json(sections), "stats": stats, "plots": plot_html}
        atomic_write_bytes(out / DERIVED_FILE, json_bytes(cached, indent=0))

    # ---- page
    index = out / "index.html"
    page = _page(runs, sections, stats, counts, flags, failure_counts, plot_html, warnings, lost, meta)
    write_if_changed(index, page.encode("utf-8"))
    assets = out / "assets"
    assets.mkdir(exist_ok=True)
    static = resources.files("stellar.report.html") / "static"
    for name in ("report.css", "report.js"):
        write_if_changed(assets / name, (static / name).read_bytes())
    atomic_write_text(out / "warnings.txt", "".join(f"{w}\n" for w in warnings + lost))
    return HtmlReport(out, index, warnings, lost, n_jobs, len(gallery), n_chunks, len(thumbs_used), time.perf_counter() - started)


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _plots_html(runs: Sequence[RunResult], metric_cols: list[str], labels: dict[str, str]) -> str:
    frames = {r.name: r.per_image for r in runs}
    metrics = [(m, labels[m]) for m in metric_cols]
    parts = []

    def figure(title: str, svg: str | None, caption: str, missing: str) -> None:
        body = svg if svg else f"<p class='absent'>{html.escape(missing)}</p>"
        parts.append(f"<figure class='plot'><h3>{html.escape(title)}</h3>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")

    figure(
        "Distribution of each metric per run",
        plots.metric_distributions(frames, metrics),
        "Per-image values as averaged (after the exclusion and failure rules: a failed image counts with the metric's worst value).",
        "no per-image metric in these runs",
    )
    heat = []
    for r in runs:
        svg = plots.kendall_heatmap(r.per_image, metrics + ([("ips_raw", "IPS raw")] if "ips_raw" in r.per_image else []), r.name)
        heat.append(f"<div class='heat' data-run='{html.escape(r.name)}'>" + (svg or f"<p class='absent'>{html.escape(r.name)}: fewer than two metrics vary in this run</p>") + "</div>")
    parts.append(
        "<figure class='plot'><h3>Metric–metric correlation per run</h3><div class='tables'>" + "".join(heat) + "</div>"
        "<figcaption>Kendall τ-b between metrics over the images of each run (images where either metric is undefined left out); "
        "IPS raw = IPS before the exclusion rule.</figcaption></figure>"
    )
    sigmas = {r.name: ((r.summary.get("exclusion") or {}).get("sigma") if (r.summary.get("exclusion") or {}).get("applied") else None) for r in runs}
    figure(
        "Identity vs prompt: IPS against CLIP-T",
        plots.identity_prompt_tradeoff(frames, sigmas),
        "IPS before the exclusion rule against CLIP-T (left) and against the margin CLIP-T − CLIP-N (right); an image is excluded (×) when the margin is not above 2σ (dashed line).",
        "no CLIP-T in these runs (no CLIP model was available when they were evaluated): the trade-off cannot be drawn",
    )
    per_attr = {r.name: ((r.summary.get("aps") or {}).get("per_attribute") or {}) for r in runs}
    figure(
        "APS per attribute",
        plots.aps_per_attribute(per_attr, APS_ATTRIBUTES),
        "ROC-AUC of the attribute probes' predictions on the generated images against the input photos' labels; a missing bar is an attribute skipped (one class only).",
        "no APS in these runs",
    )
    return "\n".join(parts)


def _page(runs, sections, stats, counts, flags, failure_counts, plot_html, warnings, lost, meta) -> str:
    esc = html.escape
    counts_cols = set(COUNT_COLUMNS)
    lb_parts = []
    for section, title in (("overall", "Overall"), ("split", "Per prompt kind"), ("category", "Per category (Stellar-T)")):
        tables = sections[section]
        if not tables:
            continue
        lb_parts.append(f"<h3>{title}</h3><div class='tables'>" + "".join(_table_html(t, counts_cols, stats, flags) for t in tables) + "</div>")
    # the leaderboard's remarks (comparability, --partial, different datasets), once
    remarks = dict.fromkeys(r for ts in sections.values() for t in ts for r in t.remarks)
    if remarks:
        lb_parts.insert(0, "".join(f"<p class='remark'>{esc(r)}</p>" for r in remarks))
    if stats.get("available"):
        ci_note = f"{esc(stats.get('note', ''))}; hover a cell for the interval's bounds."
    else:
        ci_note = f"no CI: {esc(stats.get('reason', 'intervals not computed'))}; means only."
    # pairwise verdicts (stellar compare) and probability of being best
    if stats.get("available") and stats.get("pairs"):
        def label(m: str) -> str:
            return _header(m)

        pair_rows = "".join(
            f"<tr><td>{esc(p['a'])}</td><td>{esc(p['b'])}</td><td>{esc(label(p['metric']))}</td><td class='num'>{_fmt(p.get('mean_a'))}</td>"
            f"<td class='num'>{_fmt(p.get('mean_b'))}</td><td class='num'>{_fmt(p.get('diff'))} <span class='ci'>[{_fmt(p.get('diff_lo'))}, {_fmt(p.get('diff_hi'))}]</span></td>"
            f"<td class='num'>{_fmt(p.get('p'))}</td><td class='num'>{_fmt(p.get('p_holm'))}</td>"
            f"<td class='{'verdict-sig' if p.get('verdict', '').endswith('better') else 'verdict-ns'}'>{esc(p.get('verdict', ''))}</td></tr>"
            for p in stats["pairs"]
        )
        cs = stats.get("compare_settings") or {}
        pairs = (
            "<table class='lb pairs'><caption>Pairwise comparisons (<code>stellar compare</code>): Δ = A − B with its interval; "
            f"paired sign-flip permutation test by subject ({esc(str(cs.get('permutation', '')))}), Holm-corrected over {esc(str(cs.get('tests', '')))} tests</caption>"
            "<thead><tr><th>A</th><th>B</th><th>metric</th><th>A</th><th>B</th><th>Δ</th><th>p</th><th>p (Holm)</th><th>verdict</th></tr></thead>"
            f"<tbody>{pair_rows}</tbody></table>"
        )
        names = [r.name for r in runs]
        best_rows = "".join(
            f"<tr><td>{esc(label(b['metric']))}</td>" + "".join(f"<td class='num'>{_fmt(b.get(n))}</td>" for n in names) + "</tr>" for b in stats.get("best") or []
        )
        pairs += (
            "<table class='lb'><caption>Probability of being best (fraction of bootstrap replicates in which the run has the best mean)</caption>"
            f"<thead><tr><th>metric</th>{''.join(f'<th>{esc(n)}</th>' for n in names)}</tr></thead><tbody>{best_rows}</tbody></table>"
        )
    elif len(runs) > 1:
        why = stats.get("pairs_reason") or stats.get("reason", "")
        pairs = f"<p class='absent'>Pairwise significance verdicts: not available ({esc(why)}).</p>"
    else:
        pairs = ""
    # run provenance + counts
    prov = []
    for r in runs:
        c = counts[r.name]
        models = r.run.get("models") or {}
        excl = r.summary.get("exclusion") or {}
        rule = f"applied (σ = {excl['sigma']:.4f})" if excl.get("applied") and excl.get("sigma") is not None else f"not applied ({excl.get('reason', r.run.get('exclusion_rule', '?'))})"
        flag = flags[r.name]
        prov.append(
            "<tr>"
            f"<th scope='row'>{esc(r.name)}</th>"
            f"<td class='num'>{c['rows']}/{c['expected']}</td><td class='num'>{c['missing']}</td><td class='num'>{c['decode_error']}</td>"
            f"<td class='num'>{c['no_face_generated']}</td><td class='num'>{c['excluded']}</td>"
            f"<td>{'<span class=flag>⚠ not comparable: ' + esc('; '.join(flag)) + '</span>' if flag else 'comparable'}</td>"
            f"<td class='mono'>faces: {esc(str(models.get('faces')))}<br>CLIP: {esc(str(models.get('clip')))}"
            + "".join(f"<br>{esc(str(k))}: {esc(str(v))}" for k, v in (models.get("scorers") or {}).items())
            + f"<br>exclusion rule: {esc(rule)}</td>"
            f"<td class='mono'>{esc(str((r.run.get('dataset') or {}).get('fingerprint')))}<br>split {esc(str((r.run.get('config') or {}).get('split')))}"
            f"<br>failure rule {esc(str(c['failure_rule']))}<br>stellar-bench {esc(str((r.run.get('versions') or {}).get('stellar-bench', '?')))}</td>"
            f"<td class='mono'>{esc(str(r.path))}</td>"
            "</tr>"
        )
    prov_html = (
        "<table class='lb prov'><thead><tr><th>run</th><th>images / expected</th><th>missing</th><th>undecodable</th><th>no face</th>"
        "<th>excluded (CLIP rule)</th><th>comparable</th><th>models and presets</th><th>dataset</th><th>run folder</th></tr></thead><tbody>"
        + "".join(prov)
        + "</tbody></table>"
    )
    # failure views: presets of the gallery
    fviews = []
    views = (
        ("no_face_generated", "No face in the generated image", "the face detector found no face: IPS, SIS = 0 and the APS predictions count as wrong"),
        ("excluded", "Excluded by the CLIP rule", "CLIP-T is not above CLIP-N + 2σ (the image does not follow the prompt better than an unedited copy): IPS, SIS = 0"),
        ("decode_error", "Undecodable images", "the generated file exists but cannot be decoded: every metric takes its worst value"),
        ("missing", "Missing images", "no generated image for the job: every metric takes its worst value"),
        ("goa_not_found", "GOA queries never found", f"at least one object of the prompt scored below {meta['goa_threshold']} with the detector (listed when the image is enlarged)"),
        ("no_face_reference", "No face in the input photo", "the reference photo has no detectable face (or cannot be decoded): identity metrics are 0"),
    )
    for key, title, reason in views:
        per = []
        for r in runs:
            if key == "excluded":
                n = counts[r.name]["excluded"]
            elif key == "goa_not_found":
                n = failure_counts[r.name]["goa_not_found"]
            elif key == "no_face_reference":
                n = counts[r.name]["no_face_reference"]
            else:
                n = counts[r.name][key] if key in counts[r.name] else 0
            per.append(f"<button class='fv' data-view='{key}' data-run='{esc(r.name)}' {'disabled' if n == 0 else ''}>{esc(r.name)}: {n}</button>")
        fviews.append(f"<div class='fview'><h3>{esc(title)}</h3><p>{esc(reason)}.</p>{''.join(per)}</div>")
    warn_html = ""
    if warnings or lost:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings) + "".join(f"<li class='mono'>{esc(w)}</li>" for w in lost[:200])
        more = f"<li>… and {len(lost) - 200} more (warnings.txt)</li>" if len(lost) > 200 else ""
        warn_html = f"<section id='warnings' class='warn'><h2>Warnings</h2><ul>{items}{more}</ul></section>"
    template = Template((resources.files("stellar.report.html") / "templates" / "index.html").read_text("utf-8"))
    return template.substitute(
        title=esc("Stellar-Bench report: " + ", ".join(r.name for r in runs)),
        runs=esc(", ".join(r.name for r in runs)),
        n_jobs=meta["n_jobs"],
        warnings=warn_html,
        leaderboard="".join(lb_parts),
        ci_note=ci_note,
        pairs=pairs,
        provenance=prov_html,
        failures="".join(fviews),
        plots=plot_html,
        thumb_size=meta["thumb_size"],
    )
