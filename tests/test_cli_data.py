"""The data-layer CLI: ``stellar dataset check``, ``stellar jobs export``, ``stellar generated check``."""

import json
from pathlib import Path

import pytest
from PIL import Image

from stellar.cli import main
from stellar.data import StellarDataset
from stellar.data.export import FIELDS, read_records


# ------------------------------------------------------------------ dataset check
def test_dataset_check_prints_summary_and_exits_0(synthetic, capsys):
    rc = main(["dataset", "check", str(synthetic)])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"dataset {synthetic}" in out
    assert "subjects 5, photos 10, prompts T 20, H 6" in out
    assert "test : 3 subjects, jobs T 24, H 12, total 36" in out
    assert "val  : 2 subjects, jobs T 16, H 0, total 16" in out
    assert "0 error(s), 0 warning(s)" in out


def test_dataset_check_errors_exit_1_and_warnings_do_not(synthetic, capsys):
    (synthetic / "001" / "1_attributes.json").unlink()  # a warning only
    assert main(["dataset", "check", str(synthetic)]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "001/1_attributes.json" in out and "0 error(s), 1 warning(s)" in out
    (synthetic / "002" / "prompts_h.json").write_text(json.dumps({"prompts": ["no placeholder"]}))
    assert main(["dataset", "check", str(synthetic)]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "002/prompts_h.json" in out and "fix:" in out and "1 error(s), 1 warning(s)" in out


def test_dataset_check_json(synthetic, capsys):
    (synthetic / "000" / "1.jpg").write_bytes(b"")
    rc = main(["dataset", "check", str(synthetic), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert data["summary"]["splits"]["test"] == {"subjects": 3, "jobs_T": 24, "jobs_H": 12}
    assert data["summary"]["splits"]["val"]["jobs_T"] == 16 and data["summary"]["subjects"] == 5
    assert [(p["severity"], p["path"]) for p in data["problems"]] == [("error", str(synthetic / "000" / "1.jpg"))]
    assert set(data["problems"][0]) == {"severity", "path", "message", "fix"}


def test_dataset_check_missing_folder_exits_2(tmp_path, capsys):
    assert main(["dataset", "check", str(tmp_path / "nope")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


# ------------------------------------------------------------------ jobs export
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_jobs_export_to_stdout(synthetic, capsys, fmt):
    rc = main(["jobs", "export", "--dataset", str(synthetic), "--format", fmt])
    out = capsys.readouterr().out
    assert rc == 0
    records = read_records(out, fmt)
    assert len(records) == 36 and list(records[0]) == list(FIELDS)
    first = records[0]
    assert first["name"] == "000-0-00" and first["output"] == "000-0-00.png" and first["seed"] == 0
    assert first["template"] == "{} riding a horse in the jungle"
    assert first["prompt"] == "a person riding a horse in the jungle"
    assert first["detectables"] == ["horse", "jungle"] and first["categories"] == ["animal", "location"]
    for rec in records:
        assert Path(rec["input_path"]).is_absolute() and Path(rec["input_path"]).is_file()
        assert Path(rec["mask_path"]).is_absolute() and Path(rec["mask_path"]).name == f"{rec['photo']}_bg.png"
    assert Path(first["input_path"]) == (synthetic / "000" / "0.jpg").resolve()
    h = [r for r in records if r["kind"] == "H"]
    assert len(h) == 12 and h[0]["detectables"] == [] and h[0]["prompt_index"] == 4
    assert [r["name"] for r in records] == [j.name for j in StellarDataset(synthetic).jobs("test")]


def test_jobs_export_to_file_with_options(synthetic, tmp_path, capsys):
    out = tmp_path / "exports" / "jobs.csv"
    rc = main(
        ["jobs", "export", "--dataset", str(synthetic), "--split", "val", "--kinds", "T", "--seeds", "2",
         "--subject-token", "sks person", "--format", "csv", "--out", str(out)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0 and captured.out == "" and f"wrote 32 jobs to {out}" in captured.err
    records = read_records(out.read_text(), "csv")
    assert len(records) == 2 * 2 * 4 * 2
    assert [r["name"] for r in records[:3]] == ["200-0-00-s0", "200-0-00-s1", "200-0-01-s0"]
    assert [r["seed"] for r in records[:2]] == [0, 1] and records[1]["output"] == "200-0-00-s1.png"
    assert records[0]["prompt"] == "sks person riding a horse in the jungle" and records[0]["split"] == "val"
    assert {r["kind"] for r in records} == {"T"}
    assert not list(out.parent.glob("*.tmp"))


def test_jobs_export_counts_by_split_and_kind(synthetic, capsys):
    counts = {}
    for split, kinds in [("test", "T"), ("test", "H"), ("all", "T,H"), ("val", "H")]:
        assert main(["jobs", "export", "--dataset", str(synthetic), "--split", split, "--kinds", kinds]) == 0
        counts[split, kinds] = len(read_records(capsys.readouterr().out))
    assert counts == {("test", "T"): 24, ("test", "H"): 12, ("all", "T,H"): 52, ("val", "H"): 0}


def test_jobs_export_refuses_a_broken_dataset(synthetic, capsys):
    (synthetic / "000" / "prompts_t.json").write_text("{")
    assert main(["jobs", "export", "--dataset", str(synthetic)]) == 2
    err = capsys.readouterr().err
    assert "000/prompts_t.json" in err and "stellar dataset check" in err


def test_jobs_export_unknown_kind_exits_2(synthetic, capsys):
    assert main(["jobs", "export", "--dataset", str(synthetic), "--kinds", "X"]) == 2
    assert "unknown prompt kind 'X'" in capsys.readouterr().err


# ------------------------------------------------------------------ generated check
def generate(folder, jobs):
    folder.mkdir(exist_ok=True)
    for j in jobs:
        Image.new("RGB", (16, 16), (j.prompt.index * 30 % 256, j.photo.index * 100, 0)).save(folder / f"{j.name}.png")


def gcheck(synthetic, gen, *extra):
    return main(["generated", "check", "--dataset", str(synthetic), "--generated", str(gen), *extra])


def test_generated_check_complete_set(synthetic, tmp_path, capsys):
    gen = tmp_path / "gen"
    generate(gen, StellarDataset(synthetic).jobs("test"))
    assert gcheck(synthetic, gen) == 0
    out = capsys.readouterr().out
    assert "matched 36/36" in out and "unmatched files 0, jobs without image 0, duplicated jobs 0" in out
    assert "0 error(s)" in out


def test_generated_check_missing_jobs_and_partial(synthetic, tmp_path, capsys):
    gen = tmp_path / "gen"
    jobs = StellarDataset(synthetic).jobs("test")
    generate(gen, jobs[:-3])
    assert gcheck(synthetic, gen) == 1
    out = capsys.readouterr().out
    assert "matched 33/36" in out and "3 job(s) have no image" in out and jobs[-1].name in out
    assert gcheck(synthetic, gen, "--partial") == 0
    out = capsys.readouterr().out
    assert "matched 33/36" in out and "WARNING" in out


def test_generated_check_unmatched_and_duplicates_fail(synthetic, tmp_path, capsys):
    gen = tmp_path / "gen"
    generate(gen, StellarDataset(synthetic).jobs("test"))
    Image.new("RGB", (8, 8)).save(gen / "stray.png")
    assert gcheck(synthetic, gen, "--partial") == 1  # --partial forgives missing jobs, not stray files
    out = capsys.readouterr().out
    assert "matched 36/36" in out and "unmatched files 1" in out and "stray.png" in out
    (gen / "stray.png").unlink()
    Image.new("RGB", (8, 8)).save(gen / "001-1-02.webp")
    assert gcheck(synthetic, gen) == 1
    out = capsys.readouterr().out
    assert "matched 35/36" in out and "duplicated jobs 1" in out and "2 files claim job 001-1-02" in out


def test_generated_check_split_kinds_and_json(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    generate(gen, ds.jobs("val"))
    assert gcheck(synthetic, gen, "--split", "val", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["matched"] == data["summary"]["expected"] == 16 and data["problems"] == []
    generate(gen, ds.jobs("test", kinds=("H",)))
    assert gcheck(synthetic, gen, "--kinds", "H", "--no-decode") == 0
    out = capsys.readouterr().out
    assert "matched 12/12" in out and "16 warning(s)" in out  # val images: outside the checked split, warned


def test_generated_check_seeds(synthetic, tmp_path, capsys):
    gen = tmp_path / "gen"
    generate(gen, StellarDataset(synthetic).jobs("test", seeds=2))
    assert gcheck(synthetic, gen) == 0
    out = capsys.readouterr().out
    assert "matched 72/72" in out and "seeds 2" in out
    assert gcheck(synthetic, gen, "--seeds", "3") == 1
    assert "matched 72/108" in capsys.readouterr().out


def test_checks_and_export_never_modify_their_inputs(synthetic, tmp_path, capsys):
    import hashlib

    def listing(root):
        return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}

    gen = tmp_path / "gen"
    generate(gen, StellarDataset(synthetic).jobs("test"))
    (gen / "000-0-00.json").write_text(json.dumps({"save_name": "../escape"}))
    (gen / "broken.png").write_bytes(b"")
    before = listing(synthetic), listing(gen)
    assert main(["dataset", "check", str(synthetic)]) == 0
    assert gcheck(synthetic, gen) == 1
    assert main(["jobs", "export", "--dataset", str(synthetic)]) == 0
    capsys.readouterr()
    assert (listing(synthetic), listing(gen)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["STELLAR", "gen"]


def test_jobs_export_into_a_closed_pipe_stops_quietly(synthetic):
    import subprocess
    import sys

    # 300 seeds x 36 jobs: megabytes, far beyond the pipe buffer, so the writer meets the closed pipe
    cmd = f"{sys.executable} -m stellar.cli jobs export --dataset {synthetic} --seeds 300 --format csv | head -1"
    res = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True)
    assert res.stdout.startswith("name,subject") and "Traceback" not in res.stderr
