"""Screenshots of the human-study pages for the README (docs/study-rater.png, docs/study-admin.png).

    PYTHONPATH=src python -m stellar.cli demo --out /tmp/study-demo
    PYTHONPATH=src python -m stellar.cli study create --dataset /tmp/study-demo/dataset \
        --runs /tmp/study-demo/runs/copy /tmp/study-demo/runs/noise /tmp/study-demo/runs/paste --out /tmp/sd-study --pairs 60
    PYTHONPATH=src python docs/study_screenshots.py /tmp/sd-study

Three simulated raters (following the demo's IPS with 10 % flips; one careless) fill the admin
page; a fourth rater's page is captured mid-item. Needs the `study` extra, playwright and a system
Chromium (/usr/bin/chromium). PNGs are quantised to 96 colours to stay small.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image


def main(study: str) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from stellar.study import StudyStore, load_manifest
    from stellar.study.app import create_app
    from stellar.study.simulate import hidden_quality, simulate_raters

    src = load_manifest(study)
    tmp = Path(tempfile.mkdtemp(prefix="study-shots-"))
    shutil.copy(src.path, tmp / "study.json")  # a scratch copy: the screenshots leave the real study untouched
    m = load_manifest(tmp)
    store = StudyStore(m)
    quality = hidden_quality([r["path"] for r in m.data["runs"]])
    simulate_raters(store, quality, ["ana", "ben"], flip=0.03, seed=3, max_items=40)
    simulate_raters(store, quality, ["cat"], flip=0.6, seed=2, max_items=12)
    server = uvicorn.Server(uvicorn.Config(create_app(m, store, admin_token="screenshot-token"), host="127.0.0.1", port=8765, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    out = Path(__file__).resolve().parent
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 960, "height": 980})
        page.goto("http://127.0.0.1:8765/")
        page.fill("#rater-id", "dana")
        page.keyboard.press("Enter")
        page.wait_for_selector("#task:not([hidden])")
        for key in ("ArrowLeft", "ArrowLeft", "b"):  # an item half answered: 3 of 5 aspects chosen
            page.keyboard.press(key)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "study-rater.png"), full_page=True)
        admin = browser.new_page(viewport={"width": 1100, "height": 420})
        admin.goto("http://127.0.0.1:8765/admin#token=screenshot-token")
        admin.wait_for_selector("#rows tr")
        admin.screenshot(path=str(out / "study-admin.png"), full_page=True)
        browser.close()
    server.should_exit = True
    for name in ("study-rater.png", "study-admin.png"):
        path = out / name
        Image.open(path).convert("RGB").quantize(96, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        print(f"{path}: {path.stat().st_size // 1024} KB")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sd-study")
