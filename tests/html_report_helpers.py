"""Synthetic finished runs for the HTML report's tests and its benchmark.

:func:`write_synthetic_run` writes a run directory in the results contract's format
(``run.json``, ``summary.json``, ``per_image.parquet`` with statuses, ``face_boxes``,
``goa_objects``, ``rfs_triplets``, ``aps_pred_*``/``aps_label_*``) plus its generated images, for the
jobs of a dataset — no model runs, so thousands of jobs take seconds. The numbers are random but
consistent with the contract (IPS ≤ … etc. are not needed by the report); ``summary.json`` means
are the column means, as the engine writes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

APS = ("Young", "Male", "High_Cheekbones", "Pointy_Nose", "Narrow_Eyes", "Double_Chin", "Big_Lips", "Big_Nose")


def write_synthetic_run(
    run_dir: Path,
    dataset_root: Path,
    method: str,
    *,
    seed: int = 0,
    image_size: int = 32,
    p_no_face: float = 0.1,
    p_missing: float = 0.0,
    p_decode_error: float = 0.0,
    fingerprint: str = "sha256:synthetic",
    clip: bool = True,
    images: bool = True,
) -> Path:
    """Write a finished run of ``method`` on the test jobs of ``dataset_root`` into ``run_dir``."""
    from stellar.data.dataset import StellarDataset

    run_dir = Path(run_dir)
    gen = run_dir.parent / f"{run_dir.name}-generated"
    gen.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jobs = StellarDataset(dataset_root).jobs("test")
    n = len(jobs)
    u = rng.random(n)
    status = np.where(u < p_missing, "missing", np.where(u < p_missing + p_decode_error, "decode_error", np.where(u < p_missing + p_decode_error + p_no_face, "no_face_generated", "ok")))
    ips_raw = np.clip(rng.normal(0.6 + 0.05 * seed, 0.15, n), 0, 1)
    ips_raw[status != "ok"] = 0.0
    sis_raw = ips_raw * rng.uniform(0.8, 1.0, n)
    clip_t = rng.normal(0.30, 0.03, n) if clip else np.full(n, np.nan)
    clip_n = rng.normal(0.25, 0.02, n) if clip else np.full(n, np.nan)
    sigma = float(np.nanstd(clip_n, ddof=1)) if clip else None
    followed = (clip_t > clip_n + 2 * sigma) if clip else np.full(n, None)
    no_image = np.isin(status, ["missing", "decode_error"])
    rows = []
    for k, job in enumerate(jobs):
        path = gen / f"{job.name}.png"
        if images and status[k] != "missing":
            if status[k] == "decode_error":
                path.write_bytes(b"not an image")
            else:
                arr = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(path)
        exists = images and status[k] != "missing"
        t = job.kind == "T"
        det = list(job.prompt.detectables) if t else []
        goa_objects = {q: float(rng.uniform(0, 0.4)) for q in det} if t else None
        boxes = [] if status[k] != "ok" else [[image_size * 0.25, image_size * 0.2, image_size * 0.75, image_size * 0.8, 0.99]]
        fl = None if not clip or no_image[k] else bool(followed[k])
        ips = 0.0 if no_image[k] or fl is False else ips_raw[k]
        row = {
            "name": job.name, "subject": job.subject, "photo": job.photo.index, "prompt_index": job.prompt.index,
            "kind": job.kind, "seed": job.seed, "split": job.split, "categories": list(job.prompt.categories),
            "image": str(path) if exists else None,
            "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if exists else None,
            "status": str(status[k]), "error": "cannot decode image" if status[k] == "decode_error" else "",
            "ips_raw": np.nan if no_image[k] else ips_raw[k], "sis_raw": np.nan if no_image[k] else sis_raw[k],
            "ips": ips, "sis": 0.0 if ips == 0.0 else sis_raw[k],
            "clip_t": (0.0 if no_image[k] else clip_t[k]) if clip else np.nan,
            "clip_n": clip_n[k] if clip else np.nan,
            "followed_prompt": fl,
            "goa": (0.0 if no_image[k] else float(np.mean(list(goa_objects.values())))) if t and det else np.nan,
            "goa_objects": json.dumps(goa_objects) if goa_objects else None,
            "rfs": (0.0 if no_image[k] else float(rng.uniform(0, 0.5))) if t and det else np.nan,
            "rfs_triplets": json.dumps([{"triplet": ["person", "with", q], "p_person": 0.9, "p_object": 0.5, "p_predicate": 0.4, "score": 0.18} for q in det]) if t and det else None,
            "n_faces_generated": len(boxes), "face_score": 0.99 if boxes else np.nan, "face_boxes": boxes,
            "aps_image": 0.0 if status[k] != "ok" else float(rng.integers(0, 9) / 8),
        }  # fmt: skip
        for a in APS:
            label = int(job.photo.attributes.get(a, 0))
            row[f"aps_label_{a}"] = label
            row[f"aps_pred_{a}"] = -label if status[k] != "ok" else int(rng.choice([-1, 1]))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for c in [c for c in frame if c.startswith("aps_")] :
        if c != "aps_image":
            frame[c] = frame[c].astype("int8")
    run_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(run_dir / "per_image.parquet", index=False)
    metrics = ["ips", "sis", "aps"] + (["clip_t"] if clip else []) + ["goa", "rfs"]
    image_metrics = [m for m in metrics if m != "aps"]
    means = {m: float(frame[m].astype(float).dropna().mean()) for m in image_metrics}
    per_attr = {a: float(rng.uniform(0.4, 0.9)) for a in APS}
    means["aps"] = float(np.mean(list(per_attr.values())))
    by_kind = {k: {m: float(frame.loc[frame["kind"] == k, m].astype(float).dropna().mean()) if frame.loc[frame["kind"] == k, m].notna().any() else None for m in image_metrics} for k in ("T", "H")}
    for k in by_kind:
        by_kind[k]["aps"] = means["aps"]
    run = {
        "format": "stellar-run-v1", "method": method, "config": {"metrics": metrics, "split": "test"}, "metrics": metrics,
        "models": {"faces": "faces-v1/synthetic", "clip": "clip/synthetic" if clip else None, "scorers": {}},
        "exclusion_rule": "applied" if clip else "not applied: no CLIP", "failure_rule": "worst",
        "dataset": {"root": str(dataset_root), "fingerprint": fingerprint},
        "generated": {"folder": str(gen), "match": {"expected": n, "matched": int((status != "missing").sum())}},
        "jobs": {"expected": n, "digest": "sha256:" + hashlib.sha256("\n".join(j.name for j in jobs).encode()).hexdigest(),
                 "by_kind": frame["kind"].value_counts().to_dict(),
                 "by_category": pd.Series([c for cs in frame["categories"] for c in cs]).value_counts().to_dict()},
        "versions": {"stellar-bench": "0.1.0"},
    }  # fmt: skip
    summary = {
        "method": method, "n_jobs": n, "status_counts": frame["status"].value_counts().to_dict(),
        "exclusion": {"applied": True, "sigma": sigma, "margin": 2 * sigma, "excluded": int((frame["followed_prompt"] == False).sum())} if clip else {"applied": False, "reason": "no CLIP"},  # noqa: E712
        "aps": {"score": means["aps"], "per_attribute": per_attr, "skipped": {}},
        "means": means, "by_kind": by_kind, "failures": int(no_image.sum()), "models": run["models"],
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(run, indent=1))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return run_dir
