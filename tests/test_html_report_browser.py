"""The HTML report of the demo runs in a real browser (Playwright driving Debian's chromium).

Skipped, with the reason, when Playwright or a chromium binary is missing (``apt-get install
chromium``; ``playwright install`` is not needed: the system browser is driven through
``executable_path``). The page is opened from ``file://``, as a user opens it from disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from stellar.report.html import build_html_report
from stellar.report.leaderboard import load_run

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    env = os.environ.get("STELLAR_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'stellar-bench[dev]')")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium found (apt-get install chromium, or set STELLAR_CHROMIUM=/path/to/chrome)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--allow-file-access-from-files"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo_report(demo_dataset, tmp_path_factory):
    """The demo's three runs (copy, noise, paste) and their HTML report, built once for the module.

    ``face_boxes`` (the generated image's face boxes, results contract) is written by the engine
    branch; where a run lacks the column, a copy of the run gets boxes for its ``ok`` rows so the
    drawing is exercised (the box is what the test checks, not the detector).
    """
    from stellar.demo import run_demo

    out = tmp_path_factory.mktemp("html-demo")
    if os.environ.get("STELLAR_TEST_DEMO_OUT"):  # reuse a finished `stellar demo --out DIR` (faster local iteration)
        shutil.copytree(os.environ["STELLAR_TEST_DEMO_OUT"], out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("report*"))
        build_html_report([load_run(out / "runs" / m) for m in ("copy", "noise", "paste")], out / "report", progress=False)
    else:
        assert run_demo(out, size=64, offline=True, progress=False) == 0
    assert (out / "report" / "index.html").is_file()  # the demo builds the HTML report itself
    runs = []
    for name in ("copy", "noise", "paste"):
        run_dir = out / "runs" / name
        frame = pd.read_parquet(run_dir / "per_image.parquet")
        if "face_boxes" not in frame:
            run_dir = shutil.copytree(run_dir, out / "runs-with-boxes" / name)
            frame["face_boxes"] = [[[8.0, 6.0, 40.0, 50.0, 0.98]] if s == "ok" else [] for s in frame["status"]]
            frame.to_parquet(run_dir / "per_image.parquet", index=False)
        runs.append(load_run(run_dir, name))
    report = build_html_report(runs, out / "report-boxes", progress=False)
    return out, runs, report


def _open(browser, index: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(index.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    return page, problems


def _view(page) -> list[str]:
    page.wait_for_function("() => !window.stellarReport.state.loading")
    return page.evaluate("window.stellarReport.viewNames()")


def test_demo_report_loads_without_errors(browser, demo_report):
    out, runs, _ = demo_report
    for index in (out / "report" / "index.html", out / "report-boxes" / "index.html"):
        page, problems = _open(browser, index)
        page.wait_for_load_state("networkidle")
        assert page.locator("table.lb").count() >= 3
        assert page.inner_text("#g-status").startswith(f"{len(runs[0].per_image)} of {len(runs[0].per_image)} jobs")
        imgs = page.locator("#grid img")
        assert imgs.count() >= 20
        # every thumbnail shown really decoded
        page.locator("#grid tbody tr").first.scroll_into_view_if_needed()  # thumbnails load lazily, when visible
        page.wait_for_function("Array.from(document.querySelectorAll('#grid tbody tr:first-child img')).every(i => i.complete && i.naturalWidth > 0)")
        page.click("#g-next")
        page.wait_for_function("document.getElementById('g-page').textContent.startsWith('page 2')")
        page.wait_for_load_state("networkidle")
        assert problems == []
        page.close()


def test_filter_by_status_shows_exactly_the_parquet_rows(browser, demo_report):
    _, runs, report = demo_report
    page, problems = _open(browser, report.index)
    for k, run in enumerate(runs):
        expected = run.per_image.loc[run.per_image["status"] == "no_face_generated", "name"].tolist()
        page.select_option("#f-run", str(k))
        page.select_option("#f-status", label="no_face_generated")
        assert _view(page) == expected
        shown = page.locator("#grid tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
        assert shown == expected[:20]
        for cell in page.locator(f"#grid tbody td[data-run='{run.name}']").all():
            assert cell.get_attribute("data-status") == "no_face_generated"
    assert len(runs[1].per_image) == sum(runs[1].per_image["status"] == "no_face_generated")  # noise: all
    # "any run" is the union over runs
    page.select_option("#f-run", "")
    union = set().union(*(set(r.per_image.loc[r.per_image["status"] == "no_face_generated", "name"]) for r in runs))
    assert set(_view(page)) == union
    # the failure-view button of a run opens the same filtered gallery, with its reason
    page.click("button.fv[data-view='no_face_generated'][data-run='noise']")
    assert _view(page) == runs[1].per_image.loc[runs[1].per_image["status"] == "no_face_generated", "name"].tolist()
    assert "No face in the generated image" in page.inner_text("#view-reason")
    assert problems == []
    page.close()


def test_sorting_by_ips_is_monotone(browser, demo_report):
    _, runs, report = demo_report
    page, problems = _open(browser, report.index)
    for k, run in enumerate(runs):
        ips = run.per_image.set_index("name")["ips"]
        for desc in (False, True):
            page.set_checked("#f-desc", desc)
            page.select_option("#f-sort", f"run:ips:{k}")
            order = _view(page)
            values = [ips[n] for n in order]
            assert sorted(order) == sorted(ips.index)
            assert values == sorted(values, reverse=desc)
            shown = [float(t) for t in page.locator(f"#grid tbody td[data-run='{run.name}'] b[data-metric='ips']").all_inner_texts()]
            assert shown == sorted(shown, reverse=desc) and len(shown) == 20
    # "worst IPS": the lowest IPS over the runs, ascending
    page.click("#p-worst")
    worst = pd.concat([r.per_image.set_index("name")["ips"] for r in runs], axis=1).min(axis=1)
    values = [worst[n] for n in _view(page)]
    assert values == sorted(values)
    assert problems == []
    page.close()


def test_enlarging_an_image_draws_its_face_boxes(browser, demo_report):
    _, runs, report = demo_report
    page, problems = _open(browser, report.index)
    copy = runs[0].per_image
    row = copy[copy["status"] == "ok"].iloc[0]
    boxes = [list(b) for b in row["face_boxes"]]
    assert boxes, "the copy run's first ok image has a face"
    cell = page.locator(f"#grid tbody tr[data-name='{row['name']}'] td[data-run='copy'] img")
    cell.click()
    page.wait_for_selector("#modal:not([hidden]) .fbox")
    assert page.locator("#modal .fbox").count() == len(boxes)
    frame = page.locator("#m-frame").bounding_box()
    box = page.locator("#modal .fbox").first.bounding_box()
    from PIL import Image

    w, h = Image.open(row["image"]).size
    x0, y0, x1, y1 = boxes[0][:4]
    tol = 3  # pixels (2 px border + rounding)
    assert abs(box["x"] - (frame["x"] + x0 / w * frame["width"])) <= tol
    assert abs(box["y"] - (frame["y"] + y0 / h * frame["height"])) <= tol
    assert abs(box["width"] - (x1 - x0) / w * frame["width"]) <= tol
    assert abs(box["height"] - (y1 - y0) / h * frame["height"]) <= tol
    assert "status ok" in page.inner_text("#m-info")
    page.keyboard.press("Escape")
    assert page.locator("#modal").is_hidden()
    # a noise image has no face: no box drawn
    page.locator(f"#grid tbody tr[data-name='{row['name']}'] td[data-run='noise'] img").click()
    page.wait_for_selector("#modal:not([hidden])")
    assert page.locator("#modal .fbox").count() == 0 and "no_face_generated" in page.inner_text("#m-info")
    assert problems == []
    page.close()
