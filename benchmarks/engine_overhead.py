"""Engine overhead, decode workers and process sharding (issue 10, "Performance").

1. **Engine overhead** = engine wall time / sum of the model forward times on the same images
   (face analyzer ``analyze`` + CLIP ``encode_*`` calls, timed by wrapping them), target ≤ 1.3. The
   run is profiled with cProfile; the breakdown (top functions by own time outside the models) is
   printed. ``--src`` times another source tree (e.g. the engine before issue 10) for the before/after.
2. **Decode workers**: decoding N generated PNGs (1024² and 512²) serially, in 2 threads and in 2
   processes — the engine's choice (threads) is kept unless processes are faster here.
3. **Shards**: ``torchrun --standalone --nproc_per_node 2 -m stellar.cli evaluate`` versus one process,
   wall and CPU time, and whether the two ``per_image.parquet`` files are exactly equal.

Workload: the real ``offline`` face preset (MTCNN + dlib ResNet, package-shipped weights) on a synthetic
dataset (3 subjects × 2 photos × 8 prompts = 48 jobs), generated images = the input photos pasted on
noise at 512² and 1024² alternately. Run:
``python benchmarks/engine_overhead.py [--readme benchmarks/README.md]`` (~10 min on 2 loaded cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import cProfile, io, json, pstats, sys, time
from pathlib import Path
out, root, gen = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.models.faces import FaceAnalyzer
faces = FaceAnalyzer.from_preset("offline")
model = {"s": 0.0}
inner = faces.analyze
def timed(images):
    t = time.perf_counter()
    try:
        return inner(images)
    finally:
        model["s"] += time.perf_counter() - t
faces.analyze = timed
ds = StellarDataset(root)
cfg = EvalConfig(metrics=("ips", "sis", "aps"), batch_size=8, use_cache=False)
prof = cProfile.Profile()
t0, c0 = time.perf_counter(), time.process_time()
prof.enable()
evaluate(ds, gen, out, cfg, faces=faces, clip=None, clip_unavailable="benchmark", progress=False)
prof.disable()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
s = io.StringIO()
st = pstats.Stats(prof, stream=s)
st.sort_stats("tottime").print_stats(12)
print(json.dumps({"wall": wall, "cpu": cpu, "model": model["s"], "profile": s.getvalue()}))
"""


def make_workload(work: Path) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    from stellar.data import StellarDataset
    from stellar.data.samples import materialize_demo_dataset
    from stellar.testing import make_synthetic_dataset

    root = work / "ds"
    make_synthetic_dataset(root, 3, t_prompts=6, h_prompts=2, size=256)
    demo = materialize_demo_dataset(work / "demo", progress=False, offline=True, include_face_recognition=False)
    faces = sorted(p for p in demo.glob("*/0.jpg"))
    for k, s in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):  # real faces as the subjects' photos
        for i, photo in enumerate(sorted(s.glob("[0-9].jpg"))):
            Image.open(faces[(k + i) % len(faces)]).convert("RGB").save(photo, quality=92)
    ds = StellarDataset(root)
    gen = work / "gen"
    gen.mkdir()
    rng = np.random.default_rng(0)
    for n, job in enumerate(ds.jobs("test")):
        size = 1024 if n % 2 == 0 else 512
        canvas = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        face = np.asarray(Image.open(job.photo.path).convert("RGB").resize((size // 2, size // 2)))
        canvas[size // 4 : size // 4 + size // 2, size // 4 : size // 4 + size // 2] = face
        Image.fromarray(canvas).save(gen / f"{job.name}.png")
    return root, gen


def overhead(root: Path, gen: Path, work: Path, src: Path, label: str) -> dict:
    out = work / f"run-{label}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "STELLAR_HOME": str(work / f"home-{label}")}
    res = subprocess.run([sys.executable, "-c", CHILD, str(out), str(root), str(gen)], capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r["ratio"] = r["wall"] / r["model"] if r["model"] else None
    r["label"] = label
    return r


def decode_workers(gen: Path, repeat: int = 3) -> list[dict]:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from stellar.engine.evaluate import _decode

    paths = sorted(gen.glob("*.png"))
    rows = []
    for mode in ("serial", "threads-2", "processes-2", "threads-2", "processes-2", "serial"):
        best = None
        for _ in range(repeat):
            t = time.perf_counter()
            if mode == "serial":
                [_decode(p) for p in paths]
            else:
                pool = (ThreadPoolExecutor if mode.startswith("threads") else ProcessPoolExecutor)(max_workers=2)
                with pool:
                    list(pool.map(_decode, paths))
            best = min(best or 1e9, time.perf_counter() - t)
        rows.append({"mode": mode, "seconds": best, "ms_per_image": 1000 * best / len(paths)})
    return rows


def shards(root: Path, gen: Path, work: Path, src: Path) -> dict:
    import pandas as pd

    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "STELLAR_HOME": str(work / "home-shards"), "HF_HUB_OFFLINE": "1", "STELLAR_OFFLINE": "1"}
    base = ["evaluate", "--dataset", str(root), "--generated", str(gen), "--metrics", "ips,sis,aps", "--faces", "offline", "--clip", "none", "--no-cache"]
    out = {}
    for label, cmd in (
        ("1 process", [sys.executable, "-m", "stellar.cli"]),
        ("torchrun 2 processes", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "stellar.cli"]),
    ):
        run_dir = work / f"shards-{label.split()[0]}"
        t = time.perf_counter()
        before = os.times()
        res = subprocess.run(cmd + base + ["--out", str(run_dir)], capture_output=True, text=True, env=env, timeout=3600)
        after = os.times()
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-3000:])
        out[label] = {"wall": time.perf_counter() - t, "cpu": (after.children_user - before.children_user) + (after.children_system - before.children_system), "dir": run_dir}
    a = pd.read_parquet(out["1 process"]["dir"] / "per_image.parquet")
    b = pd.read_parquet(out["torchrun 2 processes"]["dir"] / "per_image.parquet")
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        equal = True
    except AssertionError:
        equal = False
    return {"runs": {k: {"wall": v["wall"], "cpu": v["cpu"]} for k, v in out.items()}, "equal": equal}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=None, help="src/ of another tree for the 'before' overhead")
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--skip-shards", action="store_true")
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1] / "src"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root, gen = make_workload(work)
        results = {"overhead": []}
        for label, src in (("after", here), ("before", args.src), ("after", here), ("before", args.src)):  # A B A B
            if src is not None:
                results["overhead"].append(overhead(root, gen, work, src, label))
                print({k: v for k, v in results["overhead"][-1].items() if k != "profile"}, flush=True)
        results["decode"] = decode_workers(gen)
        print(results["decode"], flush=True)
        if not args.skip_shards:
            results["shards"] = shards(root, gen, work, here)
            print(results["shards"], flush=True)
    lines = ["<!-- overhead-benchmark:begin -->", "## Engine overhead, decode workers, shards (`benchmarks/engine_overhead.py`)", ""]
    lines += [
        "Workload: 48 jobs (3 subjects × 2 real face photos × 8 prompts), generated images = the photo pasted on noise, "
        "alternately 1024² and 512² PNG; face preset `offline` (MTCNN + dlib ResNet, real weights); ips,sis,aps; feature cache off; "
        "OMP_NUM_THREADS=1; 2 CPU cores shared with other jobs; runs alternated A B A B.",
        "",
        "| code | wall s | CPU s | model forward s | overhead = wall / model |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results["overhead"]:
        lines.append(f"| {r['label']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['model']:.1f} | {r['ratio']:.2f} |")
    lines += ["", "| decode (48 PNGs, best of 3) | s | ms / image |", "|---|---:|---:|"]
    for r in results["decode"]:
        lines.append(f"| {r['mode']} | {r['seconds']:.2f} | {r['ms_per_image']:.1f} |")
    if "shards" in results:
        lines += ["", "| `stellar evaluate` | wall s | CPU s |", "|---|---:|---:|"]
        for k, v in results["shards"]["runs"].items():
            lines.append(f"| {k} | {v['wall']:.1f} | {v['cpu']:.1f} |")
        lines.append(f"\n`per_image.parquet` of the two runs exactly equal: **{results['shards']['equal']}**.")
    lines += ["", "cProfile of the last 'after' run (top own time):", "", "```", results["overhead"][-2 if args.src else -1]["profile"].strip()[-3500:], "```"]
    if args.src:
        lines += ["", "cProfile of the last 'before' run (top own time):", "", "```", results["overhead"][-1]["profile"].strip()[-3500:], "```"]
    lines.append("<!-- overhead-benchmark:end -->")
    section = "\n".join(lines)
    print(section)
    if args.readme:
        text = args.readme.read_text()
        if "<!-- overhead-benchmark:begin -->" in text:
            text = re.sub(r"<!-- overhead-benchmark:begin -->.*?<!-- overhead-benchmark:end -->", lambda _: section, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        args.readme.write_text(text)


if __name__ == "__main__":
    main()
