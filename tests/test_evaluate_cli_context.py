"""`stellar evaluate` from the command line with context and standard metrics, on tiny random models
saved to folders (loaded exactly like real checkpoints; no downloads)."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("transformers")

from stellar.cli import main
from stellar.data import StellarDataset
from stellar.testing import tiny_clip_folder, tiny_dino_folder, tiny_owlvit_folder


def test_cli_goa_rfs_dino_with_tiny_models(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir()
    rng = np.random.default_rng(0)
    for job in ds.jobs("test"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(gen / f"{job.name}.png")
    clip = tiny_clip_folder(tmp_path / "clip")
    owl = tiny_owlvit_folder(tmp_path / "owl")
    dino = tiny_dino_folder(tmp_path / "dino")
    out = tmp_path / "run"
    code = main(["evaluate", "--dataset", str(synthetic), "--generated", str(gen), "--out", str(out), "--metrics", "goa,rfs,dino,clip_t",
                 "--clip", str(clip), "--detector", str(owl), "--scorer-option", f"dino={dino}", "--device", "cpu", "--batch-size", "5"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    df = pd.read_parquet(out / "per_image.parquet")
    t, h = df[df["kind"] == "T"], df[df["kind"] == "H"]
    assert t["goa"].between(0, 1).all() and t["rfs"].between(0, 1).all()
    assert h["goa"].isna().all() and h["rfs"].isna().all()  # Stellar-T metrics
    assert df["dino"].between(-1, 1).all() and df["clip_t"].notna().all()
    objects = json.loads(t["goa_objects"].iloc[0])
    assert set(objects) == set(ds.subject("000").prompts[0].detectables)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["undefined"]["goa"] == len(h) and set(summary["models"]["scorers"]) >= {"context", "dino"}
    assert "GOA" in printed and "RFS" in printed
    assert main(["report", str(out), "--by", "split"]) == 0
    report = capsys.readouterr().out
    assert "GOA ↑" in report and "DINO ↑" in report
