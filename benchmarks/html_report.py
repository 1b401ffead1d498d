"""HTML report at scale (issue: visual report): build time, incremental rebuild, page weight, browser.

Setup: a synthetic dataset of ``--subjects`` test subjects × 2 photos × (50 T + 50 H) prompts
(200 subjects = 40,000 jobs, the size of the Stellar test split) and three synthetic finished runs
(``tests/html_report_helpers.write_synthetic_run``: results-contract columns, random scores, 10 %
no-face, 1 % missing, 1 % undecodable) with one distinct ``--image-size`` px PNG per job.

Measured:
1. **Cold build** of ``stellar report A B C --format html`` (thumbnails made in parallel by
   ``--workers`` processes, statistics included when ``stellar.report.stats`` is installed).
2. **Incremental rebuild** with nothing changed (stat cache: no image re-read), and after replacing
   1 % of one run's images (only those re-hashed and re-thumbnailed).
3. **Page weight**: bytes the browser loads to show the first gallery page (index.html, assets,
   meta.js, the first row/detail chunk, the thumbnails of the first page), against the whole folder;
   the same number at 1/10 of the jobs shows that it does not grow with the number of images.
4. **Browser** (Playwright + the system chromium, ``file://``): time until the first gallery page
   is drawn; time of the first filter (loads every row chunk) and of a sort over all jobs.

Run: ``python benchmarks/html_report.py [--subjects 200] [--workers N] [--keep DIR]`` (~10-20 min
on 2 shared cores, most of it writing the 120,000 synthetic images).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic run writer shared with the tests


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_runs(work: Path, subjects: int, image_size: int) -> list[Path]:
    from html_report_helpers import write_synthetic_run

    from stellar.testing import make_synthetic_dataset

    root = work / "STELLAR"
    if not root.is_dir():
        make_synthetic_dataset(root, subjects, photos=2, t_prompts=50, h_prompts=50, size=96)
    runs = []
    for k, name in enumerate(("method-a", "method-b", "method-c")):
        if (work / "runs" / name / "summary.json").is_file():  # --keep: reuse the runs of an earlier invocation
            runs.append(work / "runs" / name)
            continue
        t = time.perf_counter()
        runs.append(write_synthetic_run(work / "runs" / name, root, name, seed=k, image_size=image_size, p_no_face=0.1, p_missing=0.01, p_decode_error=0.01))
        print(f"  wrote run {name} in {time.perf_counter() - t:.0f} s", flush=True)
    return runs


def build(runs: list[Path], out: Path, workers: int | None) -> tuple[float, object]:
    from stellar.report.html import build_html_report
    from stellar.report.leaderboard import load_run

    t = time.perf_counter()
    rep = build_html_report([load_run(r) for r in runs], out, workers=workers, progress=False)
    return time.perf_counter() - t, rep


def browser_times(index: Path) -> dict:
    from playwright.sync_api import sync_playwright

    exe = os.environ.get("STELLAR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return {"skipped": "no chromium"}
    out: dict = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        t = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=120000)
        out["first_page_s"] = time.perf_counter() - t
        page.locator("#grid tbody tr").first.scroll_into_view_if_needed()
        page.wait_for_load_state("networkidle")
        # what the first gallery page needs: the page, its assets, the start-up data, the first row chunk and the
        # thumbnails of the rows shown (Playwright does not report file:// image requests)
        srcs = page.evaluate("Array.from(document.querySelectorAll('#grid img')).map(i => i.src)")
        files = {index, index.parent / "assets" / "report.css", index.parent / "assets" / "report.js", index.parent / "data" / "meta.js",
                 index.parent / "data" / "rows-00000.js"}  # fmt: skip
        files |= {Path(u[len("file://") :]) for u in srcs if u.startswith("file://")}
        out["initial_requests"] = len(files)
        out["initial_bytes"] = sum(p.stat().st_size for p in files)
        t = time.perf_counter()
        page.select_option("#f-status", label="no_face_generated")
        page.wait_for_function("() => window.stellarReport.state.view !== null && !window.stellarReport.state.loading", timeout=300000)
        out["first_filter_s"] = time.perf_counter() - t
        out["filter_rows"] = page.evaluate("window.stellarReport.state.view.length")
        page.select_option("#f-status", "")
        t = time.perf_counter()
        page.select_option("#f-sort", "range:ips")
        page.wait_for_function("() => window.stellarReport.state.view !== null && window.stellarReport.state.view.length > 0 && !window.stellarReport.state.loading")
        out["sort_all_s"] = time.perf_counter() - t
        b.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=200, help="test subjects (×200 jobs each; 200 = 40,000 jobs)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="thumbnail processes (default: CPU count)")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="stellar-html-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for label, subjects in (("small", max(1, args.subjects // 10)), ("full", args.subjects)):
            print(f"[{label}] {subjects} subjects: writing 3 synthetic runs …", flush=True)
            runs = make_runs(work / label, subjects, args.image_size)
            out = work / label / "report"
            shutil.rmtree(out, ignore_errors=True)  # a cold build
            cold, rep = build(runs, out, args.workers)
            print(f"  cold build {cold:.1f} s ({rep.thumbnails} thumbnails, {rep.n_chunks} chunks)", flush=True)
            again, _ = build(runs, out, args.workers)
            print(f"  rebuild (nothing changed) {again:.1f} s", flush=True)
            # replace 1 % of one run's images
            import pandas as pd
            from PIL import Image

            frame = pd.read_parquet(runs[1] / "per_image.parquet")
            paths = frame.loc[frame["status"] == "ok", "image"].iloc[:: 100].tolist()
            for k, p in enumerate(paths):
                Image.new("RGB", (args.image_size, args.image_size), (k % 256, 10, 200)).save(p)
            changed, _ = build(runs, out, args.workers)
            print(f"  rebuild ({len(paths)} images replaced) {changed:.1f} s", flush=True)
            b = browser_times(rep.index)
            print(f"  browser: {b}", flush=True)
            results[label] = {
                "jobs": rep.n_jobs, "images": 3 * rep.n_jobs, "cold": cold, "again": again, "changed": changed, "n_changed": len(paths),
                "folder_mb": folder_bytes(out) / 2**20, "index_kb": rep.index.stat().st_size / 1024, **b,
            }  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"Machine: {os.cpu_count()} CPU cores, Python {platform.python_version()}, {platform.system()}; thumbnail workers {args.workers or os.cpu_count()}.")
    print()
    print("| jobs | images | cold build s | rebuild, nothing changed s | rebuild, 1 % replaced s | report folder MiB | index.html KiB | initial load: files / KiB | first page drawn s | first filter (all chunks) s | sort all s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results.values():
        print(
            f"| {r['jobs']:,} | {r['images']:,} | {r['cold']:.1f} | {r['again']:.1f} | {r['changed']:.1f} ({r['n_changed']} images) | {r['folder_mb']:.1f} | {r['index_kb']:.0f} | "
            f"{r.get('initial_requests', '–')} / {r.get('initial_bytes', 0) / 1024:.0f} | {r.get('first_page_s', float('nan')):.2f} | {r.get('first_filter_s', float('nan')):.2f} | {r.get('sort_all_s', float('nan')):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
