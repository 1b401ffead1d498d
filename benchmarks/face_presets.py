"""Cost of a second face preset in the same run vs a separate run (issue 12).

Data: the real-photo demo dataset (6 identities, 8 photos; every test job = 120), each job answered
with its input photo resized to 512² plus job-seeded pixel noise (σ = 4 grey levels, so every
generated image is distinct and no feature is served twice). Metrics ips, sis, aps, fdfr, cps;
``clip=None``; the feature cache off, so every run computes everything (reference phase included).

Presets: ``offline`` (MTCNN + dlib ResNet, real weights from PyPI) and a second preset made of the
same MTCNN and a FaceNet InceptionResnetV1 with seeded random weights — the ``paper`` preset's
network, whose VGGFace2 weights cannot be downloaded here (the cost of a forward pass does not depend
on the weight values). Configurations, alternated over ``--rounds`` rounds (the minimum is kept):

- ``A``: offline alone;  ``B``: the FaceNet preset alone (its own MTCNN: what a separate run costs);
- ``C``: both in one run, one shared MTCNN instance (decode + detection shared, embedding per preset);
- ``D``: both in one run, two MTCNN instances (only the decode shared).

Extra cost of the second preset in the same run = C − A (resp. D − A); target (C − A) / B < 0.6.

Run: ``python benchmarks/face_presets.py [--rounds 2] [--readme benchmarks/README.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

BEGIN, END = "<!-- face-presets:begin -->", "<!-- face-presets:end -->"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--readme", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from stellar.data import StellarDataset
    from stellar.data.samples import materialize_demo_dataset
    from stellar.engine import EvalConfig, evaluate
    from stellar.engine.cache import FeatureCache
    from stellar.models.faces import FaceAnalyzer
    from stellar.models.faces.facenet import FaceNetEmbedder, InceptionResnetV1
    from stellar.models.faces.mtcnn import MTCNNDetector

    tmp = Path(tempfile.mkdtemp(prefix="stellar-face-presets-"))
    ds = StellarDataset(materialize_demo_dataset(tmp / "STELLAR", progress=False))
    jobs = ds.jobs("test")
    gen = tmp / "gen"
    gen.mkdir()
    for k, j in enumerate(jobs):
        im = Image.open(j.photo.path).convert("RGB").resize((args.size, args.size))
        noise = np.random.default_rng(k).normal(0, 4, (args.size, args.size, 3))
        Image.fromarray(np.clip(np.asarray(im, np.float64) + noise, 0, 255).astype(np.uint8)).save(gen / f"{j.name}.png")
    torch.manual_seed(0)
    weights = tmp / "facenet-random.pt"
    torch.save(InceptionResnetV1().state_dict(), weights)

    offline = FaceAnalyzer.from_preset("offline", device="cpu")
    facenet_shared = FaceAnalyzer(offline.detector, FaceNetEmbedder(device="cpu", weights=weights), device="cpu", preset="facenet-random")
    facenet_own = FaceAnalyzer(MTCNNDetector(device="cpu"), FaceNetEmbedder(device="cpu", weights=weights), device="cpu", preset="facenet-random")
    configs = {
        "A": ("offline alone", offline),
        "B": ("FaceNet preset alone (own MTCNN)", facenet_own),
        "C": ("offline + FaceNet, one shared MTCNN", {"offline": offline, "facenet-random": facenet_shared}),
        "D": ("offline + FaceNet, two MTCNN instances", {"offline": offline, "facenet-random": facenet_own}),
    }
    metrics = ("ips", "sis", "aps", "fdfr", "cps")
    times: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}  # process CPU seconds: less sensitive to other jobs on shared cores
    passes: dict[str, dict] = {}
    for r in range(args.rounds):
        for key, (_, faces) in configs.items():
            out = tmp / f"run-{key}-{r}"
            t0, c0 = time.perf_counter(), time.process_time()
            summary = evaluate(ds, gen, out, EvalConfig(metrics=metrics, failure_rule="partial", use_cache=False), faces=faces, clip=None,
                               clip_unavailable="benchmark", progress=False, cache=FeatureCache(tmp / f"cache-{key}-{r}", enabled=False))  # fmt: skip
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
            passes[key] = summary["model_passes"]
            print(f"round {r} {key}: {times[key][-1]:.1f} s wall, {cpu[key][-1]:.1f} s CPU", file=sys.stderr, flush=True)
    n = len(jobs)
    best = {k: min(v) for k, v in times.items()}
    bcpu = {k: min(v) for k, v in cpu.items()}
    extra_c, extra_d = bcpu["C"] - bcpu["A"], bcpu["D"] - bcpu["A"]
    lines = [
        BEGIN,
        "## Several face presets in one run (`benchmarks/face_presets.py`)",
        "",
        f"Machine: {os.cpu_count()} CPU cores shared with other jobs, Python {platform.python_version()}, torch {torch.__version__}, CPU. "
        f"Data: the demo dataset's {n} test jobs, each answered with its input photo at {args.size}² plus σ = 4 noise; metrics "
        f"{', '.join(metrics)}; feature cache off; no CLIP. The second preset is the offline preset's MTCNN with a FaceNet "
        "InceptionResnetV1 of seeded random weights (the paper preset's network; its VGGFace2 weights are not downloadable here — "
        f"the forward cost does not depend on the weights). Minimum over {args.rounds} alternated rounds of `evaluate()` "
        "(reference photos, generated images, finalisation): wall time and the process's CPU time (torch threads included).",
        "",
        "| run | wall s | CPU s | CPU per generated image (ms) | detections (generated) | embeddings (generated) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, (label, _) in configs.items():
        p = passes[key]
        det = p.get("face_detections_generated", p.get("face_passes_generated"))
        lines.append(f"| {key}: {label} | {best[key]:.1f} | {bcpu[key]:.1f} | {1000 * bcpu[key] / n:.0f} | {det} | {p.get('face_passes_generated')} |")
    lines += [
        "",
        f"Extra cost (process CPU time; wall time on the shared cores swings with other jobs) of the second preset in the same run: "
        f"shared MTCNN (C − A) = {extra_c:.1f} s = **{extra_c / bcpu['B']:.2f}×** a separate run of it (B); decode shared only "
        f"(D − A) = {extra_d:.1f} s = {extra_d / bcpu['B']:.2f}× (target < 0.6× with shared detection).",
        END,
    ]
    text = "\n".join(lines)
    print(text)
    if args.readme is not None:
        readme = args.readme.read_text()
        if BEGIN in readme:
            readme = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, readme, flags=re.S)
        else:
            readme = readme.rstrip("\n") + "\n\n" + text + "\n"
        args.readme.write_text(readme)


if __name__ == "__main__":  # pragma: no cover
    main()
