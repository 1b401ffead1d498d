"""Bootstrap intervals, APS intervals, paired comparisons (stellar.report.stats, DESIGN §6.12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from stats_helpers import per_image_frame, write_run

from stellar.cli import main
from stellar.errors import StellarError
from stellar.report.leaderboard import load_run
from stellar.report.stats import (
    APS_ATTRIBUTES,
    aps_from_table,
    bootstrap_intervals,
    compare_runs,
    holm,
    interval_table,
    percentile_interval,
    replicate_counts,
)


# --------------------------------------------------------------------------------- replicates
def test_replicate_counts_are_draws_with_replacement_and_seeded():
    chunks = list(replicate_counts(7, 2500, seed=3))
    counts = np.concatenate(chunks)
    assert counts.shape == (2500, 7)
    assert (counts.sum(axis=1) == 7).all()
    # each unit is drawn once per replicate on average
    assert abs(counts.mean() - 1.0) < 0.02
    again = np.concatenate(list(replicate_counts(7, 2500, seed=3)))
    assert np.array_equal(counts, again)
    assert not np.array_equal(counts, np.concatenate(list(replicate_counts(7, 2500, seed=4))))


def test_cluster_bootstrap_matches_a_naive_loop_over_replicates():
    """The vectorised replicate means equal a per-replicate loop that concatenates the drawn subjects' rows."""
    frame = per_image_frame(5, 7, seed=1, subject_sd=0.2, aps_accuracy=None)
    frame.loc[frame["kind"] == "H", "clip_t"] = np.nan  # NaN-aware means
    got = bootstrap_intervals(frame, ["ips", "clip_t"], n_boot=300, seed=11, ci=0.9)
    rng = np.random.default_rng(11)
    subjects = pd.factorize(frame["subject"].astype(str))[1]
    reps = []
    for _ in range(300):
        drawn = rng.integers(0, len(subjects), size=len(subjects))
        rows = pd.concat([frame[frame["subject"] == subjects[d]] for d in drawn])
        reps.append([rows["ips"].mean(), rows["clip_t"].mean()])  # pandas skips NaN
    lo, hi = np.quantile(np.array(reps), [0.05, 0.95], axis=0)
    assert got["ips"].lo == pytest.approx(lo[0], abs=1e-12) and got["ips"].hi == pytest.approx(hi[0], abs=1e-12)
    assert got["clip_t"].lo == pytest.approx(lo[1], abs=1e-12) and got["clip_t"].hi == pytest.approx(hi[1], abs=1e-12)
    assert got["clip_t"].mean == pytest.approx(frame["clip_t"].dropna().mean())
    assert got["clip_t"].n == int(frame["clip_t"].notna().sum())


def test_ci_collapses_to_the_point_when_every_subject_is_identical():
    one = per_image_frame(1, 9, seed=2, aps_accuracy=None)
    frames = []
    for s in range(8):  # eight subjects with exactly the same jobs and values
        f = one.copy()
        f["subject"] = f"{s:03d}"
        f["name"] = [f"{s:03d}-{n[4:]}" for n in f["name"]]
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    for m, iv in bootstrap_intervals(frame, n_boot=500, seed=0).items():
        assert iv.lo == pytest.approx(iv.mean, abs=1e-12) and iv.hi == pytest.approx(iv.mean, abs=1e-12), m
    # the job bootstrap does not collapse: values differ within a subject
    job = bootstrap_intervals(frame, ["ips"], n_boot=500, seed=0, resample="job")["ips"]
    assert job.hi - job.lo > 0.01


def test_cluster_bootstrap_is_wider_than_job_bootstrap_under_within_subject_correlation():
    frame = per_image_frame(12, 20, seed=5, subject_sd=0.15, noise_sd=0.02, aps_accuracy=None)
    sub = bootstrap_intervals(frame, ["ips"], n_boot=1000, seed=0)["ips"]
    job = bootstrap_intervals(frame, ["ips"], n_boot=1000, seed=0, resample="job")["ips"]
    assert sub.half_width > 3 * job.half_width
    # without a subject effect the two agree roughly
    flat = per_image_frame(12, 20, seed=5, subject_sd=0.0, noise_sd=0.1, aps_accuracy=None)
    a = bootstrap_intervals(flat, ["ips"], n_boot=1000, seed=0)["ips"].half_width
    b = bootstrap_intervals(flat, ["ips"], n_boot=1000, seed=0, resample="job")["ips"].half_width
    assert 0.6 < a / b < 1.6


def test_intervals_are_deterministic_for_a_seed():
    frame = per_image_frame(6, 10, seed=0, subject_sd=0.1)
    a = bootstrap_intervals(frame, n_boot=200, seed=9)
    assert a == bootstrap_intervals(frame, n_boot=200, seed=9)
    assert a != bootstrap_intervals(frame, n_boot=200, seed=10)


def test_percentile_interval_rejects_bad_levels_and_ignores_undefined_replicates():
    reps = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, np.nan], [4.0, np.nan], [5.0, np.nan]])
    lo, hi = percentile_interval(reps, 0.5)
    assert (lo[0], hi[0]) == (2.0, 4.0) and np.isnan(lo[1]) and np.isnan(hi[1])
    with pytest.raises(StellarError, match="between 0 and 1"):
        percentile_interval(reps, 95)


# ----------------------------------------------------------------------------------------- APS
def test_aps_of_hard_predictions_equals_sklearn_roc_auc():
    frame = per_image_frame(6, 10, seed=4, aps_accuracy=0.7)
    frame.loc[::7, "aps_label_Young"] = 0  # unknown labels are left out
    frame["aps_label_Big_Nose"] = 1  # one class only: the attribute is skipped
    expected = []
    for a in APS_ATTRIBUTES:
        known = frame[f"aps_label_{a}"] != 0
        y = frame.loc[known, f"aps_label_{a}"]
        if y.nunique() == 2:
            expected.append(roc_auc_score(y, frame.loc[known, f"aps_pred_{a}"]))
    assert len(expected) == 7
    assert aps_from_table(frame) == pytest.approx(np.mean(expected), abs=1e-12)
    iv = bootstrap_intervals(frame, ["aps"], n_boot=300, seed=0)["aps"]
    assert iv.mean == pytest.approx(np.mean(expected), abs=1e-12)
    assert iv.lo < iv.mean < iv.hi


def test_point_estimates_equal_the_report_aggregation():
    """The bootstrap's statistic is metrics.aggregate's row rule: finite values only; APS over rows with label and prediction ≠ 0."""
    from stellar.metrics.aggregate import aggregate

    frame = per_image_frame(5, 8, seed=6, aps_accuracy=0.7)
    frame.loc[::5, "ips"] = np.nan
    frame.loc[3, "sis"] = np.inf
    frame.loc[::4, "aps_label_Male"] = 0
    frame.loc[1::6, "aps_pred_Young"] = 0  # no prediction (--partial failure): not counted
    ours = bootstrap_intervals(frame, ["ips", "sis", "clip_t", "aps"], n_boot=50)
    ref = aggregate(frame, ["ips", "sis", "clip_t", "aps"])["means"]
    for m in ("ips", "sis", "clip_t", "aps"):
        assert ours[m].mean == pytest.approx(ref[m], abs=1e-12), m
    assert ours["ips"].n == int(frame["ips"].notna().sum()) and ours["sis"].n == len(frame) - 1


def test_aps_bootstrap_matches_sklearn_on_resampled_tables():
    """Replicate APS (probes fixed) = sklearn AUC of the drawn rows, for a naive loop with the same draws."""
    frame = per_image_frame(4, 6, seed=8, aps_accuracy=0.75)
    got = bootstrap_intervals(frame, ["aps"], n_boot=40, seed=2, ci=0.8)["aps"]
    rng = np.random.default_rng(2)
    subjects = pd.factorize(frame["subject"].astype(str))[1]
    reps = []
    for _ in range(40):
        drawn = rng.integers(0, len(subjects), size=len(subjects))
        rows = pd.concat([frame[frame["subject"] == subjects[d]] for d in drawn])
        aucs = [roc_auc_score(rows[f"aps_label_{a}"], rows[f"aps_pred_{a}"]) for a in APS_ATTRIBUTES if rows[f"aps_label_{a}"].nunique() == 2]
        reps.append(np.mean(aucs))
    lo, hi = np.quantile(reps, [0.1, 0.9])
    assert (got.lo, got.hi) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_interval_table_groups_by_kind_and_category():
    frame = per_image_frame(6, 12, seed=3)
    t = interval_table(frame, ["ips", "aps"], by="split", n_boot=100)
    assert set(t) == {"T", "H"}
    assert t["H"]["ips"].n == int((frame["kind"] == "H").sum())
    c = interval_table(frame, ["ips"], by="category", n_boot=100)
    assert set(c) == {"animals", "objects", "scenes"}
    in_animals = frame["categories"].map(lambda cs: "animals" in cs)
    assert c["animals"]["ips"].mean == pytest.approx(frame.loc[in_animals, "ips"].mean())
    with pytest.raises(StellarError, match="use split or category"):
        interval_table(frame, ["ips"], by="subject")


# -------------------------------------------------------------------------------------- compare
def test_holm_known_answer():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.5, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def _runs(tmp_path, frames: dict, **kw):
    return [load_run(write_run(tmp_path / name, f, method=name, **kw.get(name, {}))) for name, f in frames.items()]


def test_exact_sign_flip_p_value_known_answer(tmp_path):
    """Three subjects, one job each, differences 1, 2, 3 (Δ = 2).

    The 8 swaps give Δ(e) = (±1 ± 2 ± 3)/3 ∈ {±2, ±4/3, ±2/3, 0, 0}: |Δ(e)| ≥ 2 for 2 of them → p = 0.25.
    Differences 3, −1, −1 (Δ = 1/3) give |Δ(e)| ∈ {1/3, 1/3, 1, 1, 1, 1, 5/3, 5/3}: all ≥ 1/3 → p = 1.
    """
    a = per_image_frame(3, 1, seed=0, metrics={"ips": 0.0}, noise_sd=0.0, aps_accuracy=None)
    b = a.copy()
    a["ips"] = [1.0, 2.0, 3.0]
    b["ips"] = [0.0, 0.0, 0.0]
    res = compare_runs(_runs(tmp_path, {"a": a, "b": b}), ["ips"], n_boot=50)
    row = res.pairs.iloc[0]
    assert row["diff"] == pytest.approx(2.0)
    assert row["p"] == pytest.approx(0.25)
    assert res.settings["permutation"] == "exact, 8 swaps"
    a["ips"] = [3.0, -1.0, -1.0]
    res = compare_runs(_runs(tmp_path / "2", {"a": a, "b": b}), ["ips"], n_boot=50)
    assert res.pairs.iloc[0]["diff"] == pytest.approx(1 / 3) and res.pairs.iloc[0]["p"] == pytest.approx(1.0)


def test_run_compared_with_itself_is_not_significant(tmp_path):
    frame = per_image_frame(20, 5, seed=1, subject_sd=0.1)  # 20 subjects: Monte-Carlo permutations
    runs = _runs(tmp_path, {"a": frame, "b": frame.copy()})
    res = compare_runs(runs, n_boot=200, permutations=500)
    assert (res.pairs["p"] == 1.0).all() and (res.pairs["p_holm"] == 1.0).all()
    assert (res.pairs["diff"] == 0).all() and (res.pairs["diff_lo"] == 0).all() and (res.pairs["diff_hi"] == 0).all()
    assert (res.pairs["verdict"] == "no significant difference").all()
    assert (res.best[["a", "b"]] == 0.5).all().all()
    assert res.settings["permutation"] == "Monte Carlo, 500 swaps"


def test_compare_finds_a_real_difference_and_names_the_better_run(tmp_path):
    a = per_image_frame(20, 5, seed=1, subject_sd=0.05, aps_accuracy=0.9)
    b = a.copy()
    b["ips"] = a["ips"] - 0.1 + np.random.default_rng(0).normal(0, 0.02, len(a))
    runs = _runs(tmp_path, {"good": a, "worse": b})
    res = compare_runs(runs, ["ips", "sis"], n_boot=500, permutations=2000)
    ips = res.pairs[res.pairs["metric"] == "ips"].iloc[0]
    assert ips["p"] == pytest.approx(1 / 2001)
    assert ips["verdict"] == "good better"
    assert ips["diff_lo"] > 0.05 and ips["diff_hi"] < 0.15
    assert res.best.set_index("metric").loc["ips", "good"] == 1.0
    sis = res.pairs[res.pairs["metric"] == "sis"].iloc[0]
    assert sis["verdict"] == "no significant difference" and sis["p"] == 1.0


def test_compare_of_three_runs_corrects_over_pairs_and_metrics(tmp_path):
    base = per_image_frame(8, 6, seed=2, aps_accuracy=0.8)
    frames = {"r0": base, "r1": base.copy(), "r2": base.copy()}
    frames["r2"]["ips"] = base["ips"] + 0.2
    res = compare_runs(_runs(tmp_path, frames), n_boot=200)
    assert len(res.pairs) == 3 * 4  # 3 pairs × (ips, sis, clip_t, aps)
    assert res.settings["tests"] == 12
    ps = res.pairs["p"].to_numpy()
    assert np.allclose(res.pairs["p_holm"], holm(ps))
    assert np.allclose(res.best[["r0", "r1", "r2"]].sum(axis=1), 1.0)
    assert res.best.set_index("metric").loc["ips", "r2"] == 1.0


def test_aps_permutation_swaps_predictions(tmp_path):
    """APS Δ of two runs whose predictions are all right vs all wrong: exact p = 2/2^U, and Δ = 1."""
    a = per_image_frame(4, 6, seed=3, aps_accuracy=1.0)
    b = per_image_frame(4, 6, seed=3, aps_accuracy=0.0)
    res = compare_runs(_runs(tmp_path, {"right": a, "wrong": b}), ["aps"], n_boot=100)
    row = res.pairs.iloc[0]
    assert row["mean_a"] == 1.0 and row["mean_b"] == 0.0
    assert row["p"] == pytest.approx(2 / 16)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fingerprint": "other"}, "different datasets"),
        ({"failure_rule": "partial"}, "different failure rules: worst vs partial"),
        ({"faces": "paper"}, "different model protocols \\(faces: offline vs paper\\)"),
        ({"exclusion": True}, "exclusion rule was applied in b but not in a"),
    ],
)
def test_compare_refuses_runs_that_differ(tmp_path, change, message):
    frame = per_image_frame(4, 5, seed=0)
    runs = _runs(tmp_path, {"a": frame, "b": frame.copy()}, b=change)
    with pytest.raises(StellarError, match=message):
        compare_runs(runs, n_boot=10)


def test_compare_refuses_different_job_sets_naming_them(tmp_path):
    frame = per_image_frame(4, 5, seed=0)
    runs = _runs(tmp_path, {"a": frame, "b": frame.iloc[:-2].copy()})
    with pytest.raises(StellarError, match=r"2 job\(s\) only in a \(e.g. 003-0-03, 003-0-04\), 0 only in b"):
        compare_runs(runs, n_boot=10)


def test_compare_refuses_unknown_metric_and_duplicate_names(tmp_path):
    frame = per_image_frame(4, 5, seed=0)
    runs = _runs(tmp_path, {"a": frame, "b": frame.copy()})
    with pytest.raises(StellarError, match="'goa' is not a column"):
        compare_runs(runs, ["goa"], n_boot=10)
    with pytest.raises(StellarError, match="share the name"):
        compare_runs([runs[0], runs[0]], n_boot=10)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_compare_formats_and_bit_identical_outputs(tmp_path, capsys):
    a = per_image_frame(6, 8, seed=1, subject_sd=0.05)
    b = a.copy()
    b["ips"] = a["ips"] - 0.05
    ra, rb = write_run(tmp_path / "a", a, method="a"), write_run(tmp_path / "b", b, method="b")
    outs = []
    for fmt in ("md", "csv", "json", "json"):
        assert main(["compare", str(ra), f"{rb}=B", "--format", fmt, "--bootstrap", "200", "--seed", "3"]) == 0
        outs.append(capsys.readouterr().out)
    assert "| a | B | IPS ↑ |" in outs[0] and "Probability of being best" in outs[0]
    assert outs[1].splitlines()[0] == "a,b,metric,mean_a,mean_b,diff,diff_lo,diff_hi,p,p_holm,verdict"
    assert outs[2] == outs[3]  # bit-identical across invocations
    assert main(["compare", str(ra), "--bootstrap", "10"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["compare", str(ra), str(rb), "--ci", "95"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    out = tmp_path / "cmp.json"
    assert main(["compare", str(ra), f"{rb}=B", "--format", "json", "--bootstrap", "200", "--seed", "3", "--out", str(out)]) == 0
    assert out.read_text() == outs[2]


# --------------------------------------------------------------------------------------- demo
@pytest.fixture(scope="module")
def demo_runs(demo_dataset, tmp_path_factory):
    """The demo's copy and noise runs (real photos, offline face preset, 64 px)."""
    from stellar.demo import run_demo

    out = tmp_path_factory.mktemp("stats-demo")
    assert run_demo(out, size=64, methods=("copy", "noise"), offline=True, progress=False) == 0
    return out / "runs"


def test_compare_on_the_demo(demo_runs, capsys):
    copy, noise = str(demo_runs / "copy"), str(demo_runs / "noise")
    runs = [load_run(copy), load_run(noise)]
    frame = runs[0].per_image
    # by subject: an exact test over the 2^6 swaps; subjects where both runs score 0 cannot move Δ,
    # so the smallest attainable p is 2 / 2^(subjects with a non-zero difference)
    by_subject = compare_runs(runs, ["ips"], n_boot=500)
    informative = int((frame.groupby("subject")["ips"].sum() != 0).sum())
    row = by_subject.pairs.iloc[0]
    assert row["diff"] > 0.5 and row["diff_lo"] > 0
    assert row["p"] == pytest.approx(2 / 2**informative)
    # by job (120 jobs): copy vs noise is significant for IPS
    by_job = compare_runs(runs, ["ips", "sis"], n_boot=500, resample="job")
    ips = by_job.pairs.set_index("metric").loc["ips"]
    assert ips["p_holm"] < 0.001 and ips["verdict"] == "copy better"
    # the same run twice: not significant, p = 1
    assert main(["compare", copy, f"{copy}=copy-again", "--format", "json", "--bootstrap", "300"]) == 0
    import json

    same = json.loads(capsys.readouterr().out)
    assert all(r["p"] == 1.0 and r["verdict"] == "no significant difference" for r in same["pairs"])
    for _ in range(2):
        assert main(["compare", copy, noise, "--bootstrap", "300", "--seed", "7"]) == 0
    first, second = capsys.readouterr().out.split("### Paired differences")[1:]
    assert first == second


def test_report_intervals_keeps_the_grouped_api_the_html_report_uses():
    """Regression: report_intervals(frame, columns, by=…) → {group: {column: Interval}} (stellar.report.html calls it)."""
    from stellar.report.stats import report_intervals, row_intervals

    frame = per_image_frame(6, 12, seed=3)
    grouped = report_intervals(frame, ["ips", "aps", "images"], by="split", n_boot=100)
    assert set(grouped) == {"T", "H"} and set(grouped["T"]) == {"ips", "aps"}
    assert grouped["H"] == row_intervals(frame[frame["kind"] == "H"], ["ips", "aps"], n_boot=100)
    assert set(report_intervals(frame, ["ips"], n_boot=50)) == {"all"}
    assert set(report_intervals(frame, ["ips"], by="category", n_boot=50)) == {"animals", "objects", "scenes"}


def test_aps_of_each_face_preset_gets_its_interval():
    """A several-preset run has ``aps_pred_A@PRESET`` columns: ``aps@PRESET`` gets a probes-fixed interval
    like ``aps`` (it had none), from that preset's predictions and the shared labels."""
    frame = per_image_frame(6, 10, seed=4, aps_accuracy=0.7)
    other = per_image_frame(6, 10, seed=9, aps_accuracy=0.55)
    for a in APS_ATTRIBUTES:
        frame[f"aps_pred_{a}@second"] = other[f"aps_pred_{a}"].to_numpy()
    ivs = bootstrap_intervals(frame, n_boot=300, seed=0)
    assert {"aps", "aps@second"} <= set(ivs)
    renamed = frame.drop(columns=[f"aps_pred_{a}" for a in APS_ATTRIBUTES]).rename(columns={f"aps_pred_{a}@second": f"aps_pred_{a}" for a in APS_ATTRIBUTES})
    plain = bootstrap_intervals(renamed, ["aps"], n_boot=300, seed=0)["aps"]
    assert (ivs["aps@second"].mean, ivs["aps@second"].lo, ivs["aps@second"].hi) == (plain.mean, plain.lo, plain.hi)
    assert ivs["aps@second"].mean != pytest.approx(ivs["aps"].mean)
    from stellar.report.stats import row_intervals

    rows = row_intervals(frame, ["aps", "aps@second", "ips"], n_boot=300, seed=0)
    assert rows["aps@second"].mean == plain.mean and "aps" in rows


def test_compare_leaves_out_per_preset_aps_and_says_so(tmp_path):
    frame = per_image_frame(6, 10, seed=4, aps_accuracy=0.7)
    for a in APS_ATTRIBUTES:
        frame[f"aps_pred_{a}@second"] = frame[f"aps_pred_{a}"].to_numpy()
    runs = [load_run(write_run(tmp_path / n, frame, method=n), n) for n in ("a", "b")]
    result = compare_runs(runs, n_boot=50, permutations=100)
    assert "aps@second" not in result.metrics and "aps" in result.metrics
    with pytest.raises(StellarError, match="aps@PRESET"):
        compare_runs(runs, metrics=["aps@second"], n_boot=50)
