"""End to end in a real browser: Playwright drives Debian's Chromium against `stellar study serve`'s app.

A rater signs in, answers every item with the keyboard only, reloads the page midway (and in the
middle of an item), undoes one item and answers it again; the export then equals exactly the answers
given. Skipped, with the reason, when Playwright or a system Chromium is missing (``make test``
installs Chromium through apt when it runs as root; ``playwright install`` cannot download here).
"""

from __future__ import annotations

import os
import shutil

import pytest

from stellar.study import StudyStore, judgement_records

from study_helpers import make_study, running_server

KEYS = {"a": "ArrowLeft", "b": "b", "tie": "t"}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no system Chromium (apt-get install chromium; `make test` does it when run as root)")


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])  # root in CI containers
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=args, headless=True)
        try:
            yield b
        finally:
            b.close()


def _choice(item_id: str, k: int) -> str:
    return ("a", "b", "tie")[(int(item_id[1:]) + k) % 3]


def test_rater_answers_with_the_keyboard_reloads_undoes_and_the_export_matches(tmp_path, browser):
    pytest.importorskip("uvicorn")
    from stellar.study.app import create_app

    m, _ = make_study(tmp_path, pairs=6, raters_per_pair=1, gold=0.34, repeat=0, aspects="overall,identity,quality")
    store = StudyStore(m)
    n_items = sum(1 for it in m.items if it["type"] in ("pair", "gold"))
    given: dict[str, dict[str, str]] = {}
    with running_server(create_app(m, store, admin_token="admin-e2e-token")) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#rater-id", "e2e-rater")
        page.keyboard.press("Enter")
        page.wait_for_selector("#task:not([hidden])")
        answered = 0
        undone = False
        while True:
            item = page.get_attribute("#task", "data-item")
            assert item and item in store.items
            if answered == 2 and not undone:
                page.keyboard.press(KEYS[_choice(item, 0)])  # half an item, then reload: nothing half-saved
                page.reload()
                page.wait_for_selector("#task:not([hidden])")
                assert page.get_attribute("#task", "data-item") == item  # resumes at the same, unanswered item
            answers = {a: _choice(item, k + (5 if item in given else 0)) for k, a in enumerate(m.aspect_ids)}
            for a in m.aspect_ids:
                page.keyboard.press(KEYS[answers[a]])
            assert page.locator("#questions button.chosen").count() == len(m.aspect_ids)
            page.keyboard.press("Enter")
            page.wait_for_function("prev => document.querySelector('#task').dataset.item !== prev", arg=item)
            given[item] = answers
            answered += 1
            if answered == 3 and not undone:
                page.keyboard.press("u")  # undo: the last item comes back, answered again differently below
                page.wait_for_function("prev => document.querySelector('#task').dataset.item === prev", arg=item)
                undone = True
                continue
            if answered == 4:
                page.reload()
            if page.is_visible("#done"):
                break
            page.wait_for_selector("#task:not([hidden]), #done:not([hidden])")
            if page.is_visible("#done"):
                break
        assert "All done" in page.inner_text("#done")
        progress = page.inner_text("#progress-text")
        assert progress.startswith(f"{n_items} done, 0 left")
        # the admin page shows the rater
        admin = browser.new_page()
        admin.goto(url + "/admin#token=admin-e2e-token")
        admin.wait_for_selector("#rows tr")
        assert "e2e-rater" in admin.inner_text("#rows")
    records = judgement_records(store)
    got = {(r["item"], r["aspect"]): r["choice"] for r in records}
    want = {(i, a): c for i, ans in given.items() for a, c in ans.items()}
    assert len(given) == n_items and got == want
    for r in records:
        it = store.items[r["item"]]
        assert (r["rater"], r["job"], r["a"], r["b"]) == ("e2e-rater", it["job"], it["a"]["run"], it["b"]["run"])
        assert r["time_ms"] >= 0
