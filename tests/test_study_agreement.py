"""A simulated study end to end: synthetic raters who follow a hidden quality with noise answer through
the study's store; the export must carry exactly their agreement with that quality.

With a flip probability f and no ties, a metric equal to the hidden quality has the pairwise τ-like
(C − D)/(C + D) = 1 − 2f in expectation (DESIGN §6.13); a metric unrelated to it has τ ≈ 0. The
second test runs `stellar agreement` (stellar.report.agreement) on the exported file: its bootstrap
interval must contain 1 − 2f for the hidden-quality metric and 0 for the unrelated one.
"""

from __future__ import annotations

import json

import numpy as np

from stellar.cli import main
from stellar.study import StudyStore
from stellar.study.simulate import hidden_quality, simulate_raters

from study_helpers import make_study


def _tau_like(records, metric):
    c = d = 0
    for r in records:
        ma, mb = metric[(r["a"], r["job"])], metric[(r["b"], r["job"])]
        if r["choice"] == "tie" or ma == mb:
            continue
        agree = (r["choice"] == "a") == (ma > mb)
        c += agree
        d += not agree
    return (c - d) / (c + d), c + d


def _clip_t(runs):
    import pandas as pd

    out = {}
    for d in runs:
        name = json.loads((d / "run.json").read_text())["method"]
        df = pd.read_parquet(d / "per_image.parquet", columns=["name", "clip_t"])
        out.update({(name, j): float(v) for j, v in zip(df["name"], df["clip_t"])})
    return out


def test_export_of_a_simulated_study_recovers_the_raters_agreement(tmp_path):
    flip = 0.15
    m, runs = make_study(tmp_path, pairs=144, raters_per_pair=3, gold=0.05, repeat=0.05)
    store = StudyStore(m)
    simulate_raters(store, hidden_quality(runs), [f"r{i}" for i in range(6)], flip=flip, seed=3)
    out = tmp_path / "judgments.jsonl"
    assert main(["study", "export", str(m.folder), "--out", str(out), "--no-gold", "--no-repeats"]) == 0
    header, *records = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["format"] == "stellar-judgments"
    assert len(records) == 144 * 3 * len(m.aspect_ids)
    tau, n = _tau_like(records, hidden_quality(runs))
    se = 2 * np.sqrt(flip * (1 - flip) / n)  # τ = 1 − 2·(flip rate), binomial flip count
    assert abs(tau - (1 - 2 * flip)) < 4 * se, (tau, n)
    tau_random, _ = _tau_like(records, _clip_t(runs))
    assert abs(tau_random) < 3 / np.sqrt(144)  # one random comparison per pair: ~1/sqrt(pairs) spread


def test_stellar_agreement_on_the_export_recovers_the_expected_agreement_within_its_ci(tmp_path, capsys):
    from stellar.report.agreement import agreement, read_judgments
    from stellar.report.leaderboard import load_run

    flip = 0.2
    m, runs = make_study(tmp_path, pairs=144, raters_per_pair=3, gold=0.05, repeat=0.05, aspects="overall,identity")
    store = StudyStore(m)
    simulate_raters(store, hidden_quality(runs), [f"r{i}" for i in range(6)], flip=flip, seed=5)
    out = tmp_path / "judgments.jsonl"
    assert main(["study", "export", str(m.folder), "--out", str(out)]) == 0  # gold and repeats included
    judgments = read_judgments(out)
    n_gold = sum(1 for it in m.items if it["type"] == "gold")
    assert n_gold and judgments.gold == 6 * n_gold * 2  # every rater's gold records (2 aspects) are left out, counted
    assert judgments.notes == []  # the header names the format version
    result = agreement(judgments, [load_run(r) for r in runs], n_boot=400, seed=0)
    assert not any(result.unused.values())  # every run, job and aspect of the export is known
    tau = result.tau.set_index(["metric", "aspect"])
    for aspect in ("overall", "identity"):
        row = tau.loc[("ips", aspect)]  # ips = the hidden quality the raters follow
        assert row["lo"] <= 1 - 2 * flip <= row["hi"], row.to_dict()
        assert row["hi"] - row["lo"] < 0.25
        noise = tau.loc[("clip_t", aspect)]  # unrelated to the hidden quality
        assert noise["lo"] <= 0 <= noise["hi"], noise.to_dict()
    # and the command line gives the same table
    assert main(["agreement", "--judgments", str(out), "--runs", *map(str, runs), "--bootstrap", "400", "--format", "csv"]) == 0
    printed = capsys.readouterr().out
    assert "ips" in printed.lower() and "overall" in printed
