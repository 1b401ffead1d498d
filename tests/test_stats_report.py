"""`stellar report` with uncertainty: mean ± half-width of the bootstrap interval (DESIGN §6.12)."""

from __future__ import annotations

import csv
import io

import pytest
from stats_helpers import per_image_frame, write_run

from stellar.cli import main
from stellar.report.leaderboard import leaderboard, load_run, render
from stellar.report.stats import bootstrap_intervals, interval_table


@pytest.fixture
def two_runs(tmp_path):
    a = per_image_frame(8, 12, seed=1, subject_sd=0.1)
    b = per_image_frame(8, 12, seed=2, subject_sd=0.1, metrics={"ips": 0.4, "sis": 0.3, "clip_t": 0.3})
    return write_run(tmp_path / "a", a, method="alpha"), write_run(tmp_path / "b", b, method="beta")


def _report(capsys, *args):
    assert main(["report", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_report_shows_mean_plus_minus_half_width_in_every_format(two_runs, capsys):
    ra, rb = two_runs
    iv = bootstrap_intervals(load_run(ra).per_image, ["ips", "aps"], n_boot=1000, seed=0)
    md = _report(capsys, ra, rb)
    assert f"| alpha | **{iv['ips'].mean:.4f}** ± {iv['ips'].half_width:.4f} |" in md
    assert f"{iv['aps'].mean:.4f}** ± {iv['aps'].half_width:.4f}" in md  # APS: probes fixed
    assert "± = half-width of the 95 % percentile interval (cluster bootstrap over subjects, 1000 replicates, seed 0)" in md
    rows = list(csv.DictReader(io.StringIO(_report(capsys, ra, rb, "--format", "csv"))))
    assert float(rows[0]["ips_lo"]) == pytest.approx(iv["ips"].lo, abs=1e-4) and float(rows[0]["ips_hi"]) == pytest.approx(iv["ips"].hi, abs=1e-4)
    assert float(rows[0]["aps_lo"]) == pytest.approx(iv["aps"].lo, abs=1e-4)
    assert "images_lo" not in rows[0]  # counts have no interval
    assert r"$\pm$" in _report(capsys, ra, rb, "--format", "latex")
    # html: the one-page renderer (the CLI's --format html writes the report folder of stellar.report.html)
    tables = leaderboard([load_run(ra), load_run(rb)], ci=0.95)
    assert f"± {iv['ips'].half_width:.4f}" in render(tables, "html")
    plain = _report(capsys, ra, rb, "--ci", "none")
    assert "±" not in plain and f"**{iv['ips'].mean:.4f}** |" in plain
    assert "ips_lo" not in _report(capsys, ra, rb, "--format", "csv", "--ci", "none")


def test_report_intervals_per_kind_and_category(two_runs, capsys):
    ra, _ = two_runs
    frame = load_run(ra).per_image
    split = _report(capsys, ra, "--by", "split", "--bootstrap", "300", "--seed", "4")
    kinds = interval_table(frame, ["ips"], by="split", n_boot=300, seed=4)
    assert f"{kinds['T']['ips'].mean:.4f} ± {kinds['T']['ips'].half_width:.4f}" in split
    assert f"{kinds['H']['ips'].mean:.4f} ± {kinds['H']['ips'].half_width:.4f}" in split
    cats = _report(capsys, ra, "--by", "category", "--bootstrap", "300", "--seed", "4", "--resample", "job")
    by_cat = interval_table(frame, ["ips", "aps"], by="category", n_boot=300, seed=4, resample="job")
    assert f"{by_cat['animals']['ips'].mean:.4f} ± {by_cat['animals']['ips'].half_width:.4f}" in cats
    assert f"{by_cat['animals']['aps'].mean:.4f} ± {by_cat['animals']['aps'].half_width:.4f}" in cats  # APS of the subset, probes fixed
    assert "bootstrap over jobs, 300 replicates, seed 4" in cats


def test_report_is_bit_identical_for_a_seed(two_runs, capsys):
    ra, rb = two_runs
    first = _report(capsys, ra, rb, "--format", "csv", "--seed", "5")
    assert _report(capsys, ra, rb, "--format", "csv", "--seed", "5") == first
    assert _report(capsys, ra, rb, "--format", "csv", "--seed", "6") != first


def test_report_rejects_a_bad_level(two_runs, capsys):
    assert main(["report", str(two_runs[0]), "--ci", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_leaderboard_api_without_ci_is_unchanged(two_runs):
    runs = [load_run(p) for p in two_runs]
    (table,) = leaderboard(runs)
    assert table.intervals == {} and "±" not in render([table], "md")
    (table,) = leaderboard(runs, ci=0.9, n_boot=200)
    assert set(table.intervals) == {"alpha", "beta"} and set(table.intervals["alpha"]) == {"ips", "sis", "clip_t", "aps"}
