"""Finalisation time at 40,000 rows (issue 9.21): ``finalize_run`` was O(N²).

The old merge tested ``n not in set(frame["name"])`` for each job, rebuilding the set every time
(1,000 jobs 20 s, 2,000 jobs 66 s on the audit machine; hours at the 40,000 jobs of one method on the
test split). This script builds a run directory with N synthetic part rows (the columns the engine
writes: keys, raw IPS/SIS, CLIP values, a 16-d face embedding per row) for a synthetic dataset of
N jobs, then times ``finalize_run`` (merge, job order, exclusion rule, APS probes, failure rule,
``aggregate``, Parquet + JSON writes) in a fresh process, each size ``--repeat`` times (min reported).

Run: ``python benchmarks/finalize.py [--sizes 1000,10000,40000] [--readme benchmarks/README.md]``.
``--old SRC`` times the same with another source tree (e.g. a checkout before the fix) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
from stellar.data import StellarDataset
from stellar.engine.evaluate import finalize_run
root, out = Path(sys.argv[1]), Path(sys.argv[2])
ds = StellarDataset(root)
jobs = ds.jobs("test")
t0 = time.perf_counter(); cpu0 = time.process_time()
finalize_run(out, ds, expected=jobs)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - cpu0, "jobs": len(jobs)}))
"""


def build(work: Path, n_jobs: int) -> tuple[Path, Path]:
    """A dataset with ``n_jobs`` test jobs (subjects × 2 photos × 100 prompts) and a run directory of part rows."""
    import numpy as np
    import pandas as pd

    from stellar.data import StellarDataset
    from stellar.data.layout import APS_ATTRIBUTES
    from stellar.engine.store import RUN_FORMAT, ResultsStore
    from stellar.testing import make_synthetic_dataset

    subjects = max(1, n_jobs // 200)
    root = work / f"ds-{n_jobs}"
    make_synthetic_dataset(root, subjects, t_prompts=50, h_prompts=50, size=32)
    ds = StellarDataset(root)
    jobs = ds.jobs("test")
    rng = np.random.default_rng(0)
    out = work / f"run-{n_jobs}"
    store = ResultsStore(out)
    emb = rng.normal(size=(len(jobs), 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = []
    for k, j in enumerate(jobs):
        rows.append({
            "name": j.name, "subject": j.subject, "photo": j.photo.index, "prompt_index": j.prompt.index, "kind": j.kind,
            "seed": j.seed, "split": j.split, "categories": list(j.prompt.categories), "image": f"/x/{j.name}.png",
            "image_sha256": f"{k:064x}", "row_key": f"{k:064x}", "status": "ok", "error": "",
            "ips_raw": float(rng.uniform()), "sis_raw": float(rng.uniform()) * 0.9, "n_faces_generated": 1.0,
            "n_faces_reference": 1.0, "face_score": 0.99, "face_boxes": [[1.0, 2.0, 3.0, 4.0, 0.99]],
            "face_embedding": emb[k].tolist(), "clip_t": float(rng.uniform(0.2, 0.4)), "clip_n": float(rng.uniform(0.2, 0.3)),
            "clip_i": float(rng.uniform(0.5, 0.9)),
            **{f"aps_label_{a}": int(j.photo.attributes.get(a, 0)) for a in APS_ATTRIBUTES},
        })  # fmt: skip
    for start in range(0, len(rows), 1000):  # parts of 1,000 rows (the flush size)
        store.write_part(rows[start : start + 1000])
    ref_rows = []
    for s in sorted({j.subject for j in jobs}):
        for p in ds.subject(s).photos:
            e = rng.normal(size=16)
            ref_rows.append({"subject": s, "photo": p.index, "image_sha256": "0" * 64, "decode_error": "", "n_faces": 1, "face_embedding": (e / np.linalg.norm(e)).tolist()})
    store.write_reference(ref_rows)
    by_kind: dict = {}
    for j in jobs:
        by_kind[j.kind] = by_kind.get(j.kind, 0) + 1
    store.write_json("run.json", {
        "format": RUN_FORMAT, "method": "bench", "config": {}, "failure_rule": "worst", "metrics": ["ips", "sis", "aps", "clip_t", "clip_i"],
        "models": {"faces": "fake", "clip": "fake", "scorers": {}}, "exclusion_rule": "applied",
        "jobs": {"expected": len(jobs), "by_kind": by_kind, "by_category": {}, "digest": "x"},
    })  # fmt: skip
    assert len(APS_ATTRIBUTES) == 8 and pd is not None
    return root, out


def time_finalize(root: Path, out: Path, src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", CHILD, str(root), str(out)], capture_output=True, text=True, env=env, timeout=7200)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,40000")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--old", type=Path, default=None, help="src/ of another tree to time too (e.g. before the fix)")
    ap.add_argument("--old-sizes", default="1000,2000")
    ap.add_argument("--readme", type=Path, default=None)
    args = ap.parse_args()
    src = Path(__file__).resolve().parents[1] / "src"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sizes = [int(x) for x in args.sizes.split(",")]
        old_sizes = [int(x) for x in args.old_sizes.split(",")] if args.old else []
        for n in sorted(set(sizes) | set(old_sizes)):
            root, out = build(work, n)
            for label, tree, todo in (("after (this tree)", src, sizes), ("before (--old)", args.old, old_sizes)):
                if tree is None or n not in todo:
                    continue
                runs = [time_finalize(root, out, tree) for _ in range(args.repeat)]
                best = min(runs, key=lambda r: r["wall"])
                results.append({"code": label, "jobs": best["jobs"], "wall": best["wall"], "cpu": best["cpu"], "runs": [round(r["wall"], 2) for r in runs]})
                print(results[-1], flush=True)
    lines = [
        "<!-- finalize-benchmark:begin -->",
        "## Finalisation (`benchmarks/finalize.py`)",
        "",
        f"`finalize_run` on N synthetic part rows (parts of 1,000 rows, 16-d embeddings, metrics ips,sis,aps,clip_t,clip_i, "
        f"exclusion rule applied), a fresh process per run, OMP_NUM_THREADS=1, best of {args.repeat}; 2 CPU cores shared with other jobs.",
        "",
        "| code | jobs | wall s (min) | CPU s | runs (wall s) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r['code']} | {r['jobs']:,} | {r['wall']:.2f} | {r['cpu']:.2f} | {' / '.join(map(str, r['runs']))} |")
    lines.append("<!-- finalize-benchmark:end -->")
    section = "\n".join(lines)
    print(section)
    if args.readme:
        text = args.readme.read_text()
        if "<!-- finalize-benchmark:begin -->" in text:
            text = re.sub(r"<!-- finalize-benchmark:begin -->.*?<!-- finalize-benchmark:end -->", section, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        args.readme.write_text(text)


if __name__ == "__main__":
    main()
