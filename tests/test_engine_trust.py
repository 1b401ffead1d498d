"""Issue 9 (trustworthy numbers), engine part: one regression test per defect, named after it.

Uses the fake face analyzer and synthetic dataset of ``test_engine`` (3 test subjects × 2 photos ×
6 prompts = 36 jobs).
"""

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_engine import FakeFaces, run, write_set  # noqa: F401  (fixtures' helpers)

from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.errors import StellarError
from stellar.metrics import aggregate as agg
from stellar.metrics.base import METRICS


@pytest.fixture
def setup(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    ds = StellarDataset(synthetic)
    return ds, write_set(ds, tmp_path / "gen" / "copy", "copy"), write_set(ds, tmp_path / "gen" / "noise", "noise")


def _copy_folder(src, dst):
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_every_image_metric_declares_a_failure_value():
    """DESIGN §6.10: the failure rule needs each per-image metric's worst value."""
    for m, info in METRICS.items():
        assert (info.failure_value is not None) == (info.level == "image"), m
    assert agg.APS_ATTRIBUTES == __import__("stellar.data.layout", fromlist=["x"]).APS_ATTRIBUTES


def test_failures_do_not_inflate_the_leaderboard(setup, tmp_path):
    """Issue 9.2: broken or omitted images used to leave the denominator (IPS 0.48 honest -> 0.72)."""
    from stellar.report import leaderboard, load_run, render

    ds, copy, noise = setup
    honest = _copy_folder(copy, tmp_path / "gen" / "honest")
    corrupt = _copy_folder(copy, tmp_path / "gen" / "corrupt")
    omitted = _copy_folder(copy, tmp_path / "gen" / "omitted")
    failed = ["000-0-01", "001-1-03", "002-0-04", "002-1-05"]
    for name in failed:  # the honest method writes its failures as no-face images
        (honest / f"{name}.png").write_bytes((noise / f"{name}.png").read_bytes())
        (corrupt / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        (omitted / f"{name}.png").unlink()
    faces = FakeFaces()
    s = {k: run(ds, f, tmp_path / k, faces=faces) for k, f in (("honest", honest), ("corrupt", corrupt), ("omitted", omitted))}
    assert s["honest"]["means"]["ips"] == pytest.approx(s["corrupt"]["means"]["ips"]) == pytest.approx(s["omitted"]["means"]["ips"])
    assert s["honest"]["aps"]["score"] == pytest.approx(s["corrupt"]["aps"]["score"]) == pytest.approx(s["omitted"]["aps"]["score"])
    assert s["corrupt"]["counts"]["undecodable"] == 4 and s["omitted"]["counts"]["missing"] == 4
    assert s["omitted"]["coverage"] == {"evaluated": 32, "expected": 36, "fraction": pytest.approx(32 / 36)}
    # --partial: today's mean over what exists, labelled
    p = run(ds, omitted, tmp_path / "partial", faces=faces, failure_rule="partial")
    assert p["means"]["ips"] > s["omitted"]["means"]["ips"] and p["failure_rule"] == "partial"
    assert json.loads((tmp_path / "partial" / "run.json").read_text())["failure_rule"] == "partial"
    (table,) = leaderboard([load_run(tmp_path / k, k) for k in ("honest", "omitted", "partial")])
    rows = dict(table.rows)
    assert rows["omitted"]["missing"] == 4 and rows["omitted"]["coverage"] == "32/36" and rows["partial"]["failures"] == "partial"
    assert table.comparable == {"honest", "omitted"}  # the --partial run is not ranked against them
    md = render([table], "md")
    assert "| images | coverage | missing | undecodable | no_face | excluded | exclusion | failures |" in md
    assert "not comparable" in md and "partial" in md and "--partial" in md


def test_report_by_split_and_category_equal_recomputation_from_per_image(setup, tmp_path):
    """Issue 9.3: overall (summary.json) and --by tables used different row rules (GOA 0.5222 vs 0.5100)."""
    from sklearn.metrics import roc_auc_score

    from stellar.report import leaderboard, load_run

    ds, copy, noise = setup
    mixed = _copy_folder(copy, tmp_path / "gen" / "mixed")
    for name in ("000-0-01", "001-0-02", "002-1-00"):
        (mixed / f"{name}.png").write_bytes((noise / f"{name}.png").read_bytes())
    (mixed / "001-1-04.png").write_bytes(b"broken")
    (mixed / "002-0-03.png").unlink()
    summary = run(ds, mixed, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    r = load_run(tmp_path / "run")

    def recompute(frame):
        out = {m: frame[m].dropna().mean() for m in ("ips", "sis")}
        aucs = []
        for a in agg.APS_ATTRIBUTES:
            y, p = frame[f"aps_label_{a}"].to_numpy(), frame[f"aps_pred_{a}"].to_numpy()
            keep = (y != 0) & (p != 0)
            if len(set(y[keep])) == 2:
                aucs.append(roc_auc_score(y[keep], p[keep]))
        out["aps"] = np.mean(aucs) if aucs else None
        return out

    (overall,) = leaderboard([r])
    want = recompute(df)
    for m in ("ips", "sis", "aps"):
        assert overall.rows[0][1][m] == pytest.approx(want[m]) == pytest.approx(summary["means"][m])
    for table, kind in zip(leaderboard([r], by="split"), ("T", "H")):
        want = recompute(df[df["kind"] == kind])
        for m in ("ips", "sis", "aps"):
            assert table.rows[0][1][m] == pytest.approx(want[m]) and summary["by_kind"][kind][m] == pytest.approx(want[m])
    cats = leaderboard([r], by="category")
    assert cats
    for table in cats:
        cat = table.title.removeprefix("Category: ")
        want = recompute(df[df["categories"].map(lambda cs, c=cat: c in list(cs))])
        for m in ("ips", "sis"):
            assert table.rows[0][1][m] == pytest.approx(want[m]) and summary["by_category"][cat][m] == pytest.approx(want[m])
        assert table.rows[0][1]["aps"] == (pytest.approx(want["aps"]) if want["aps"] is not None else None)


def test_sis_not_silently_zero_when_another_photo_has_no_face(setup, tmp_path):
    """Issue 9.5: SIS was 0 with status ok when another photo of the subject had no face."""
    ds, copy, _ = setup
    photo1 = ds.subject("001").photos[1].path
    good = write_set(ds, tmp_path / "gen" / "copy2", "copy")  # copies made before the photo is spoiled
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(photo1, quality=95)
    ds = StellarDataset(ds.root)
    run(ds, good, tmp_path / "run")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    rows = df[(df["subject"] == "001") & (df["photo"] == 0)]
    assert (rows["status"] == "no_face_reference_other").all()
    assert np.allclose(rows["sis"], rows["ips"]) and (rows["sis"] > 0.99).all()  # SIS over the photo with a face
    assert (df[(df["subject"] == "001") & (df["photo"] == 1)]["status"] == "no_face_reference").all()


class PhotoReadingScorer:
    """A DINO-like scorer: it decodes the job's input photo (``item.load_reference()``)."""

    name = "photo-reader"
    protocol = "photo-reader-v1"
    metrics = ("dino",)

    def score(self, items, cache):
        return [{"dino": float(np.asarray(it.load_reference()).mean() / 255)} for it in items]


def test_corrupt_reference_photo_does_not_crash_a_scorer_reading_it(setup, tmp_path):
    """Issue 9.6: a corrupt input photo crashed the run with DINO while faces recorded decode_error."""
    ds, copy, _ = setup
    ds.subject("002").photos[0].path.write_bytes(b"\xff\xd8\xff corrupt jpeg")
    ds = StellarDataset(ds.root)
    cfg = EvalConfig(metrics=("ips", "sis", "dino"), batch_size=5)
    summary = evaluate(ds, copy, tmp_path / "run", cfg, faces=FakeFaces(), scorers=[PhotoReadingScorer()], progress=False)
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    bad = df[(df["subject"] == "002") & (df["photo"] == 0)]
    assert len(bad) == 6 and (bad["status"] == "reference_decode_error").all() and bad["error"].str.contains("cannot be decoded").all()
    assert (bad["dino"] == 0.0).all() and (bad["ips"] == 0.0).all()  # the failure value, never a lucky score
    other = df[(df["subject"] == "002") & (df["photo"] == 1)]
    assert (other["status"] == "no_face_reference_other").all() and (other["dino"] > 0).all()
    assert summary["counts"]["reference_failures"] == 6


def test_exclusion_summary_never_says_not_applied_because_applied():
    """Issue 9.8: with CLIP but < 2 CLIP values the summary said {"applied": false, "reason": "applied"}."""
    from stellar.engine.finalize import FinalizeContext, exclusion

    frame = pd.DataFrame({"clip_n": [0.2, np.nan], "clip_t": [0.3, np.nan], "status": ["ok", "decode_error"]})
    cols, entries = exclusion(frame, FinalizeContext({"exclusion_rule": "applied"}, ["ips"], "worst"))
    info = entries["exclusion"]
    assert cols["followed_prompt"].isna().all() and info["applied"] is False and info["reason"] != "applied" and "at least 2" in info["reason"]


def test_per_image_table_is_enough_to_recompute_aps(setup, tmp_path):
    """Issue 9.9: APS needed the parts/ folder; per_image.parquet now carries labels, predictions and face boxes."""
    import shutil

    ds, copy, noise = setup
    mixed = _copy_folder(copy, tmp_path / "gen" / "mixed")
    (mixed / "000-1-02.png").write_bytes((noise / "000-1-02.png").read_bytes())
    summary = run(ds, mixed, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "parts")
    df = pd.read_parquet(tmp_path / "run" / "per_image.parquet")
    res = agg.aggregate(df, ["aps"])
    assert res["aps"]["score"] == pytest.approx(summary["aps"]["score"])
    for a in agg.APS_ATTRIBUTES:
        assert df[f"aps_label_{a}"].dtype == np.int8 and set(df[f"aps_pred_{a}"]) <= {-1, 1}
    row = df.set_index("name").loc["000-1-02"]
    assert all((row[f"aps_pred_{a}"] == -row[f"aps_label_{a}"]) for a in agg.APS_ATTRIBUTES)  # no face: wrong
    ok = df.set_index("name").loc["000-0-00"]
    assert len(ok["face_boxes"]) == 1 and len(ok["face_boxes"][0]) == 5


def test_replaced_reference_photo_reevaluates_exactly_its_jobs(setup, tmp_path):
    """Issue 9.11: a run made before a reference photo was replaced reused its rows (IPS 0.997 vs 0.803)."""
    ds, copy, _ = setup
    faces = FakeFaces()
    run(ds, copy, tmp_path / "run", faces=faces)
    before = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    photo = ds.subject("000").photos[1].path
    im = np.asarray(Image.open(photo).convert("RGB")).copy()
    im[: im.shape[0] // 2] = 255 - im[: im.shape[0] // 2]
    Image.fromarray(im).save(photo)
    ds = StellarDataset(ds.root)
    calls = faces.calls
    summary = run(ds, copy, tmp_path / "run", faces=faces)
    after = pd.read_parquet(tmp_path / "run" / "per_image.parquet").set_index("name")
    # subject 000's 12 jobs depend on the photo (IPS of photo-1 jobs, SIS of all): exactly they are redone
    # (their generated faces come from the feature cache; only the replaced photo goes through the model)
    assert summary["model_passes"]["generated_images"] == 12 and faces.calls - calls == 1
    changed = after.index[(after["ips_raw"] - before["ips_raw"]).abs() > 1e-6]
    assert set(changed) == {n for n in after.index if n.startswith("000-1-")}
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"]["fingerprint"] == ds.fingerprint()


def test_force_validates_before_deleting_and_refuses_foreign_folders(setup, tmp_path, capsys):
    """Issue 9.12: --force deleted results before checking, and deleted a foreign parts/ folder."""
    from stellar.cli import main

    ds, copy, _ = setup
    run(ds, copy, tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    # a metric without scorer (validation error) after --force: nothing deleted
    with pytest.raises(StellarError, match="no scorer computes"):
        evaluate(ds, copy, tmp_path / "run", EvalConfig(metrics=("ips", "goa")), faces=FakeFaces(), scorers=[], progress=False, force=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    rc = main(["evaluate", "--dataset", str(tmp_path / "typo"), "--generated", str(copy), "--out", str(tmp_path / "run"), "--force", "--faces", "offline", "--clip", "none"])
    assert rc != 0 and (tmp_path / "run" / "per_image.parquet").is_file()
    # a folder that is not a run directory: refused, its files untouched
    foreign = tmp_path / "foreign"
    (foreign / "parts").mkdir(parents=True)
    (foreign / "parts" / "mine.txt").write_text("keep me")
    (foreign / "run.json").write_text('{"something": "else"}')
    with pytest.raises(StellarError, match="not a Stellar-Bench run directory"):
        evaluate(ds, copy, foreign, EvalConfig(metrics=("ips",)), faces=FakeFaces(), progress=False, force=True)
    assert (foreign / "parts" / "mine.txt").read_text() == "keep me" and "else" in (foreign / "run.json").read_text()
    # --force in a real run directory recomputes
    summary = evaluate(ds, copy, tmp_path / "run", EvalConfig(metrics=("ips",)), faces=FakeFaces(), progress=False, force=True)
    assert summary["n_jobs"] == 36 and json.loads((tmp_path / "run" / "run.json").read_text())["metrics"] == ["ips"]


def test_second_writer_is_refused_naming_the_holder(setup, tmp_path):
    """Issue 9.13: two evaluate processes on one --out raced; the last writer won silently."""
    ds, copy, _ = setup
    out = tmp_path / "run"
    out.mkdir()
    holder = {"pid": os.getppid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}  # alive
    (out / "lock-all.json").write_text(json.dumps(holder))
    with pytest.raises(StellarError, match=f"pid {holder['pid']} on {holder['host']}"):
        run(ds, copy, out)
    assert not (out / "per_image.parquet").exists()
    # a lock of a process that died (kill -9) is stale and taken over
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (out / "lock-all.json").write_text(json.dumps({**holder, "pid": int(dead)}))
    assert run(ds, copy, out)["n_jobs"] == 36 and not (out / "lock-all.json").exists()
    # shards lock their own name: a shard's lock does not block another shard
    (out / "lock-shard-0-of-2.json").write_text(json.dumps(holder))
    assert run(ds, copy, tmp_path / "run2", shard=(1, 2)) is None


def test_exclusion_rule_not_applied_is_visible_in_the_table_and_csv(setup, tmp_path):
    """Issue 9.19: the demo put `copy` first; "exclusion rule NOT applied" was only a footnote (not in CSV)."""
    from stellar.report import leaderboard, load_run, render

    ds, copy, noise = setup
    run(ds, copy, tmp_path / "copy")
    run(ds, noise, tmp_path / "noise")
    tables = leaderboard([load_run(tmp_path / "copy"), load_run(tmp_path / "noise")])
    csv = render(tables, "csv").splitlines()
    assert "exclusion" in csv[0].split(",") and all("NOT applied" in line for line in csv[1:3])
    assert "| NOT applied |" in render(tables, "md")


def test_report_ranks_a_run_covering_one_job_of_many_as_not_comparable(setup, tmp_path):
    """Issue 9.14: a run covering 1 of 480 jobs was ranked best; no coverage column, no dataset warning."""
    from stellar.report import leaderboard, load_run, render

    ds, copy, noise = setup
    run(ds, noise, tmp_path / "full")
    one = tmp_path / "gen" / "one"
    one.mkdir()
    (one / "000-0-00.png").write_bytes((copy / "000-0-00.png").read_bytes())
    run(ds, one, tmp_path / "one", failure_rule="partial")
    other = StellarDataset(ds.root)
    (ds.root / "000" / "prompts_t.json").write_text((ds.root / "000" / "prompts_t.json").read_text().replace("a", "the", 1))
    other = StellarDataset(ds.root)
    run(other, noise, tmp_path / "other-ds")
    (table,) = leaderboard([load_run(tmp_path / k, k) for k in ("full", "one", "other-ds")])
    rows = dict(table.rows)
    assert rows["one"]["coverage"] == "1/36" and rows["full"]["coverage"] == "36/36"
    assert "one" not in (table.comparable or set())
    assert table.best().get("ips") != rows["one"]["ips"]
    md = render([table], "md")
    assert "different datasets" in md and "**1.0000**" not in md
