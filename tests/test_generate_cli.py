"""`stellar generate`: the harness over registered methods (sanity baselines here; StellarNet in its own tests)."""

import hashlib


from stellar.cli import main
from stellar.data import GeneratedSet, StellarDataset


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


def test_generate_writes_a_set_that_checks_and_resumes(synthetic, tmp_path, capsys):
    out = tmp_path / "noise"
    args = ["generate", "--method", "noise", "--dataset", str(synthetic), "--out", str(out), "--size", "32", "--kinds", "T"]
    assert main(args) == 0
    assert "24 written, 0 already done, 24 jobs" in capsys.readouterr().out
    assert main(["generated", "check", "--dataset", str(synthetic), "--generated", str(out), "--kinds", "T"]) == 0
    first = _digest(out)
    assert main(args) == 0  # resume: nothing to do
    assert "0 written, 24 already done" in capsys.readouterr().out
    assert _digest(out) == first
    # same seed, fresh folder -> identical images; another seed -> different
    assert main([*args[:6], str(tmp_path / "again"), *args[7:]]) == 0
    assert _digest(tmp_path / "again") == first
    assert main([*args[:6], str(tmp_path / "other"), *args[7:], "--seed", "7"]) == 0
    assert _digest(tmp_path / "other") != first


def test_shards_are_disjoint_and_cover_every_job(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    base = ["generate", "--method", "copy", "--dataset", str(synthetic), "--size", "32"]
    for i in range(3):
        assert main([*base, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/3"]) == 0
    names = [set(_digest(tmp_path / f"s{i}")) for i in range(3)]
    assert not (names[0] & names[1]) and not (names[1] & names[2]) and not (names[0] & names[2])
    assert set().union(*names) == {f"{j.name}.png" for j in ds.jobs("test")}


def test_shard_from_torchrun_environment(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["generate", "--method", "noise", "--dataset", str(synthetic), "--out", str(tmp_path / "o"), "--size", "16"]) == 0
    assert "(shard 1/2: 18 of 36 jobs)" in capsys.readouterr().out


def test_seeds_and_settings(synthetic, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["generate", "--method", "noise", "--dataset", str(synthetic), "--out", str(out), "--kinds", "H", "--seeds", "2", "--set", "size=16"]) == 0
    gs = GeneratedSet(out, StellarDataset(synthetic), kinds=("H",))
    assert gs.seeds == 2 and len(gs) == 3 * 2 * 2 * 2
    assert main(["generate", "--method", "nosuch", "--dataset", str(synthetic), "--out", str(out)]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["generate", "--method", "noise", "--dataset", str(synthetic), "--out", str(out), "--set", "oops"]) == 2
