"""Synthetic results tables and run directories that follow the results contract (per_image.parquet).

Used by the statistics, comparison and agreement tests: no model, no image — only the files that
``stellar report`` / ``compare`` / ``agreement`` read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stellar.report.stats import APS_ATTRIBUTES

CATEGORIES = ("animals", "objects", "scenes")


def per_image_frame(
    n_subjects: int = 6,
    jobs_per_subject: int = 10,
    *,
    seed: int = 0,
    metrics: dict[str, float] | None = None,
    subject_sd: float = 0.0,
    noise_sd: float = 0.05,
    aps_accuracy: float | None = 0.8,
) -> pd.DataFrame:
    """A contract-conforming ``per_image`` table.

    Each metric ``m`` has value ``base + subject effect (sd subject_sd) + noise (sd noise_sd)``;
    jobs alternate kinds T/H (3 of every 4 are T), T jobs get one or two categories. With
    ``aps_accuracy``, the 8 APS attributes get random ±1 labels (one class forced present) and
    predictions that are right with that probability.
    """
    rng = np.random.default_rng(seed)
    metrics = metrics if metrics is not None else {"ips": 0.6, "sis": 0.5, "clip_t": 0.3}
    rows = []
    effects = {m: rng.normal(0, subject_sd, n_subjects) for m in metrics}
    for s in range(n_subjects):
        for p in range(jobs_per_subject):
            kind = "H" if p % 4 == 3 else "T"
            cats = [CATEGORIES[p % 3]] + ([CATEGORIES[(p + 1) % 3]] if p % 2 else []) if kind == "T" else []
            row = {
                "name": f"{s:03d}-0-{p:02d}", "subject": f"{s:03d}", "photo": 0, "prompt_index": p, "kind": kind,
                "seed": 0, "split": "test", "categories": cats, "image": f"/gen/{s:03d}-0-{p:02d}.png",
                "image_sha256": None, "status": "ok", "error": None,
            }  # fmt: skip
            for m, base in metrics.items():
                row[m] = base + effects[m][s] + rng.normal(0, noise_sd)
            rows.append(row)
    frame = pd.DataFrame(rows)
    if aps_accuracy is not None:
        n = len(frame)
        for a in APS_ATTRIBUTES:
            labels = rng.choice(np.array([-1, 1], dtype=np.int8), n)
            labels[0], labels[-1] = 1, -1
            right = rng.random(n) < aps_accuracy
            frame[f"aps_label_{a}"] = labels.astype(np.int8)
            frame[f"aps_pred_{a}"] = np.where(right, labels, -labels).astype(np.int8)
        frame["aps_image"] = np.mean([frame[f"aps_label_{a}"] == frame[f"aps_pred_{a}"] for a in APS_ATTRIBUTES], axis=0)
    return frame


def write_run(
    folder: Path, frame: pd.DataFrame, *, method: str, fingerprint: str = "fp-synthetic", failure_rule: str = "worst", faces: str = "offline", exclusion: bool = False
) -> Path:
    """Write ``run.json``, ``summary.json`` and ``per_image.parquet`` of a synthetic run into ``folder``."""
    from stellar.report.stats import aps_from_table

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = [c for c in ("ips", "sis", "clip_t", "clip_i", "goa", "rfs", "dino", "aesthetic", "pick_score", "hpsv2") if c in frame]
    has_aps = any(c.startswith("aps_label_") for c in frame.columns)
    run = {
        "method": method,
        "metrics": metrics + (["aps"] if has_aps else []),
        "models": {"faces": faces, "clip": "clip-test"},
        "config": {},
        "failure_rule": failure_rule,
        "dataset": {"root": "/data", "fingerprint": fingerprint},
    }
    means = {m: float(frame[m].dropna().mean()) for m in metrics}
    if has_aps:
        means["aps"] = aps_from_table(frame)
    by_kind = {k: {"aps": aps_from_table(frame[frame["kind"] == k])} for k in ("T", "H")} if has_aps else {}
    summary = {"method": method, "n_jobs": len(frame), "means": means, "by_kind": by_kind, "exclusion": {"applied": True, "sigma": 0.01} if exclusion else {"applied": False, "reason": "synthetic"}}
    (folder / "run.json").write_text(json.dumps(run))
    (folder / "summary.json").write_text(json.dumps(summary))
    frame.to_parquet(folder / "per_image.parquet", index=False)
    return folder
