"""Synthetic runs with a hidden quality, and simulated raters — for tests, benchmarks and examples.

:func:`write_synthetic_runs` writes finished run directories (``run.json``, ``summary.json``,
``per_image.parquet`` with the results-contract keys) for the test jobs of a dataset, without any
model: every (run, job) gets a small PNG and a hidden quality ``q = offset(run) + N(0, spread)``,
stored as the metric column ``ips`` (a metric that *is* the hidden quality), next to ``clip_t``,
pure noise (a metric unrelated to it). :func:`simulate_raters` then answers a study the way a
noisy human would: for every aspect, the image with the higher hidden quality, except with
probability ``flip`` the other one (and ``tie`` with probability ``tie``). With a metric equal to the
hidden quality, the expected pairwise Kendall τ-like is therefore ``1 − 2·flip`` over the non-tied
judgements — the known answer `stellar agreement` must recover.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def write_synthetic_runs(dataset: str | Path, out: str | Path, offsets: Mapping[str, float], *, spread: float = 0.15, size: int = 24,
                         seed: int = 0, methods: Mapping[str, str] | None = None) -> list[Path]:  # fmt: skip
    """One run directory per name in ``offsets`` under ``out``; returns their paths.

    Args:
        dataset: a Stellar dataset; its test jobs are the runs' jobs.
        out: parent folder of the runs.
        offsets: run name -> mean hidden quality.
        spread: standard deviation of the per-job hidden quality around the offset.
        size: side of the (random) PNG images.
        seed: base seed.
        methods: run name -> ``method`` written in run.json (default: the name).
    """
    import pandas as pd
    from PIL import Image

    from stellar.data.dataset import StellarDataset
    from stellar.fileio import atomic_write_bytes, json_bytes

    ds = StellarDataset(dataset)
    jobs = ds.jobs("test")
    fp = ds.fingerprint()
    paths = []
    for r, (name, offset) in enumerate(offsets.items()):
        rng = np.random.default_rng([seed, r])
        run_dir = Path(out) / name
        img_dir = run_dir / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for job in jobs:
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            data = buf.getvalue()
            path = img_dir / f"{job.name}.png"
            path.write_bytes(data)
            rows.append({
                "name": job.name, "subject": job.subject, "photo": job.photo_index, "prompt_index": job.prompt_index, "kind": job.kind,
                "seed": job.seed, "split": job.split, "categories": list(job.prompt.categories), "image": str(path.resolve()),
                "image_sha256": hashlib.sha256(data).hexdigest(), "status": "ok", "error": None,
                "ips": float(offset + rng.normal(0, spread)), "clip_t": float(rng.uniform(0, 1)),
            })  # fmt: skip
        df = pd.DataFrame(rows)
        df.to_parquet(run_dir / "per_image.parquet", index=False)
        method = (methods or {}).get(name, name)
        atomic_write_bytes(run_dir / "run.json", json_bytes({
            "format": "stellar-run-v1", "method": method, "metrics": ["ips", "clip_t"], "config": {"metrics": ["ips", "clip_t"], "split": "test"},
            "models": {"faces": "synthetic-hidden-quality", "clip": None}, "exclusion_rule": "not applied: synthetic run",
            "dataset": {"root": str(Path(dataset).resolve()), "fingerprint": fp}, "synthetic": True,
        }))  # fmt: skip
        atomic_write_bytes(run_dir / "summary.json", json_bytes({"means": {"ips": float(df["ips"].mean()), "clip_t": float(df["clip_t"].mean())},
                                                                 "exclusion": {"applied": False, "reason": "synthetic run"}, "images": len(df)}))  # fmt: skip
        paths.append(run_dir)
    return paths


def hidden_quality(run_dirs: Sequence[str | Path]) -> dict[tuple[str, str], float]:
    """(run name, job) -> hidden quality (the ``ips`` column) of runs written by :func:`write_synthetic_runs`."""
    import pandas as pd

    out = {}
    for d in run_dirs:
        d = Path(d)
        name = json.loads((d / "run.json").read_text()).get("method") or d.name
        df = pd.read_parquet(d / "per_image.parquet", columns=["name", "ips"])
        out.update({(name, j): float(q) for j, q in zip(df["name"], df["ips"])})
    return out


def simulated_answer(item: dict, aspects: Sequence[str], quality: Mapping[tuple[str, str], float], rng: np.random.Generator, *,
                     flip: float = 0.1, tie: float = 0.0) -> dict[str, str]:  # fmt: skip
    """A noisy rater's answers to one item (module docstring); gold items are answered right unless flipped."""
    out = {}
    for aspect in aspects:
        if "gold" in item:
            better = item["gold"]["answer"]
        else:
            qa, qb = quality[(item["a"]["run"], item["job"])], quality[(item["b"]["run"], item["job"])]
            better = "a" if qa > qb else "b"
        u = rng.random()
        out[aspect] = "tie" if u < tie else ({"a": "b", "b": "a"}[better] if u < tie + flip else better)
    return out


def simulate_raters(store, quality: Mapping[tuple[str, str], float], raters: Sequence[str], *, flip: float = 0.1, tie: float = 0.0,
                    seed: int = 0, max_items: int | None = None) -> int:  # fmt: skip
    """Let ``raters`` answer ``store``'s study in turns (one item each per round) until nothing is left.

    Returns the number of items answered.
    """
    rng = np.random.default_rng(seed)
    for r in raters:
        store.add_rater(r, "self")
    active = list(raters)
    n = 0
    while active and (max_items is None or n < max_items):
        for r in list(active):
            item_id = store.next_item(r)
            if item_id is None:
                active.remove(r)
                continue
            item = store.items[item_id]
            answers = simulated_answer(item, store.aspects, quality, rng, flip=flip, tie=tie)
            store.submit(r, item_id, answers, int(rng.integers(1500, 9000)), f"sim-{r}-{item_id}")
            n += 1
    return n
