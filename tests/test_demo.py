"""The generated-set writer (atomic, resumable) and ``stellar demo`` end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import stellar.fileio as fileio_module
from stellar.cli import main
from stellar.data.dataset import StellarDataset
from stellar.data.generated import GeneratedSet
from stellar.errors import StellarError
from stellar.fileio import atomic_write_bytes
from stellar.generate import MethodBase, create_method, write_generated_set


def _state(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


class Recorder(MethodBase):
    """A flat-colour method that records the calls the harness makes, and can fail on demand."""

    name = "recorder"

    def __init__(self, fail_on_call: int | None = None, wrong_count: bool = False, **settings):
        super().__init__(**settings)
        self.calls: list[tuple] = []
        self.fail_on_call = fail_on_call
        self.wrong_count = wrong_count

    def setup(self, device):
        self.calls.append(("setup", device))

    def prepare_subject(self, subject):
        self.calls.append(("prepare", subject.id, len(subject.photos)))

    def generate(self, jobs, seed):
        n = sum(c[0] == "generate" for c in self.calls)
        self.calls.append(("generate", tuple(j.name for j in jobs)))
        if self.fail_on_call is not None and n == self.fail_on_call:
            raise RuntimeError("simulated crash")
        images = [Image.new("RGB", (16, 16), (len(j.name) * 7 % 256, j.prompt.index * 20 % 256, seed % 256)) for j in jobs]
        return images[:-1] if self.wrong_count else images


# ------------------------------------------------------------------------------------------- writer
def test_writer_writes_official_layout_matched_by_sidecar(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test")
    out = tmp_path / "gen"
    summary = write_generated_set(create_method("noise", size=32), jobs, out, dataset=ds, seed=3, progress=False)
    assert (summary.total, summary.written, summary.skipped) == (len(jobs), len(jobs), 0)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{j.name}.png" for j in jobs] + [f"{j.name}.json" for j in jobs])
    gs = GeneratedSet(out, ds)
    assert gs.summary()["matched"] == len(jobs) and gs.summary()["matched_by"]["sidecar"] == len(jobs)
    assert [p for p in gs.problems(decode_images=True) if p.severity == "error"] == []
    job = jobs[5]
    meta = json.loads((out / f"{job.name}.json").read_text())
    assert meta["save_name"] == job.name and meta["template"] == job.prompt.template
    assert meta["prompt"] == job.prompt.fill() and "{}" not in meta["prompt"]
    assert meta["image_path"] == f"{job.subject}/{job.photo.path.name}"
    assert meta["attributes"] == dict(job.photo.attributes) and meta["detectables"] == list(job.prompt.detectables)
    assert (meta["method"], meta["seed"], meta["settings"]) == ("noise", 3, {"size": 32, "cell": 4})


def test_writer_resumes_and_repairs(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test")
    out = tmp_path / "gen"
    write_generated_set(create_method("noise", size=32), jobs, out, progress=False)
    before = _state(out)
    again = write_generated_set(create_method("noise", size=32), jobs, out, progress=False)
    assert (again.written, again.skipped) == (0, len(jobs))
    assert _state(out) == before
    # a truncated image and a missing sidecar are regenerated, identically (per-job seeds)
    broken, orphan = jobs[1].name, jobs[7].name
    (out / f"{broken}.png").write_bytes(before[f"{broken}.png"][1][:100])
    (out / f"{orphan}.json").unlink()
    repaired = write_generated_set(create_method("noise", size=32), jobs, out, progress=False)
    assert (repaired.written, repaired.skipped) == (2, len(jobs) - 2)
    after = _state(out)
    assert after[f"{broken}.png"][1] == before[f"{broken}.png"][1]
    assert after[f"{orphan}.json"][1] == before[f"{orphan}.json"][1]
    # other settings or another seed: nothing is reused
    assert write_generated_set(create_method("noise", size=40), jobs, out, progress=False).written == len(jobs)
    assert write_generated_set(create_method("noise", size=40), jobs, out, seed=1, progress=False).written == len(jobs)
    assert write_generated_set(create_method("noise", size=40), jobs, out, seed=1, force=True, progress=False).written == len(jobs)


def test_writer_interrupted_run_leaves_only_complete_outputs(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test")
    out = tmp_path / "gen"
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_generated_set(Recorder(fail_on_call=2), jobs, out, batch_size=3, progress=False)
    done = sorted(p.stem for p in out.glob("*.png"))
    assert done == sorted(j.name for j in jobs[:6])  # two batches of three completed
    assert sorted(p.stem for p in out.glob("*.json")) == done
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    resumed = Recorder()
    summary = write_generated_set(resumed, jobs, out, batch_size=3, progress=False)
    assert (summary.written, summary.skipped) == (len(jobs) - 6, 6)
    generated = [n for c in resumed.calls if c[0] == "generate" for n in c[1]]
    assert generated == [j.name for j in jobs[6:]]


def test_writer_calls_setup_once_and_prepare_per_subject(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test")
    method = Recorder()
    write_generated_set(method, jobs, tmp_path / "gen", dataset=ds, batch_size=4, device="cpu", progress=False)
    assert method.calls[0] == ("setup", "cpu") and sum(c[0] == "setup" for c in method.calls) == 1
    prepares = [c for c in method.calls if c[0] == "prepare"]
    assert prepares == [("prepare", s, 2) for s in ("000", "001", "002")]
    for c in method.calls:
        if c[0] == "generate":
            assert len(c[1]) <= 4 and len({n.split("-")[0] for n in c[1]}) == 1  # a batch never mixes subjects
    # nothing left to do: no setup (no model load) at all
    idle = Recorder()
    assert write_generated_set(idle, jobs, tmp_path / "gen", progress=False).written == 0
    assert idle.calls == []


def test_writer_rejects_a_method_returning_the_wrong_count(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    with pytest.raises(StellarError, match="one PIL image per job"):
        write_generated_set(Recorder(wrong_count=True), ds.jobs("test"), tmp_path / "gen", progress=False)
    with pytest.raises(StellarError, match="image format"):
        write_generated_set(Recorder(), ds.jobs("test"), tmp_path / "gen", image_format="gif", progress=False)


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "a.png"
    atomic_write_bytes(target, b"old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio_module.os, "replace", failing_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # temp file removed
    monkeypatch.undo()
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    mode = os.stat(target).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


# ------------------------------------------------------------------------------------------- demo
def test_run_demo_end_to_end(demo_dataset, tmp_path, capsys):
    from stellar.demo import run_demo

    out = tmp_path / "demo-out"
    assert run_demo(out, size=64, offline=True, progress=False) == 0
    printed = capsys.readouterr().out
    ds = StellarDataset(out / "dataset")
    n = len(ds.jobs("test"))
    assert n == 120
    for name in ("copy", "noise", "paste"):
        gs = GeneratedSet(out / "generated" / name, ds)
        assert gs.summary()["matched"] == n and gs.summary()["missing"] == 0
        assert f"{name:6s}  {n}/{n}" in printed
    copy = np.asarray(Image.open(out / "generated" / "copy" / "004-2-00.png"))
    assert copy.shape == (64, 64, 3)
    assert "6 identities" in printed and "OK" in printed
    # the demo ends with the evaluation and the leaderboard of the three sanity methods
    assert "Leaderboard (faces preset 'offline'" in printed and "| copy |" in printed and "| noise |" in printed
    assert "exclusion rule NOT applied" in printed and "| NOT applied |" in printed  # in the table itself (issue 9.19)
    assert "add a second photo" not in printed  # the demo's own one-photo subjects are by construction
    # rerun: nothing rewritten
    before = _state(out / "generated" / "paste")
    assert run_demo(out, size=64, offline=True, progress=False) == 0
    assert _state(out / "generated" / "paste") == before


def test_run_demo_reports_errors(demo_dataset, tmp_path, capsys):
    from stellar.demo import run_demo

    out = tmp_path / "demo-out"
    stray = out / "generated" / "noise"
    stray.mkdir(parents=True)
    (stray / "not-a-job.png").write_bytes(b"junk")
    assert run_demo(out, size=32, methods=("noise",), offline=True, progress=False, evaluate=False) == 1
    printed = capsys.readouterr().out
    assert "not matched to any job" in printed and "FAILED" in printed


def test_cli_demo(demo_dataset, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--size", "32", "--offline", "--quiet", "--no-evaluate"]) == 0
    assert "120/120" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "o"), "--size", "0", "--offline", "--quiet"]) == 2


def test_cli_demo_without_face_recognition_needs_no_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "empty-home"))
    out = str(tmp_path / "o")
    assert main(["demo", "--out", out, "--size", "32", "--offline", "--quiet"]) == 2
    assert "pip download --no-deps --no-binary :all: face_recognition==1.3.0" in capsys.readouterr().err
    assert main(["demo", "--out", out, "--size", "32", "--offline", "--quiet", "--skip-face-recognition", "--no-evaluate"]) == 0
    printed = capsys.readouterr().out
    assert "4 identities" in printed and "60/60" in printed
    assert not (tmp_path / "empty-home").exists()
