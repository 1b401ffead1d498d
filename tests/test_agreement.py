"""Agreement of metrics with human judgements (stellar.report.agreement, DESIGN §6.13)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau
from stats_helpers import per_image_frame, write_run

from stellar.cli import main
from stellar.errors import StellarError
from stellar.report.agreement import (
    agreement,
    krippendorff_alpha,
    read_judgments,
    tau_like,
    tie_calibrated_accuracy,
    weighted_tau_b,
)
from stellar.report.leaderboard import load_run

krippendorff = pytest.importorskip("krippendorff")


def write_jsonl(path, records, header=True):
    lines = ([json.dumps({"format": "stellar-judgments", "version": 1})] if header else []) + [json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def runs_with_values(tmp_path, values: dict[str, dict[str, list[float]]], n_jobs: int):
    """Runs named by the keys of ``values``; each ``{metric: per-job values}`` over jobs 000-0-00 … ."""
    out = []
    for name, cols in values.items():
        frame = per_image_frame(1, n_jobs, seed=0, metrics={m: 0.0 for m in cols}, noise_sd=0.0, aps_accuracy=None)
        for m, v in cols.items():
            frame[m] = v
        out.append(load_run(write_run(tmp_path / name, frame, method=name)))
    return out


def job(i: int) -> str:
    return f"000-0-{i:02d}"


# ------------------------------------------------------------------------------ known answers
def test_tau_like_six_pairs_with_ties_both_ways(tmp_path):
    """Six judged pairs: 3 concordant, 1 discordant, 1 human tie, 1 metric tie → τ = (3 − 1)/(3 + 1) = 0.5.

    Records alternate the a/b order, so the orientation of each judgement is exercised too.
    """
    # per job: IPS of run x and run y; human choice between them
    ips_x = [0.9, 0.2, 0.1, 0.5, 0.4, 0.3]
    ips_y = [0.1, 0.8, 0.7, 0.3, 0.4, 0.6]
    #        x>y  x<y  x<y  x>y  tie  x<y    (metric votes)
    human = ["x", "x", "y", "tie", "x", "y"]  # C,   D,   C,   h-tie, m-tie, C
    runs = runs_with_values(tmp_path, {"x": {"ips": ips_x}, "y": {"ips": ips_y}}, 6)
    recs = []
    for i, h in enumerate(human):
        a, b = ("x", "y") if i % 2 == 0 else ("y", "x")
        choice = "tie" if h == "tie" else ("a" if h == a else "b")
        recs.append({"rater": "r1", "job": job(i), "a": a, "b": b, "aspect": "identity", "choice": choice})
    res = agreement(read_judgments(write_jsonl(tmp_path / "j.jsonl", recs)), runs, n_boot=200)
    row = res.tau.set_index("metric").loc["ips"]
    assert (row["concordant"], row["discordant"], row["n"]) == (3, 1, 4)
    assert row["value"] == pytest.approx(0.5)
    assert tau_like(np.array([1, 1, -1, 0, 1, -1]), np.array([1, -1, -1, 1, 0, -1])) == (0.5, 3, 1)
    # accuracy with ties: at ε = 0 the metric gets pairs 1, 3, 6 and its own tie (5) is wrong → 3/6
    acc = res.accuracy.set_index("metric").loc["ips"]
    assert acc["n"] == 6 and acc["value"] >= 0.5


def test_tau_b_matches_scipy_with_ties_and_multiplicities():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 40).astype(float)
    y = x + rng.integers(-2, 3, 40)
    assert weighted_tau_b(x, y)[0] == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    w = rng.integers(0, 4, (3, 40))
    got = weighted_tau_b(x, y, w, block=7)
    for b in range(3):
        ref = kendalltau(np.repeat(x, w[b]), np.repeat(y, w[b])).statistic
        assert got[b] == pytest.approx(ref, abs=1e-12)


def test_tie_calibrated_accuracy_known_best_epsilon():
    # ε = 0: votes right on 0.05 and 0.2 → 2/4; ε = 0.01: + the tie at 0.01 → 3/4;
    # ε = 0.05: loses 0.05 → 2/4; ε = 0.1: ties 0.01 and 0.1 → 3/4; ε = 0.2 → 2/4. Best 3/4, smallest ε 0.01
    acc, eps = tie_calibrated_accuracy(np.array([0, 1, 0, 1]), np.array([0.01, 0.05, -0.1, 0.2]))
    assert acc[0] == pytest.approx(0.75) and eps[0] == pytest.approx(0.01)
    # human ties exactly on the small differences: ε = 0.03 gives a perfect score
    acc, eps = tie_calibrated_accuracy(np.array([0, 0, 1, 1, -1, 0]), np.array([0.01, 0.02, 0.5, 0.6, -0.7, 0.03]))
    assert acc[0] == 1.0 and eps[0] == pytest.approx(0.03)
    # no human ties: ε = 0 is best
    acc, eps = tie_calibrated_accuracy(np.array([1, -1, 1]), np.array([0.2, -0.1, 0.3]))
    assert acc[0] == 1.0 and eps[0] == 0.0
    # weights: a replicate drawing the second record three times
    acc, _ = tie_calibrated_accuracy(np.array([0, 1]), np.array([0.5, 0.1]), np.array([[1.0, 3.0]]))
    assert acc[0] == pytest.approx(0.75)


def test_krippendorff_alpha_known_value():
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', 4 observers × 12 units: nominal α = 0.743."""
    nan = np.nan
    data = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert np.isnan(krippendorff_alpha(np.array([[1.0, nan], [nan, 2.0]])))  # no unit judged twice


def test_alpha_from_records_equals_krippendorff_on_the_hand_written_matrix(tmp_path):
    # raters × items outcome matrix (first run better = +1), NaN = not judged
    nan = np.nan
    matrix = np.array([[1, 1, -1, 0, 1, nan], [1, -1, -1, 0, nan, 1], [1, 1, -1, 1, 1, 1]], dtype=float)
    runs = runs_with_values(tmp_path, {"p": {"ips": [0.5] * 6}, "q": {"ips": [0.4] * 6}}, 6)
    recs = []
    for r in range(3):
        for i in range(6):
            v = matrix[r, i]
            if np.isnan(v):
                continue
            flip = (r + i) % 2 == 1  # half the records name q first
            a, b = ("q", "p") if flip else ("p", "q")
            choice = "tie" if v == 0 else ("a" if (v > 0) != flip else "b")
            recs.append({"rater": f"r{r}", "job": job(i), "a": a, "b": b, "aspect": "overall", "choice": choice, "time_ms": 1200})
    res = agreement(read_judgments(write_jsonl(tmp_path / "j.jsonl", recs)), runs, n_boot=50)
    h = res.humans.set_index("aspect").loc["overall"]
    assert h["alpha"] == pytest.approx(krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"), abs=1e-12)
    assert (h["units"], h["raters"]) == (6, 3)
    # pairwise agreement by hand: (r0,r1) 4 shared, 3 equal; (r0,r2) 5 shared, 4 equal; (r1,r2) 5 shared, 3 equal
    assert h["comparisons"] == 14 and h["agreement"] == pytest.approx(10 / 14)


def test_ratings_tau_b_equals_scipy_on_mean_scores(tmp_path):
    rng = np.random.default_rng(3)
    n = 12
    vals = {"u": rng.random(n), "v": rng.random(n)}
    runs = runs_with_values(tmp_path, {k: {"ips": list(v), "clip_t": list(-v)} for k, v in vals.items()}, n)
    recs, means, xs = [], [], []
    for run, v in vals.items():
        for i in range(n):
            scores = [int(round(v[i] * 4)) + 1, int(rng.integers(1, 6))]
            for r, s in enumerate(scores):
                recs.append({"rater": f"r{r}", "job": job(i), "run": run, "aspect": "quality", "score": s})
            means.append(np.mean(scores))
            xs.append(v[i])
    res = agreement(read_judgments(write_jsonl(tmp_path / "r.jsonl", recs)), runs, n_boot=100)
    t = res.tau_b.set_index("metric")
    # images are ordered (job, run) inside; τ-b does not depend on the order
    assert t.loc["ips", "value"] == pytest.approx(kendalltau(xs, means).statistic, abs=1e-12)
    assert t.loc["clip_t", "value"] == pytest.approx(kendalltau(-np.array(xs), means).statistic, abs=1e-12)
    assert t.loc["ips", "n"] == 2 * n
    assert res.humans.set_index("aspect").loc["quality", "data"] == "ratings"


# ---------------------------------------------------------------------------------- simulation
def simulated_study(tmp_path, *, flip: float, n_jobs: int = 60, runs=("m1", "m2", "m3", "m4"), raters: int = 3, seed: int = 0):
    """Hidden quality per image; each rater prefers the higher quality, flipped with probability ``flip``."""
    rng = np.random.default_rng(seed)
    quality = {r: rng.random(n_jobs) for r in runs}
    noise = {r: rng.random(n_jobs) for r in runs}
    loaded = runs_with_values(tmp_path, {r: {"ips": list(quality[r]), "clip_t": list(noise[r])} for r in runs}, n_jobs)
    recs = []
    for i in range(n_jobs):
        for a, b in [(runs[k], runs[j]) for k in range(len(runs)) for j in range(k + 1, len(runs))]:
            if rng.random() < 0.5:
                a, b = b, a
            better = "a" if quality[a][i] > quality[b][i] else "b"
            for r in range(raters):
                wrong = rng.random() < flip
                choice = better if not wrong else ("b" if better == "a" else "a")
                recs.append({"rater": f"rater{r}", "job": job(i), "a": a, "b": b, "aspect": "overall", "choice": choice})
    return loaded, write_jsonl(tmp_path / "study.jsonl", recs)


def test_simulated_humans_recover_the_expected_tau(tmp_path):
    flip = 0.2
    runs, path = simulated_study(tmp_path, flip=flip)
    res = agreement(read_judgments(path), runs, n_boot=1000, seed=1)
    tau = res.tau.set_index("metric")
    expected = 1 - 2 * flip  # P(agree) − P(disagree) for a metric equal to the hidden quality
    assert tau.loc["ips", "lo"] <= expected <= tau.loc["ips", "hi"]
    assert tau.loc["ips", "n"] == 60 * 6 * 3
    assert tau.loc["clip_t", "lo"] <= 0.0 <= tau.loc["clip_t", "hi"]  # a random metric
    # sorted by agreement: the hidden quality first
    md = res.render("md")
    assert md.index("| IPS |") < md.index("| CLIP-T |")
    # two raters flipping independently agree with τ = (1 − 2f)²
    hum = res.humans.set_index("aspect").loc["overall"]
    assert hum["tau_like"] == pytest.approx((1 - 2 * flip) ** 2, abs=0.08)
    assert hum["agreement"] == pytest.approx((1 - flip) ** 2 + flip**2, abs=0.05)
    # metric-metric: each metric agrees with itself; quality vs noise near 0
    assert res.metric_matrix.loc["ips", "ips"] == 1.0 and abs(res.metric_matrix.loc["ips", "clip_t"]) < 0.2


# ----------------------------------------------------------------------------- unknowns, input
def test_unknown_runs_jobs_and_aspects_are_listed(tmp_path):
    runs = runs_with_values(tmp_path, {"x": {"ips": [0.9, 0.1]}, "y": {"ips": [0.1, 0.9]}}, 2)
    recs = [
        {"rater": "r", "job": job(0), "a": "x", "b": "y", "aspect": "identity", "choice": "a"},
        {"rater": "r", "job": job(1), "a": "x", "b": "y", "aspect": "identity", "choice": "b"},
        {"rater": "r", "job": job(0), "a": "x", "b": "ghost", "aspect": "identity", "choice": "a"},
        {"rater": "r", "job": "999-0-00", "a": "x", "b": "y", "aspect": "identity", "choice": "a"},
        {"rater": "r", "job": job(0), "a": "x", "b": "y", "aspect": "quality", "choice": "a"},
        {"rater": "r", "job": job(0), "a": "x", "b": "y", "aspect": "identity", "choice": "a", "gold": True},
    ]
    res = agreement(read_judgments(write_jsonl(tmp_path / "j.jsonl", recs, header=False)), runs, aspects=["identity"], n_boot=20)
    assert res.unused == {"runs": {"ghost": 1}, "jobs": {"999-0-00": 1}, "aspects": {"quality": 1}}
    md = res.render("md")
    assert "not used — runs: ghost (1)" in md and "not used — jobs: 999-0-00 (1)" in md and "aspects: quality (1)" in md
    assert "1 gold (attention-check) record(s) left out" in md and "no version header" in md
    assert res.tau.set_index("metric").loc["ips", "n"] == 2


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "j.jsonl:2: not valid JSON"),
        ('{"rater": "r", "job": "000-0-00", "a": "x", "b": "y", "aspect": "o", "choice": "left"}', "choice 'left'"),
        ('{"rater": "r", "job": "000-0-00", "a": "x", "b": "x", "aspect": "o", "choice": "a"}', "same run"),
        ('{"rater": "r", "a": "x", "b": "y", "aspect": "o", "choice": "a"}', "record has no 'job'"),
        ('{"rater": "r", "job": "000-0-00", "run": "x", "aspect": "o", "score": "good"}', "not a finite number"),
        ('{"format": "stellar-judgments", "version": 2}', "version 2 is not supported"),
    ],
)
def test_bad_judgment_lines_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "j.jsonl"
    path.write_text('{"format": "stellar-judgments", "version": 1}\n' + line + "\n")
    with pytest.raises(StellarError, match=message):
        read_judgments(path)


def test_no_matching_judgment_is_an_error_naming_what_did_not_match(tmp_path):
    runs = runs_with_values(tmp_path, {"x": {"ips": [0.9]}, "y": {"ips": [0.1]}}, 1)
    path = write_jsonl(tmp_path / "j.jsonl", [{"rater": "r", "job": job(0), "a": "A", "b": "B", "aspect": "o", "choice": "a"}])
    with pytest.raises(StellarError, match="runs: A, B"):
        agreement(read_judgments(path), runs, n_boot=10)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_agreement_formats_and_bit_identical_outputs(tmp_path, capsys):
    runs, path = simulated_study(tmp_path, flip=0.1, n_jobs=20, runs=("m1", "m2", "m3"))
    args = ["agreement", "--judgments", str(path), "--runs"] + [str(r.path) for r in runs] + ["--bootstrap", "200"]
    outs = {}
    for fmt in ("md", "csv", "latex"):
        assert main(args + ["--format", fmt]) == 0
        outs[fmt] = capsys.readouterr().out
    assert "Kendall's τ-like" in outs["md"] and "Inter-rater reliability" in outs["md"] and "Metric–metric agreement" in outs["md"]
    assert outs["csv"].splitlines()[0] == "table,row,aspect,value,lo,hi,n,epsilon"
    assert any(line.startswith("tau_like,ips,overall,") for line in outs["csv"].splitlines())
    assert r"\begin{tabular}" in outs["latex"] and r"$\tau$" in outs["latex"]
    assert main(args + ["--format", "csv"]) == 0
    assert capsys.readouterr().out == outs["csv"]  # bit-identical
    assert main(["agreement", "--judgments", str(tmp_path / "none.jsonl"), "--runs", str(runs[0].path)]) == 2
    assert "no such judgments file" in capsys.readouterr().err
