"""The HTML report's data (stellar.report.html): numbers, chunks, thumbnails, bad input, CLI."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from html_report_helpers import write_synthetic_run

from stellar.cli import main
from stellar.errors import StellarError
from stellar.report.html import build_html_report
from stellar.report.html.plots import kendall_tau_matrix
from stellar.report.leaderboard import leaderboard, load_run, render
from stellar.testing import make_synthetic_dataset


@pytest.fixture
def runs(tmp_path):
    root = make_synthetic_dataset(tmp_path / "STELLAR", 3, t_prompts=4, h_prompts=2, size=48)
    a = write_synthetic_run(tmp_path / "runs" / "alpha", root, "alpha", seed=0, p_no_face=0.2, p_missing=0.1, p_decode_error=0.1)
    b = write_synthetic_run(tmp_path / "runs" / "beta", root, "beta", seed=1, p_no_face=0.3)
    return [a, b]


def read_chunks(out: Path, kind: str) -> list:
    rows = []
    for f in sorted((out / "data").glob(f"{kind}-*.js")):
        m = re.fullmatch(r'window\.__stellarChunk\("(\w+)",(\d+),(.*)\);\n', f.read_text(), re.S)
        assert m and m.group(1) == kind
        rows += json.loads(m.group(3))
    return rows


def read_meta(out: Path) -> dict:
    text = (out / "data" / "meta.js").read_text()
    return json.loads(text[text.index(",0,") + 3 : text.rindex(");")])


def test_leaderboard_numbers_equal_csv(runs, tmp_path):
    loaded = [load_run(r) for r in runs]
    out = tmp_path / "report"
    build_html_report(loaded, out, progress=False, workers=1)
    data = json.loads((out / "data" / "leaderboard.json").read_text())
    csv_rows = []
    for by in (None, "split", "category"):
        csv_rows += list(csv.reader(io.StringIO(render(leaderboard(loaded, by=by), "csv"))))
    tables = {}
    for row in csv_rows:
        if len(row) > 1 and row[1].startswith("# "):  # a remark under the table
            continue
        if row[0] == "table":
            header = row
            continue
        tables[(row[0], row[1])] = dict(zip(header[2:], row[2:]))
    page = {}
    for t in data["tables"]:
        for r in t["rows"]:
            page[(t["title"], r["run"])] = {h: r["values"][c] for h, c in zip(t["headers"], t["columns"])}
    assert set(page) == set(tables) and len(tables) >= 2 + 2 * 2 + 2  # overall, per kind, categories
    compared = 0
    for key, cells in tables.items():
        for head, text in cells.items():
            v = page[key][head]
            expected = "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
            assert text.rstrip("*") == expected, (key, head)
            compared += 1
    assert compared > 30
    # and the HTML tables show the same cells (best values starred where the csv has "*")
    html = (out / "index.html").read_text()
    shown = {}
    for caption, body in re.findall(r"<table class='lb'><caption>(.*?)</caption>.*?<tbody>(.*?)</tbody>", html, re.S):
        for run, cells in re.findall(r"<tr><th scope='row'>([^<]*)(?:<span[^>]*>[^<]*</span>)?</th>(.*?)</tr>", body, re.S):
            shown[(caption, run.strip())] = re.findall(r"<td class='[^']*' data-col='[^']*' data-value='[^']*'>((?:★ )?[^<]*?)\s*(?:<span|</td>)", cells)
    for (title, run), cells in tables.items():
        assert [("★ " + t.rstrip("*")) if t.endswith("*") else t for t in cells.values()] == shown[(title, run)], (title, run)
    # a missing image counts as a failure: the run with missing jobs is flagged, the other is not
    prov = html.split("Runs: where", 1)[1].split("</table>", 1)[0]
    alpha, beta = prov.split("<th scope='row'>alpha</th>")[1].split("</tr>")[0], prov.split("<th scope='row'>beta</th>")[1].split("</tr>")[0]
    n_missing = int((loaded[0].per_image["status"] == "missing").sum())
    assert n_missing and f"⚠ not comparable: {n_missing} of {len(loaded[0].per_image)} expected job(s) have no image" in alpha
    assert "not comparable" not in beta and "comparable" in beta
    try:
        from stellar.report import stats
    except ImportError:  # intervals absent until the statistics layer is installed, and labelled so
        assert "no CI" in html and data["statistics"]["available"] is False
    else:
        iv = stats.bootstrap_intervals(loaded[0].per_image, ["ips"], n_boot=1000, seed=0)["ips"]
        assert data["statistics"]["ci"]["Leaderboard"]["alpha"]["ips"] == [iv.lo, iv.hi]
        assert f"title='[{iv.lo:.4f}, {iv.hi:.4f}]'>± {(iv.hi - iv.lo) / 2:.4f}<" in html and "no CI" not in html
        # the same ± as `stellar report --format md`
        md = render(leaderboard(loaded, ci=0.95), "md")
        assert f"± {iv.half_width:.4f}" in md
        assert data["statistics"]["pairs"] or data["statistics"]["pairs_reason"] in html


def test_chunks_hold_every_job_with_the_parquet_statuses(runs, tmp_path):
    loaded = [load_run(r) for r in runs]
    out = tmp_path / "report"
    rep = build_html_report(loaded, out, chunk_rows=7, progress=False, workers=1)
    meta = read_meta(out)
    rows = read_chunks(out, "rows")
    details = read_chunks(out, "detail")
    frame = loaded[0].per_image
    assert [r[0] for r in rows] == list(frame["name"]) and len(details) == len(rows)
    assert meta["n_chunks"] == rep.n_chunks == -(-len(frame) // 7)
    for k, run in enumerate(loaded):
        f = run.per_image.set_index("name")
        got = {r[0]: meta["statuses"][r[5][k][0]] for r in rows}
        assert got == f["status"].to_dict()
        ips = {r[0]: r[5][k][4 + meta["metrics"].index("ips")] for r in rows}
        assert all(ips[n] == round(v, 4) for n, v in f["ips"].items())
        # missing / undecodable images have no thumbnail; every other one has a file
        for r in rows:
            st, thumb = meta["statuses"][r[5][k][0]], r[5][k][1]
            assert (thumb is None) == (st in ("missing", "decode_error"))
            if thumb:
                assert (out / "thumbs" / thumb[:2] / f"{thumb}-256.jpg").is_file()
    # details: prompt text from the dataset, GOA queries, RFS triplets and face boxes
    assert all("a person" in r[6] for r in rows)
    assert any(x["runs"][1]["goa"] for x in details) and any(x["runs"][1]["rfs"] for x in details)
    assert any(x["runs"][1]["boxes"] for x in details)
    # the page itself does not hold per-image data: it loads meta.js, which names the chunks
    html = (out / "index.html").read_text()
    assert not any(n in html for n in frame["name"])
    assert re.findall(r'<script src="([^"]+)"', html) == ["assets/report.js", "data/meta.js"]
    assert "window.__stellarChunk" in (out / "assets" / "report.js").read_text()


def test_initial_page_weight_does_not_grow_with_images(tmp_path):
    sizes = {}
    for n in (2, 12):
        root = make_synthetic_dataset(tmp_path / f"D{n}" / "STELLAR", n, t_prompts=4, h_prompts=2, size=32)
        run = write_synthetic_run(tmp_path / f"D{n}" / "run", root, "m", image_size=16)
        out = tmp_path / f"D{n}" / "report"
        build_html_report([load_run(run)], out, chunk_rows=10, progress=False, workers=1)
        sizes[n] = ((out / "index.html").stat().st_size, (out / "data" / "meta.js").stat().st_size, len(list((out / "data").glob("rows-*.js"))))
    assert sizes[12][2] > sizes[2][2]  # more images → more chunks ...
    assert abs(sizes[12][1] - sizes[2][1]) < 200  # ... but the same start-up data
    assert sizes[12][0] < 1.25 * sizes[2][0]  # and a page of the same size (plots are rasters / fixed bins)


def test_thumbnails_are_cached_by_content_and_rebuilt_incrementally(runs, tmp_path, monkeypatch):
    import stellar.report.html.thumbs as thumbs

    loaded = [load_run(r) for r in runs]
    out = tmp_path / "report"
    build_html_report(loaded, out, progress=False, workers=1)
    first = {p: p.stat().st_mtime_ns for p in (out / "thumbs").glob("*/*.jpg")}
    calls = []
    real = thumbs._make_one
    monkeypatch.setattr(thumbs, "_make_one", lambda task: calls.append(task[0]) or real(task))
    build_html_report(loaded, out, progress=False, workers=1)
    assert calls == []  # nothing re-hashed, nothing re-made
    assert {p: p.stat().st_mtime_ns for p in (out / "thumbs").glob("*/*.jpg")} == first
    # one image replaced: only it is processed; its old thumbnail is pruned
    frame = loaded[1].per_image
    target = Path(frame.loc[frame["status"] == "ok", "image"].iloc[0])
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(target)
    build_html_report(loaded, out, progress=False, workers=1)
    assert calls == [str(target)]
    assert len(list((out / "thumbs").glob("*/*.jpg"))) == len(first)


def test_parallel_thumbnails_equal_serial(runs, tmp_path):
    from stellar.report.html.thumbs import make_thumbnails

    paths = [p for p in load_run(runs[1]).per_image["image"].dropna()]
    serial = make_thumbnails(paths, tmp_path / "a", 24, workers=1, progress=False)
    parallel = make_thumbnails(paths, tmp_path / "b", 24, workers=2, progress=False)
    assert serial == parallel and len(paths) > 32
    files = lambda d: {p.relative_to(d): p.read_bytes() for p in (d / "thumbs").glob("*/*.jpg")}  # noqa: E731
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_moved_images_become_placeholders_with_a_warning(runs, tmp_path, capsys):
    loaded = [load_run(r) for r in runs]
    frame = loaded[1].per_image
    gone = [Path(p) for p in frame.loc[frame["status"] == "ok", "image"].iloc[:2]]
    for p in gone:
        p.unlink()
    out = tmp_path / "report"
    assert main(["report", str(runs[0]), str(runs[1]), "--format", "html", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 image(s) could not be shown" in printed
    for p in gone:
        assert str(p) in printed and str(p) in (out / "warnings.txt").read_text()
    rows = {r[0]: r for r in read_chunks(out, "rows")}
    for p in gone:
        assert rows[p.stem][5][1][1] is None  # no thumbnail: the page draws a placeholder
    assert "could not be shown" in (out / "index.html").read_text()


def test_runs_of_different_datasets_are_refused(tmp_path):
    root = make_synthetic_dataset(tmp_path / "STELLAR", 2, size=32)
    a = write_synthetic_run(tmp_path / "a", root, "a", fingerprint="sha256:aaa", image_size=16)
    b = write_synthetic_run(tmp_path / "b", root, "b", fingerprint="sha256:bbb", image_size=16)
    with pytest.raises(StellarError, match=r"different datasets.*sha256:aaa.*sha256:bbb"):
        build_html_report([load_run(a), load_run(b)], tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    assert main(["report", str(a), str(b), "--format", "html", "--out", str(tmp_path / "r")]) == 2


def test_cli_html_defaults_to_run_report_and_terminal_report_unchanged(runs, capsys):
    assert main(["report", str(runs[0]), "--format", "html", "--quiet", "--thumb-size", "64"]) == 0
    assert (runs[0] / "report" / "index.html").is_file()
    assert read_meta(runs[0] / "report")["thumb_size"] == 64
    assert next((runs[0] / "report" / "thumbs").glob("*/*-64.jpg"))
    capsys.readouterr()
    assert main(["report", str(runs[0]), str(runs[1])]) == 0
    assert "| alpha |" in capsys.readouterr().out
    assert main(["report", str(runs[0]), "--format", "html", "--thumb-size", "4", "--out", str(runs[0] / "r2")]) == 2
    assert main(["report", str(runs[0]), "--format", "html", "--ci", "none", "--quiet", "--out", str(runs[0] / "r3")]) == 0
    assert "no CI: intervals hidden (--ci none)" in (runs[0] / "r3" / "index.html").read_text()


def test_max_gallery_keeps_failures_first(runs, tmp_path):
    loaded = [load_run(r) for r in runs]
    rep = build_html_report(loaded, tmp_path / "report", max_gallery=5, progress=False, workers=1)
    rows = read_chunks(tmp_path / "report", "rows")
    assert rep.n_gallery == len(rows) == 5 and rep.n_jobs == len(loaded[0].per_image)
    meta = read_meta(tmp_path / "report")
    assert all(any(meta["statuses"][p[0]] != "ok" or p[2] == 0 for p in r[5]) for r in rows)
    assert any("gallery limited to 5" in w for w in rep.warnings)


def test_failure_views_and_plots_are_on_the_page(runs, tmp_path):
    loaded = [load_run(r) for r in runs]
    out = tmp_path / "report"
    build_html_report(loaded, out, progress=False, workers=1)
    html = (out / "index.html").read_text()
    n_no_face = int((loaded[0].per_image["status"] == "no_face_generated").sum())
    assert f"data-view='no_face_generated' data-run='alpha' >alpha: {n_no_face}<" in html
    n_excl = int((loaded[1].per_image["followed_prompt"] == False).sum())  # noqa: E712
    assert f"data-view='excluded' data-run='beta' >beta: {n_excl}<" in html
    for title in ("Distribution of each metric", "Metric–metric correlation per run", "IPS against CLIP-T", "APS per attribute"):
        section = html.split(title, 1)[1].split("</figure>", 1)[0]
        assert "<svg" in section, title
    heat = html.split("Metric–metric correlation per run", 1)[1].split("</figure>", 1)[0]
    assert heat.count("<svg") == 2 and "data-run='alpha'" in heat and "data-run='beta'" in heat
    assert "threshold 2σ" in html  # the exclusion threshold is drawn


def test_statistics_and_plots_are_reused_until_a_results_file_changes(runs, tmp_path, monkeypatch):
    import stellar.report.html.builder as builder

    loaded = [load_run(r) for r in runs]
    out = tmp_path / "report"
    build_html_report(loaded, out, progress=False, workers=1)
    page = (out / "index.html").read_bytes()
    calls = []
    real = builder._plots_html
    monkeypatch.setattr(builder, "_plots_html", lambda *a: calls.append(1) or real(*a))
    build_html_report(loaded, out, progress=False, workers=1)
    assert calls == [] and (out / "index.html").read_bytes() == page
    frame = loaded[1].per_image.copy()
    frame.loc[0, "ips"] = 0.123
    frame.to_parquet(runs[1] / "per_image.parquet", index=False)
    build_html_report([load_run(r) for r in runs], out, progress=False, workers=1)
    assert calls == [1]


def test_kendall_tau_matrix_known_answers():
    x = np.array([1.0, 2, 3, 4, 5])
    frame = pd.DataFrame({"a": x, "b": 2 * x, "c": -x, "d": [1.0, 2, np.nan, 4, 3], "e": [1.0, 1, 1, 1, 1]})
    tau = kendall_tau_matrix(frame, ["a", "b", "c", "d", "e"])
    assert tau.loc["a", "b"] == pytest.approx(1.0) and tau.loc["a", "c"] == pytest.approx(-1.0)
    # d over the 4 rows where it is defined: pairs (1,2,4,5)x(1,2,4,3): 5 concordant, 1 discordant
    assert tau.loc["a", "d"] == pytest.approx((5 - 1) / 6)
    assert np.isnan(tau.loc["a", "e"])  # a constant column has no rank correlation
