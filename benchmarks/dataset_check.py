"""Time ``stellar dataset check`` on a full-size synthetic Stellar dataset.

Builds, in a temporary folder, the shape of the real release (DESIGN §1): 400 subjects with 2 photos
each (masks and 40 attributes per photo), test = 000–199 with 50 Stellar-T + 50 Stellar-H prompts,
val = 200–399 with 2 Stellar-T prompts -> 40,000 test jobs and 800 val jobs. Then runs the real
command (``python -m stellar.cli dataset check ROOT --json``, a fresh process, so the time includes
start-up and imports) with and without ``--no-decode``, and prints the wall times and the counts.

Synthetic photos are coloured noise, which compresses far worse than a face photo (~750 KB per
1024² JPEG instead of ~150 KB), so decoding here is a pessimistic bound.

    python benchmarks/dataset_check.py [--size 1024] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(root: Path, size: int) -> float:
    from stellar.testing import make_synthetic_dataset

    t0 = time.perf_counter()
    make_synthetic_dataset(root, 200, t_prompts=50, h_prompts=50, size=size)
    make_synthetic_dataset(root, 200, first_id=200, t_prompts=2, h_prompts=0, size=size, seed=1)
    return time.perf_counter() - t0


def run_check(root: Path, *extra: str) -> tuple[float, float, int, dict]:
    """(wall s, CPU s of the child, exit code, parsed --json output)."""
    cmd = [sys.executable, "-m", "stellar.cli", "dataset", "check", str(root), "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check failed ({proc.returncode}):\n{proc.stderr}")
    return wall, cpu, proc.returncode, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="photo side in pixels (the release: 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it (default: a temp dir, removed)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="stellar-bench-")) if args.keep is None else args.keep
    root = workdir / "STELLAR"
    try:
        if not root.is_dir():
            seconds = build(root, args.size)
            print(f"built 400 subjects, 800 photos of {args.size}² in {seconds:.1f} s at {root}")
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        print(f"dataset on disk: {size_mb:.0f} MiB; python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
        for label, extra in (("with decoding", ()), ("--no-decode", ("--no-decode",))):
            times, cpus = [], []
            for _ in range(args.repeat):
                wall, cpu, rc, data = run_check(root, *extra)
                times.append(wall)
                cpus.append(cpu)
            s = data["summary"]
            errors = sum(p["severity"] == "error" for p in data["problems"])
            print(
                f"dataset check {label:14s}: median {statistics.median(times):6.2f} s (runs: "
                f"{', '.join(f'{t:.2f}' for t in times)}), CPU median {statistics.median(cpus):.2f} s, exit {rc}, errors {errors}"
            )
        sp = s["splits"]
        print(
            f"subjects {s['subjects']}, photos {s['photos']}, prompts T {s['prompts_T']} H {s['prompts_H']}; "
            f"test jobs {sp['test']['jobs_T'] + sp['test']['jobs_H']} (T {sp['test']['jobs_T']}, H {sp['test']['jobs_H']}), "
            f"val jobs {sp['val']['jobs_T'] + sp['val']['jobs_H']}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
