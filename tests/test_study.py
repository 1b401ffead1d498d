"""Human study: manifest sampling, SQLite assignment rules, the HTTP API and the export."""

from __future__ import annotations

import collections
import json
import threading

import pandas as pd
import pytest

from stellar.cli import main
from stellar.study import StudyError, StudyStore, create_study, judgement_records, load_manifest
from stellar.study.manifest import parse_aspects
from stellar.study.simulate import hidden_quality, simulate_raters
from stellar.study.store import RequestError

from study_helpers import make_runs, make_study


# ------------------------------------------------------------------------------------------ create
def test_create_balances_kinds_subjects_and_run_pairs_and_is_reproducible(tmp_path):
    m, runs = make_study(tmp_path, pairs=36)
    pairs = [it for it in m.items if it["type"] == "pair"]
    assert len(pairs) == 36
    assert collections.Counter(it["kind"] for it in pairs) == {"T": 18, "H": 18}
    assert set(collections.Counter(it["subject"] for it in pairs).values()) == {9}
    by_rp = collections.Counter((it["kind"], tuple(sorted((it["a"]["run"], it["b"]["run"])))) for it in pairs)
    assert set(by_rp.values()) == {6}  # 3 run pairs × 2 kinds, 6 each
    combos = [(it["job"], tuple(sorted((it["a"]["run"], it["b"]["run"])))) for it in pairs]
    assert len(set(combos)) == len(combos)  # a (job, run pair) is never drawn twice
    lefts = collections.Counter(it["a"]["run"] for it in pairs)
    assert all(n > 0 for n in lefts.values())  # left/right randomised
    # repeats: the same pair, sides swapped; gold: a known answer on identity
    items = m.item_map()
    repeats = [it for it in m.items if it["type"] == "repeat"]
    assert len(repeats) == round(0.1 * 36)
    for r in repeats:
        o = items[r["repeat_of"]]
        assert (r["job"], r["a"], r["b"]) == (o["job"], o["b"], o["a"])
    golds = [it for it in m.items if it["type"] == "gold"]
    assert len(golds) == round(0.1 * 36)
    for g in golds:
        true_side = g[g["gold"]["answer"]]
        assert g["gold"]["aspect"] == "identity" and true_side["run"] == "reference"
        assert m.images[true_side["image"]]["path"].startswith(str(tmp_path / "STELLAR" / g["subject"]))
    # every image known with its sha256; ids are opaque
    for it in m.items:
        for side in ("a", "b"):
            assert it[side]["image"] in m.images
            assert it[side]["run"] not in it[side]["image"]
    # same seed -> same manifest bytes; another seed -> another sample
    again = create_study(tmp_path / "STELLAR", [str(r) for r in runs], tmp_path / "again", pairs=36, raters_per_pair=2, gold=0.1, repeat=0.1, progress=False)
    assert again.path.read_bytes() == m.path.read_bytes()
    other = create_study(tmp_path / "STELLAR", [str(r) for r in runs], tmp_path / "other", pairs=36, raters_per_pair=2, gold=0.1, repeat=0.1, seed=1, progress=False)
    assert other.items != m.items


def test_create_with_a_noise_run_uses_it_as_gold_decoy(tmp_path):
    root, runs = make_runs(tmp_path, offsets={"good": 0.8, "noisy": 0.1}, methods={"noisy": "noise"})
    m = create_study(root, [str(r) for r in runs], tmp_path / "s", pairs=20, gold=0.2, aspects="overall", progress=False)
    golds = [it for it in m.items if it["type"] == "gold"]
    assert len(golds) == 4
    for g in golds:
        assert g["gold"]["aspect"] == "overall"
        assert {g["a"]["run"], g["b"]["run"]} == {"reference", "noise"}  # the run is named after its method and g[g["gold"]["answer"]]["run"] == "reference"


def test_create_refuses_missing_undecodable_and_foreign_runs(tmp_path):
    root, runs = make_runs(tmp_path)
    args = dict(pairs=10, progress=False)
    # a failed job recorded in the results
    df = pd.read_parquet(runs[1] / "per_image.parquet")
    df.loc[3, "status"] = "decode_error"
    df.to_parquet(runs[1] / "per_image.parquet", index=False)
    with pytest.raises(StudyError, match=rf"run y .*{df.loc[3, 'name']} \(decode_error\)"):
        create_study(root, [str(r) for r in runs], tmp_path / "s1", **args)
    df.loc[3, "status"] = "ok"
    df.to_parquet(runs[1] / "per_image.parquet", index=False)
    # an image deleted since the evaluation
    victim = runs[2] / "images" / f"{df.loc[5, 'name']}.png"
    data = victim.read_bytes()
    victim.unlink()
    with pytest.raises(StudyError, match=rf"run z .*{df.loc[5, 'name']} \(file .* no longer exists\)"):
        create_study(root, [str(r) for r in runs], tmp_path / "s2", **args)
    # an undecodable image (all 3 x 48 combinations drawn, so every image is decoded)
    victim.write_bytes(data[:40])
    with pytest.raises(StudyError, match=rf"run:z: .*{victim.name}"):
        create_study(root, [str(r) for r in runs], tmp_path / "s3", pairs=144, progress=False)
    victim.write_bytes(data)
    # runs of another dataset
    other = make_runs(tmp_path / "other", n_subjects=2)[1][0]
    with pytest.raises(StudyError, match="evaluated on another dataset"):
        create_study(root, [str(runs[0]), f"{other}=other"], tmp_path / "s4", **args)
    with pytest.raises(StudyError, match="at least two runs"):
        create_study(root, [str(runs[0])], tmp_path / "s5", **args)
    with pytest.raises(StudyError, match="only 144 distinct"):
        create_study(root, [str(r) for r in runs], tmp_path / "s6", pairs=145, progress=False)
    assert not any((tmp_path / f"s{i}").exists() for i in range(1, 7))
    # and a study is never overwritten
    create_study(root, [str(r) for r in runs], tmp_path / "ok", **args)
    with pytest.raises(StudyError, match="exists"):
        create_study(root, [str(r) for r in runs], tmp_path / "ok", **args)


def test_aspects_need_a_question():
    assert [a["id"] for a in parse_aspects("overall,relations")] == ["overall", "relations"]
    with pytest.raises(StudyError, match="--question lighting="):
        parse_aspects("overall,lighting")
    assert parse_aspects("lighting", {"lighting": "Which light is nicer?"})[0]["question"] == "Which light is nicer?"
    with pytest.raises(StudyError, match="twice"):
        parse_aspects("overall,overall")


# ------------------------------------------------------------------------------------------ store
def _answers(store, choice="a"):
    return {a: choice for a in store.aspects}


def test_assignment_limits_repeats_gold_and_resume(tmp_path):
    m, runs = make_study(tmp_path, pairs=30, raters_per_pair=2, gold=0.1, repeat=0.1)
    store = StudyStore(m)
    n = simulate_raters(store, hidden_quality(runs), ["r1", "r2", "r3", "r4", "r5"], flip=0.2)
    rows = store.assignment_rows()
    answered = collections.defaultdict(set)
    for rater, item, done, released in rows:
        if done:
            answered[item].add(rater)
    items = m.item_map()
    regular = [i for i, it in items.items() if it["type"] == "pair"]
    assert all(len(answered[i]) == 2 for i in regular)  # every pair exactly at its limit
    for it in m.items:
        if it["type"] == "repeat":  # repeats only to the raters of the original
            assert answered[it["id"]] == answered[it["repeat_of"]]
        if it["type"] == "gold":  # gold to everyone
            assert answered[it["id"]] == {"r1", "r2", "r3", "r4", "r5"}
    assert n == 30 * 2 + 3 * 2 + 3 * 5
    # repeat gap: the repeat comes at least repeat_gap answers after its original
    ords = {(r, i): o for r, i, o in store._db().execute("SELECT rater, item, ord FROM assignments")}
    per_rater = collections.defaultdict(list)
    for (r, i), o in ords.items():
        per_rater[r].append((o, i))
    for r, seq in per_rater.items():
        pos = {i: k for k, (_, i) in enumerate(sorted(seq))}
        for it in m.items:
            if it["type"] == "repeat" and it["id"] in pos:
                assert pos[it["id"]] - pos[it["repeat_of"]] > m.settings["repeat_gap"]
    assert store.next_item("r1") is None and store.progress("r1")["remaining"] == 0


def test_resume_returns_the_pending_item_and_undo_reopens_the_last(tmp_path):
    m, _ = make_study(tmp_path, pairs=10, gold=0, repeat=0)
    store = StudyStore(m)
    store.add_rater("ann", "self")
    first = store.next_item("ann")
    assert store.next_item("ann") == first  # reopening the page: same item
    assert StudyStore(m).next_item("ann") == first  # ... also after a server restart
    assert store.submit("ann", first, _answers(store, "a"), 1000, "sub-00001") is True
    second = store.next_item("ann")
    assert second != first
    assert store.undo("ann") == first
    assert store.next_item("ann") == first
    assert [a["choice"] for a in store.answers() if a["item"] == first] == []  # undone answers are not judgements
    store.submit("ann", first, _answers(store, "b"), 900, "sub-00002")
    assert {a["choice"] for a in store.answers() if a["item"] == first} == {"b"}
    assert store.next_item("ann") == second  # then the item that was on screen before the undo
    hist = store._db().execute("SELECT COUNT(*) FROM answers WHERE item = ? AND active = 0", (first,)).fetchone()[0]
    assert hist == len(store.aspects)  # the undone answers are kept as history
    with pytest.raises(RequestError) as e:
        store.submit("ann", first, _answers(store), 1, "sub-00003")
    assert e.value.status == 409


def test_retried_submission_is_acknowledged_once(tmp_path):
    m, _ = make_study(tmp_path, pairs=5, gold=0, repeat=0)
    store = StudyStore(m)
    store.add_rater("ann", "self")
    item = store.next_item("ann")
    assert store.submit("ann", item, _answers(store), 10, "retry-0001") is True
    assert store.submit("ann", item, _answers(store), 10, "retry-0001") is False
    assert len(store.answers()) == len(store.aspects)


def test_idle_lease_is_released_so_the_limit_holds(tmp_path):
    m, _ = make_study(tmp_path, pairs=1, raters_per_pair=1, gold=0, repeat=0)
    now = [1000.0]
    store = StudyStore(m, lease_s=60, clock=lambda: now[0])
    for r in ("ann", "bob"):
        store.add_rater(r, "self")
    item = store.next_item("ann")
    assert store.next_item("bob") is None  # the only pair is held by ann
    now[0] += 61
    assert store.next_item("bob") == item  # ann idle past the lease: the slot goes to bob
    with pytest.raises(RequestError, match="another rater") as e:
        store.submit("ann", item, _answers(store), 5, "late-00001")
    assert e.value.status == 409
    assert store.next_item("ann") is None
    store.submit("bob", item, _answers(store), 5, "bob-000001")
    assert [a["rater"] for a in store.answers()] == ["bob"] * len(store.aspects)


def test_concurrent_raters_never_exceed_the_per_pair_limit(tmp_path):
    m, _ = make_study(tmp_path, pairs=24, raters_per_pair=2, gold=0, repeat=0)
    StudyStore(m)  # schema
    raters = [f"r{i}" for i in range(8)]
    errors = []

    def work(rater):
        store = StudyStore(m)  # its own connection, as a separate server thread or process would have
        try:
            store.add_rater(rater, "self")
            while (item := store.next_item(rater)) is not None:
                store.submit(rater, item, _answers(store), 1, f"{rater}-{item}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    per_item = collections.Counter(i for r, i, done, rel in StudyStore(m).assignment_rows() if done)
    assert len(per_item) == 24 and set(per_item.values()) == {2}


def test_manifest_changed_after_judgements_is_refused(tmp_path):
    m, _ = make_study(tmp_path, pairs=4, gold=0, repeat=0)
    StudyStore(m)
    data = json.loads(m.path.read_text())
    data["items"][0]["prompt"] = "something else"
    m.path.write_text(json.dumps(data))
    with pytest.raises(StudyError, match="manifest changed"):
        StudyStore(load_manifest(m.folder))


# ------------------------------------------------------------------------------------------ API
@pytest.fixture
def api(tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from stellar.study.app import create_app

    m, runs = make_study(tmp_path, pairs=12, raters_per_pair=2, gold=0.1, repeat=0)
    store = StudyStore(m)
    client = TestClient(create_app(m, store, admin_token="admintoken123"), base_url="http://127.0.0.1:8000")
    return client, store, m


def _login(client, rater):
    r = client.post("/api/login", json={"rater": rater})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _count(store):
    return store._db().execute("SELECT (SELECT COUNT(*) FROM answers), (SELECT COUNT(*) FROM assignments WHERE answered IS NOT NULL)").fetchone()


def test_api_flow_resume_undo_and_pages(api):
    client, store, m = api
    assert "Which image is better" in client.get("/").text and "admin.js" in client.get("/admin").text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    info = client.get("/api/study").json()
    assert [a["id"] for a in info["aspects"]] == m.aspect_ids
    h = _login(client, "ann")
    first = client.get("/api/next", headers=h).json()
    item = first["item"]
    assert set(item) == {"id", "prompt", "references", "a", "b"}
    shown = json.dumps(list(item.values()))  # blinded: no run name, role or source reaches the page
    assert not any(word in shown for word in ('"x"', '"y"', '"z"', "reference", "run", "gold", "repeat"))
    img = client.get(item["a"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert client.get("/api/next", headers=h).json()["item"]["id"] == item["id"]  # resume
    h2 = _login(client, "ann")  # another browser, same rater id: same pending item
    assert client.get("/api/next", headers=h2).json()["item"]["id"] == item["id"]
    r = client.post("/api/answer", headers=h, json={"item": item["id"], "answers": {a: "tie" for a in m.aspect_ids}, "time_ms": 1234, "submission": "abcdefgh1"})
    assert r.status_code == 200 and r.json()["recorded"] and r.json()["progress"]["answered"] == 1
    nxt = r.json()["item"]["id"]
    assert nxt != item["id"]
    r = client.post("/api/undo", headers=h, json={})
    assert r.status_code == 200 and r.json()["item"]["id"] == item["id"]
    assert _count(store)[1] == 0
    r = client.post("/api/answer", headers=h, json={"item": item["id"], "answers": {a: "a" for a in m.aspect_ids}, "time_ms": 99, "submission": "abcdefgh2"})
    assert r.status_code == 200
    recs = judgement_records(store)
    assert {x["choice"] for x in recs} == {"a"} and {x["time_ms"] for x in recs} == {99}
    # security headers
    assert "default-src 'none'" in client.get("/").headers["content-security-policy"]


def test_api_rejects_bad_requests_and_writes_nothing(api):
    client, store, m = api
    h = _login(client, "bob")
    item = client.get("/api/next", headers=h).json()["item"]
    other = next(it["id"] for it in m.items if it["id"] != item["id"])
    good = {a: "a" for a in m.aspect_ids}
    before = _count(store)
    bad = [
        ({"item": "q99999", "answers": good, "submission": "abcdefgh"}, 404),  # unknown item
        ({"item": other, "answers": good, "submission": "abcdefgh"}, 409),  # not assigned to this rater
        ({"item": item["id"], "answers": {**good, "beauty": "a"}, "submission": "abcdefgh"}, 400),  # unknown aspect
        ({"item": item["id"], "answers": {k: v for k, v in list(good.items())[1:]}, "submission": "abcdefgh"}, 400),  # missing aspect
        ({"item": item["id"], "answers": {**good, "overall": "left"}, "submission": "abcdefgh"}, 400),  # unknown choice
        ({"item": item["id"], "answers": good, "submission": "abcdefgh", "rater": "eve"}, 400),  # unknown field
        ({"item": item["id"], "answers": good, "submission": "abcdefgh", "time_ms": -5}, 400),
        ({"item": item["id"], "answers": good, "submission": "abcdefgh", "time_ms": True}, 400),
        ({"item": item["id"], "answers": good, "submission": "../x"}, 400),
        ({"item": [item["id"]], "answers": good, "submission": "abcdefgh"}, 400),
        ([1, 2], 400),
    ]
    for body, status in bad:
        r = client.post("/api/answer", headers=h, json=body)
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()
    assert client.post("/api/answer", headers=h, content=b"{not json", ).status_code == 400
    big = {"item": item["id"], "answers": good, "submission": "abcdefgh", "pad": "x" * 20000}
    assert client.post("/api/answer", headers=h, json=big).status_code == 413
    chunks = (b"x" * 4096 for _ in range(8))  # no Content-Length: the limit holds while reading
    assert client.post("/api/answer", headers={**h, "Content-Type": "application/json"}, content=chunks).status_code == 413
    assert client.post("/api/answer", json={"item": item["id"], "answers": good, "submission": "abcdefgh"}).status_code == 401
    assert client.post("/api/answer", headers={"Authorization": "Bearer " + "0" * 16 + ".forged"}, json={"item": item["id"], "answers": good, "submission": "abcdefgh"}).status_code == 401
    assert client.post("/api/undo", headers=h, json={}).status_code == 409  # nothing answered yet
    assert _count(store) == before
    # images by manifest id only: nothing path-like reaches the file system
    for path in ("/img/../study.json", "/img/..%2Fstudy.json", "/img/i00001.png", "/img/%2Fetc%2Fpasswd", "/img/i0000", "/img/x00001", "/static/../manifest.py", "/static/index.html", "/static/%2e%2e%2fmanifest.py"):
        r = client.get(path)
        assert r.status_code == 404, path
    # raters, admin, hosts
    assert client.post("/api/login", json={"rater": "../../etc"}).status_code == 400
    assert client.post("/api/login", json={"rater": "x" * 65}).status_code == 400
    assert client.get("/api/admin").status_code == 401
    assert client.get("/api/admin", headers={"Authorization": "Bearer wrong"}).status_code == 401
    s = client.get("/api/admin", headers={"Authorization": "Bearer admintoken123"}).json()
    assert s["pairs"] == 12 and [r["rater"] for r in s["raters"]] == ["bob"]
    assert client.get("/", headers={"Host": "evil.example:8000"}).status_code == 421


def test_links_only_and_personal_links(api, tmp_path):
    from starlette.testclient import TestClient

    from stellar.study.app import create_app

    client, store, m = api
    token = store.add_rater("carol", "link")
    assert client.post("/api/login", json={"rater": "carol"}).status_code == 403  # a link rater cannot be claimed by id
    assert client.get("/api/next", headers={"Authorization": f"Bearer {token}"}).json()["rater"] == "carol"
    closed = TestClient(create_app(m, store, admin_token="t0k3n-admin", open_registration=False), base_url="http://localhost:8000")
    assert closed.post("/api/login", json={"rater": "dave"}).status_code == 403
    assert closed.get("/api/next", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_gold_scoring_flags_and_export(tmp_path, capsys):
    m, runs = make_study(tmp_path, pairs=20, raters_per_pair=2, gold=0.2, repeat=0.1)
    store = StudyStore(m)
    simulate_raters(store, hidden_quality(runs), ["good", "fair"], flip=0.0)
    # a rater who gets every gold item wrong
    store.add_rater("careless", "self")
    while (item := store.next_item("careless")) is not None:
        it = store.items[item]
        wrong = {"a": "b", "b": "a"}[it["gold"]["answer"]] if "gold" in it else "a"
        store.submit("careless", item, {a: wrong for a in store.aspects}, 100, f"c-{item}")
    s = store.summary()
    acc = {r["rater"]: r["gold_accuracy"] for r in s["raters"]}
    assert acc == {"good": 1.0, "fair": 1.0, "careless": 0.0} and s["flagged"] == ["careless"]
    cons = {r["rater"]: r["repeat_consistency"] for r in s["raters"]}
    assert cons["good"] == 1.0  # a noiseless rater answers the swapped repeat consistently
    recs = judgement_records(store)
    assert len(recs) == len(store.answers())
    gold_recs = [r for r in recs if "gold" in r and r["gold"]["expected"] is not None]
    assert gold_recs and all(r["gold"]["correct"] == (r["rater"] != "careless") for r in gold_recs)
    assert all(r["aspect"] == "identity" for r in gold_recs)
    rep = [r for r in recs if r.get("repeat")]
    originals = {it["repeat_of"] for it in m.items if it["type"] == "repeat"}
    assert rep and {r["item"] for r in rep} <= originals  # a repeat is judged under its pair's id
    # the noiseless rater prefers the run with the higher hidden quality every time
    q = hidden_quality(runs)
    for r in recs:
        if r["rater"] == "good" and "gold" not in r:
            qa, qb = q[(r["a"], r["job"])], q[(r["b"], r["job"])]
            assert r["choice"] == ("a" if qa > qb else "b")
    # CLI: export with --drop-flagged / --no-gold / --no-repeats, and status
    out = tmp_path / "j.jsonl"
    assert main(["study", "export", str(m.folder), "--out", str(out), "--drop-flagged", "--no-gold", "--no-repeats"]) == 0
    header, *lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert header["format"] == "stellar-judgments" and header["version"] == 1 and "rater" not in header
    assert lines and {x["rater"] for x in lines} == {"good", "fair"}
    assert not any("gold" in x or "repeat" in x for x in lines)
    assert set(lines[0]) >= {"rater", "job", "a", "b", "aspect", "choice", "time_ms", "item"}
    assert main(["study", "status", str(m.folder)]) == 0
    printed = capsys.readouterr().out
    assert "careless" in printed and "FLAGGED" in printed and "flagged (gold accuracy < 0.80): careless" in printed


def test_cli_create_raters_and_errors(tmp_path, capsys):
    root, runs = make_runs(tmp_path)
    study = tmp_path / "study"
    assert main(["study", "create", "--dataset", str(root), "--runs", *map(str, runs), "--out", str(study), "--pairs", "12", "--quiet"]) == 0
    assert "12 pairs (H 6, T 6)" in capsys.readouterr().out
    assert main(["study", "raters", "add", str(study), "alice", "bob", "--url", "http://127.0.0.1:9000"]) == 0
    links = capsys.readouterr().out.splitlines()
    assert len(links) == 2 and links[0].startswith("alice\thttp://127.0.0.1:9000/#token=")
    assert main(["study", "raters", "add", str(study), "alice"]) == 2
    assert "already has a link" in capsys.readouterr().err
    assert main(["study", "raters", "list", str(study)]) == 0
    assert "alice\tpersonal link" in capsys.readouterr().out
    assert main(["study", "status", str(tmp_path / "nothing")]) == 2
    assert "no study.json" in capsys.readouterr().err
    assert main(["study", "create", "--dataset", str(root), "--runs", str(runs[0]), "--out", str(tmp_path / "s2")]) == 2


def test_serve_refuses_images_changed_or_gone_since_create(tmp_path):
    from stellar.study.manifest import verify_images

    m, _ = make_study(tmp_path, pairs=6, gold=0, repeat=0)
    verify_images(m)
    iid, meta = next((i, x) for i, x in m.images.items() if x["source"].startswith("run:"))
    path = tmp_path / "runs" / meta["source"][4:] / "images" / meta["path"].rsplit("/", 1)[1]
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(StudyError, match=rf"{iid} \({meta['source']}\): .* changed since the study was created"):
        verify_images(m)
    path.unlink()
    with pytest.raises(StudyError, match=rf"{iid} .* is missing"):
        verify_images(m)
