"""Statistics-layer measurements (issue: statistics and human agreement): time and peak memory.

Five synthetic runs, each a contract-conforming ``per_image.parquet`` of 40,000 rows (400 subjects ×
100 jobs, 3 of 4 jobs Stellar-T, 12 categories, one or two per T job) with 10 image-level metric
columns (``ips sis clip_t clip_i goa rfs dino aesthetic pick_score hpsv2``; GOA/RFS NaN on
Stellar-H) and the 16 APS columns; metric values carry a subject effect (the correlation the cluster
bootstrap is for). Measured, each in a fresh process (wall time and ``ru_maxrss``), with 1000
bootstrap replicates:

1. ``stellar report RUN×5 --ci 0.95`` (overall table), ``--by split`` and ``--by category``;
2. ``stellar compare RUN×5`` (10 pairs × 11 metrics incl. APS, 10,000 Monte-Carlo sign flips);
3. the same two without the statistics (``--ci none``) as the baseline cost of reading the files.

Run: ``python benchmarks/stats.py [--readme benchmarks/README.md]`` (~1-3 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("ips", "sis", "clip_t", "clip_i", "goa", "rfs", "dino", "aesthetic", "pick_score", "hpsv2")
APS = ("Young", "Male", "High_Cheekbones", "Pointy_Nose", "Narrow_Eyes", "Double_Chin", "Big_Lips", "Big_Nose")
CATEGORIES = [f"category{k:02d}" for k in range(12)]

WRAPPER = """
import resource, sys, time
from stellar.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
print("BENCH", rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def make_runs(work: Path, n_runs: int = 5, n_subjects: int = 400, jobs_per_subject: int = 100) -> list[Path]:
    import json

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = n_subjects * jobs_per_subject
    subject = np.repeat(np.arange(n_subjects), jobs_per_subject)
    prompt = np.tile(np.arange(jobs_per_subject), n_subjects)
    kind = np.where(prompt % 4 == 3, "H", "T")
    cats = [[CATEGORIES[p % 12]] + ([CATEGORIES[(p + 5) % 12]] if p % 2 else []) if k == "T" else [] for p, k in zip(prompt, kind)]
    base = pd.DataFrame(
        {
            "name": [f"{s:03d}-0-{p:02d}" for s, p in zip(subject, prompt)], "subject": [f"{s:03d}" for s in subject],
            "photo": 0, "prompt_index": prompt, "kind": kind, "seed": 0, "split": "test", "categories": cats,
            "image": None, "image_sha256": None, "status": "ok", "error": None,
        }
    )  # fmt: skip
    labels = {a: rng.choice(np.array([-1, 1], dtype=np.int8), n) for a in APS}
    paths = []
    for r in range(n_runs):
        frame = base.copy()
        for k, m in enumerate(METRICS):
            effect = rng.normal(0, 0.1, n_subjects)[subject]
            frame[m] = 0.5 + 0.01 * r + effect + rng.normal(0, 0.1, n)
            if m in ("goa", "rfs"):
                frame.loc[frame["kind"] == "H", m] = np.nan
        for a in APS:
            right = rng.random(n) < 0.7 + 0.02 * r
            frame[f"aps_label_{a}"] = labels[a]
            frame[f"aps_pred_{a}"] = np.where(right, labels[a], -labels[a]).astype(np.int8)
        frame["aps_image"] = np.mean([frame[f"aps_label_{a}"] == frame[f"aps_pred_{a}"] for a in APS], axis=0)
        folder = work / f"run{r}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "per_image.parquet", index=False)
        means = {m: float(frame[m].mean()) for m in METRICS}
        run = {"method": f"method{r}", "metrics": list(METRICS) + ["aps"], "models": {"faces": "bench", "clip": "bench"},
               "failure_rule": "worst", "dataset": {"fingerprint": "bench"}, "config": {}}  # fmt: skip
        (folder / "run.json").write_text(json.dumps(run))
        (folder / "summary.json").write_text(json.dumps({"method": f"method{r}", "n_jobs": n, "means": means, "exclusion": {"applied": False, "reason": "synthetic"}}))
        paths.append(folder)
    return paths


def timed(args: list[str], env: dict) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    _, rc, inner, rss_kb = line[-1].split()
    if rc != "0":
        raise SystemExit(f"{' '.join(args)} returned {rc}:\n{proc.stderr[-3000:]}")
    return {"seconds": round(float(inner), 2), "process_seconds": round(wall, 2), "peak_rss_mib": round(int(rss_kb) / 1024, 1)}


def run(work: Path) -> dict:
    t = time.perf_counter()
    runs = [str(p) for p in make_runs(work)]
    made = time.perf_counter() - t
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = work / "out.txt"
    cases = {
        "report --ci none (means only)": ["report", *runs, "--ci", "none", "--out", str(out)],
        "report --ci 0.95": ["report", *runs, "--ci", "0.95", "--out", str(out)],
        "report --ci 0.95 --by split": ["report", *runs, "--ci", "0.95", "--by", "split", "--out", str(out)],
        "report --ci 0.95 --by category": ["report", *runs, "--ci", "0.95", "--by", "category", "--out", str(out)],
        "report --ci 0.95 --resample job": ["report", *runs, "--ci", "0.95", "--resample", "job", "--out", str(out)],
        "compare (5 runs, 10 pairs)": ["compare", *runs, "--out", str(out)],
        "compare --resample job": ["compare", *runs, "--resample", "job", "--out", str(out)],
    }
    results = {name: timed(args, env) for name, args in cases.items()}
    import numpy

    machine = f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, numpy {numpy.__version__}, {platform.system()}"
    return {"machine": machine, "make_seconds": round(made, 1), "results": results}


def readme_block(res: dict) -> str:
    rows = "\n".join(f"| `stellar {k}` | {v['seconds']} | {v['process_seconds']} | {v['peak_rss_mib']} |" for k, v in res["results"].items())
    return f"""<!-- stats-benchmark:begin -->
## Statistics: `stellar report --ci` and `stellar compare` (`benchmarks/stats.py`)

Machine: {res['machine']} (cores shared with other jobs). Data: 5 synthetic runs × 40,000 rows
(400 subjects × 100 jobs) × 10 image-level metrics + APS columns; 1000 bootstrap replicates
(resampling subjects unless noted), seed 0; compare adds 10,000 Monte-Carlo sign flips per pair.
Each command runs in a fresh process; *seconds* is the command itself (reading 5 parquet files
included), *process* adds the interpreter start and imports; peak RSS = `ru_maxrss`.

| command | seconds | process s | peak RSS (MiB) |
|---|---|---|---|
{rows}

Writing the five runs took {res['make_seconds']} s (not included).
<!-- stats-benchmark:end -->
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", type=Path, default=None, help="rewrite the stats section of this README")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stellar-stats-bench-") as tmp:
        res = run(Path(tmp))
    block = readme_block(res)
    print(block)
    if args.readme:
        text = args.readme.read_text()
        pattern = re.compile(r"<!-- stats-benchmark:begin -->.*<!-- stats-benchmark:end -->\n?", re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
        args.readme.write_text(text)


if __name__ == "__main__":
    main()
