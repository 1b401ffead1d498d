"""Throughput of the face presets (detect + embed) on CPU, with per-stage times.

For each preset, image size (512², 1024²) and analyzer batch size (1, 8) the same ``N`` JPEG files
(a real face photo, ``skimage.data.astronaut()`` resized to the size, one face) are analysed with
``FaceAnalyzer.analyze(paths)``; reported are images/s and milliseconds per image for each stage
(``FaceAnalyzer.timings``): decode (JPEG -> RGB array), detect, align (chip / 5-point crop) and
embed. FaceNet crops inside ``embed``, so its ``align`` is 0 and its crop time is in ``embed``.

Weights: ``offline`` runs with its real weights (all on PyPI). Where the real weights of the other
presets are not cached (no network here), stand-ins with the *same compute* are used when possible
and said so in the table:

- ``paper``: MTCNN with its real weights; FaceNet = the real InceptionResnetV1 architecture with
  **random weights** (same FLOPs, meaningless embeddings).
- ``arcface``: SCRFD and ArcFace are ONNX files; without them, **tiny ONNX stand-ins** with the real
  input / output signatures are exported from torch (a few strided convolutions; a small ResNet-ish
  head) - the numbers then time letterbox + decoding + NMS + alignment + onnxruntime overhead, not
  SCRFD-10GF / ResNet-100. Treat them as a lower bound on the time of the real models.

    python benchmarks/faces.py [--presets offline,paper,arcface] [--sizes 512,1024] [--batches 1,8]
                               [--images 8] [--repeat 2] [--threads N] [--readme benchmarks/README.md]

``--mtcnn-ab``: instead, the MTCNN before/after comparison (issue 10). The demo photos (the package
photos of scikit-image, matplotlib and mahotas, plus the face_recognition sdist's when cached) are
cut square and resized to 512² and 1024² JPEGs; the ``offline`` preset (MTCNN + dlib, real weights)
analyses each size's set under four configurations, alternated A B C D per round (``--rounds``,
>= 3): the per-box crop + torch NMS of before (``mtcnn.crop_resize_per_box``, torchvision off) or the
summed-area-table crop + torchvision NMS of now, each with 2 torch threads (torch's default here:
one per core) and with 1 (``--threads auto``). Reported per image: min and median over the rounds of
wall time and of process CPU time (all threads; preferred, since other jobs load the cores), and the
load average. Then a cProfile breakdown of ``MTCNNDetector.detect`` before and after (1 thread).

    python benchmarks/faces.py --mtcnn-ab [--rounds 3] [--readme benchmarks/README.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

BEGIN, END = "<!-- faces-benchmark:begin -->", "<!-- faces-benchmark:end -->"
AB_BEGIN, AB_END = "<!-- faces-mtcnn-ab:begin -->", "<!-- faces-mtcnn-ab:end -->"


def _photos(folder: Path, size: int, n: int) -> list[Path]:
    import skimage.data

    im = Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.BICUBIC)
    paths = []
    for i in range(n):
        p = folder / f"face_{size}_{i}.jpg"
        im.save(p, quality=92)
        paths.append(p)
    return paths


def _export(module, path: Path, shape, names, dynamic: bool) -> Path:
    import torch

    axes = {"input.1": {0: "N"}, **{n: {0: "N"} for n in names}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(*shape), str(path), opset_version=17, dynamo=False,
                          input_names=["input.1"], output_names=names, dynamic_axes=axes)  # fmt: skip
    return path


def _arcface_standins(folder: Path) -> tuple[Path, Path]:
    """Tiny SCRFD / ArcFace ONNX files with the real I/O signatures (see the module docstring)."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())  # fmt: skip
            self.down = nn.ModuleList([nn.Identity(), nn.Conv2d(32, 32, 3, 2, 1), nn.Conv2d(32, 32, 3, 4, 1)])
            self.heads = nn.ModuleList([nn.Conv2d(32, 2 * (1 + 4 + 10), 3, 1, 1) for _ in range(3)])

        def forward(self, x):
            f = self.stem(x)
            scores, boxes, kps = [], [], []
            for down, head in zip(self.down, self.heads):
                y = head(down(f)).permute(0, 2, 3, 1).reshape(-1, 15)
                # the face of the stand-in "fires" nowhere except where planted: scores below 0.5
                scores.append(torch.sigmoid(y[:, :1]) * 0.4)
                boxes.append(y[:, 1:5].abs() + 1)
                kps.append(y[:, 5:])
            return (*scores, *boxes, *kps)

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.ReLU(), nn.Conv2d(64, 128, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(128, 256, 3, 2, 1), nn.ReLU(), nn.Conv2d(256, 512, 3, 2, 1), nn.ReLU())  # fmt: skip
            self.fc = nn.Linear(512 * 7 * 7, 512)

        def forward(self, x):
            return self.fc(self.body(x).flatten(1))

    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    det = _export(Det().eval(), folder / "scrfd_standin.onnx", (1, 3, 640, 640), names, False)
    rec = _export(Rec().eval(), folder / "arcface_standin.onnx", (1, 3, 112, 112), ["embedding"], True)
    return det, rec


class _PlantedDetector:
    """Wraps the SCRFD stand-in so that each image yields one face (the stand-in finds none):
    the detector still runs fully (letterbox, network, decoding, NMS) and then the known face box
    of the astronaut is reported, so that alignment and embedding are timed on one face per image."""

    def __init__(self, inner, size: int):
        self.inner, self.name, self.protocol = inner, "scrfd(stand-in)", "scrfd-standin"
        s = size / 512
        from stellar.models.faces.base import Detection

        lm = np.array([[203, 102], [246, 104], [224, 135], [205, 156], [242, 158]], np.float32) * s
        self.det = Detection(box=np.array([175, 76, 265, 166], np.float32) * s, score=0.99, landmarks5=lm)

    def detect(self, images):
        self.inner.detect(images)
        return [[self.det] for _ in images]


def build_analyzer(preset: str, size: int, batch: int, folder: Path):
    """(analyzer, weights note) for ``preset``: real weights where available, else stand-ins."""
    from stellar.errors import StellarError
    from stellar.models.faces import FaceAnalyzer

    try:
        return FaceAnalyzer.from_preset(preset, device="cpu", batch_size=batch), "real"
    except StellarError:
        pass
    if preset == "paper":
        import torch

        from stellar.models.faces.facenet import FaceNetEmbedder, InceptionResnetV1

        path = folder / "facenet_random.pt"
        if not path.exists():
            torch.manual_seed(0)
            torch.save(InceptionResnetV1().state_dict(), path)
        emb = FaceNetEmbedder(device="cpu", weights=path)
        return FaceAnalyzer("mtcnn", emb, device="cpu", batch_size=batch, preset="paper"), "MTCNN real; FaceNet random weights"
    if preset == "arcface":
        from stellar.models.faces.arcface import ArcFaceEmbedder
        from stellar.models.faces.scrfd import SCRFDDetector

        det_path, rec_path = folder / "scrfd_standin.onnx", folder / "arcface_standin.onnx"
        if not det_path.exists():
            _arcface_standins(folder)
        det = _PlantedDetector(SCRFDDetector(model_path=det_path, device="cpu"), size)
        emb = ArcFaceEmbedder("arcface", model_path=rec_path, device="cpu")
        return FaceAnalyzer(det, emb, device="cpu", batch_size=batch, preset="arcface"), "tiny ONNX stand-ins"
    raise SystemExit(f"unknown preset {preset}")


def run(presets, sizes, batches, n_images, folder: Path, repeat: int = 2) -> list[dict]:
    rows = []
    for size in sizes:
        paths = _photos(folder, size, n_images)
        for preset in presets:
            for batch in batches:
                an, note = build_analyzer(preset, size, batch, folder)
                an.analyze(paths[:1])  # warm-up: first-call allocations, lazy init
                best = None
                for _ in range(repeat):  # best of `repeat`: the machine is shared, the minimum is the least disturbed
                    an.reset_timings()
                    t0 = time.perf_counter()
                    faces = an.analyze(paths)
                    wall = time.perf_counter() - t0
                    if best is None or wall < best[0]:
                        best = (wall, dict(an.timings))
                wall, t = best
                rows.append({
                    "preset": preset, "weights": note, "size": size, "batch": batch, "images": n_images,
                    "faces": int(t["faces"]), "img_per_s": n_images / wall,
                    **{k: 1000 * t[k] / n_images for k in ("decode", "detect", "align", "embed")},
                })  # fmt: skip
                assert all(len(f) >= 1 for f in faces), f"{preset}: a face was missed"
                r = rows[-1]
                print(f"{preset:8s} {size:5d}² b{batch}: {r['img_per_s']:6.2f} img/s  decode {r['decode']:6.1f}  detect {r['detect']:7.1f}  "
                      f"align {r['align']:5.1f}  embed {r['embed']:6.1f} ms/img  [{note}]", flush=True)  # fmt: skip
    return rows


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPU cores available to the process, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}, {platform.system()}")  # fmt: skip


def to_markdown(rows: list[dict], seconds: float, repeat: int, n_images: int) -> str:
    lines = [
        BEGIN,
        "## Faces: detect + embed throughput (`benchmarks/faces.py`)",
        "",
        f"Machine: {machine()}. CPU only, one process; the cores were shared with other jobs, so each "
        f"configuration is the fastest of {repeat} runs over {n_images} images. Run time {seconds:.0f} s. "
        "Per-stage numbers are milliseconds per image; each image holds one face.",
        "",
        "| preset | weights | size | batch | img/s | decode ms | detect ms | align ms | embed ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['weights']} | {r['size']}² | {r['batch']} | {r['img_per_s']:.2f} | "
            f"{r['decode']:.1f} | {r['detect']:.1f} | {r['align']:.1f} | {r['embed']:.1f} |"
        )
    lines += [
        "",
        "`paper` with random FaceNet weights has the real compute; `arcface` with tiny ONNX stand-ins times only "
        "the pre/post-processing (letterbox, anchor decoding, NMS, 5-point alignment) plus onnxruntime overhead, "
        "not SCRFD-10GF / ResNet-100 - a lower bound. FaceNet crops inside `embed` (its `align` is 0).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_readme(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\nSpeed / memory measurements (not timed tests).\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


# ------------------------------------------------------------------------------ MTCNN before/after
def demo_photo_files(folder: Path, sizes: list[int]) -> dict[int, list[Path]]:
    """The demo photos cut square about their centre (after the demo's own crop) and resized to each
    size, as JPEG files; the face_recognition ones only when its sdist is cached."""
    from stellar.data import samples
    from stellar.errors import StellarError

    try:
        sdist = samples.fetch_face_recognition_sdist(offline=True)
        photos = samples.demo_photos(include_face_recognition=True)
        members = samples._read_sdist_members(sdist, [p.origin.split(":", 1)[1] for p in photos if p.needs_face_recognition])
    except (ImportError, StellarError):
        photos, members = samples.demo_photos(include_face_recognition=False), {}
    out: dict[int, list[Path]] = {size: [] for size in sizes}
    for k, photo in enumerate(photos):
        im = samples._source_image(photo, members)[1].convert("RGB")
        if photo.crop:
            im = im.crop(photo.crop)
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side))
        for size in sizes:
            path = folder / f"demo{k}_{size}.jpg"
            im.resize((size, size), Image.BICUBIC).save(path, quality=92)
            out[size].append(path)
    return out


class MTCNNVariant:
    """Context manager: run MTCNN as ``"before"`` (per-box crop loop, torch NMS) or ``"after"``."""

    def __init__(self, which: str):
        self.which = which

    def __enter__(self):
        from stellar.models.faces import boxes, mtcnn

        self.saved = (mtcnn._integral_image, mtcnn._crop_resize, boxes.torchvision_nms)
        if self.which == "before":
            mtcnn._integral_image = lambda images: images  # the loop crops the float images directly
            mtcnn._crop_resize = mtcnn.crop_resize_per_box
            boxes.torchvision_nms = lambda: None
        return self

    def __exit__(self, *exc):
        from stellar.models.faces import boxes, mtcnn

        mtcnn._integral_image, mtcnn._crop_resize, boxes.torchvision_nms = self.saved


AB_CONFIGS = (("before", 2), ("after", 2), ("before", 1), ("after", 1))


def mtcnn_ab(folder: Path, rounds: int, sizes=(512, 1024)) -> dict:
    """Alternated rounds of the offline preset under :data:`AB_CONFIGS`; per-image wall/CPU seconds."""
    from stellar.device import configure_threads
    from stellar.models.faces import FaceAnalyzer

    files = demo_photo_files(folder, list(sizes))
    an = FaceAnalyzer.from_preset("offline", device="cpu", batch_size=8)
    an.analyze(files[sizes[0]][:1])  # warm-up
    times: dict[tuple, list[tuple[float, float]]] = {}
    faces: dict[tuple, list[int]] = {}
    load = [os.getloadavg()[0]]
    for r in range(rounds):
        for which, threads in AB_CONFIGS:
            configure_threads(threads)
            with MTCNNVariant(which):
                for size in sizes:
                    paths = files[size]
                    w0, c0 = time.perf_counter(), time.process_time()
                    result = an.analyze(paths)
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                    times.setdefault((which, threads, size), []).append((wall / len(paths), cpu / len(paths)))
                    faces.setdefault((which, threads, size), []).append(sum(len(f) for f in result))
            load.append(os.getloadavg()[0])
            print(f"round {r + 1}/{rounds} {which:6s} {threads} thr: " + "  ".join(
                f"{s}² {1000 * times[(which, threads, s)][-1][0]:.0f} ms wall {1000 * times[(which, threads, s)][-1][1]:.0f} ms cpu"
                for s in sizes), flush=True)  # fmt: skip
    # the two implementations must find the same faces (they are bit-identical on the CPU)
    per_size = {s: {tuple(v) for k, v in faces.items() if k[2] == s} for s in sizes}
    assert all(len(v) == 1 for v in per_size.values()), faces
    return {"times": times, "n_images": {s: len(files[s]) for s in sizes}, "faces": {s: next(iter(v))[0] for s, v in per_size.items()},
            "load": load, "rounds": rounds}  # fmt: skip


def profile_mtcnn(folder: Path, size: int = 1024) -> dict[str, dict[str, float]]:
    """cProfile (CPU-time clock) of ``MTCNNDetector.detect`` (1 thread, each photo alone) before and
    after: seconds in the crop, NMS, each network's forward and the rest (pyramid resize, proposals,
    glue)."""
    import cProfile
    import inspect
    import pstats

    from stellar.device import configure_threads
    from stellar.images import load_image
    from stellar.models.faces import boxes, mtcnn

    configure_threads(1)
    arrays = [np.asarray(load_image(p)) for p in demo_photo_files(folder, [size])[size]]
    det = mtcnn.MTCNNDetector(device="cpu")
    det.detect(arrays[:1])
    out = {}
    for which in ("before", "after"):
        with MTCNNVariant(which):
            prof = cProfile.Profile(time.process_time)  # CPU time: the cores are shared
            prof.enable()
            for a in arrays:
                det.detect([a])
            prof.disable()
            stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

            def cum(fn) -> float:
                code = inspect.unwrap(fn).__code__
                key = (code.co_filename, code.co_firstlineno, code.co_name)
                return stats[key][3] if key in stats else 0.0

            total = cum(mtcnn.MTCNNDetector._detect_same_size)
            parts = {
                "crop": cum(mtcnn.crop_resize_per_box if which == "before" else mtcnn._crop_resize) + cum(mtcnn._integral_image),
                "nms": cum(boxes.batched_nms),
                "P-Net forward": cum(mtcnn.PNet.forward),
                "R-Net forward": cum(mtcnn.RNet.forward),
                "O-Net forward": cum(mtcnn.ONet.forward),
            }
            parts["rest"] = total - sum(parts.values())
            out[which] = {"total": total, **{k: v for k, v in parts.items()}, "images": len(arrays)}
    return out


def _stat(values: list[float]) -> tuple[float, float]:
    return min(values), float(np.median(values))


def ab_markdown(ab: dict, prof: dict, seconds: float) -> str:
    rows = []
    for (which, threads, size), vals in sorted(ab["times"].items(), key=lambda kv: (kv[0][2], -kv[0][1], kv[0][0] != "before")):
        wmin, wmed = _stat([v[0] for v in vals])
        cmin, cmed = _stat([v[1] for v in vals])
        rows.append((size, which, threads, wmin, wmed, cmin, cmed))
    base = {(r[0], r[2]): r for r in rows if r[1] == "before"}
    lines = [
        AB_BEGIN,
        "### MTCNN before/after: vectorised crop, torchvision NMS, threads (`benchmarks/faces.py --mtcnn-ab`)",
        "",
        f"Machine: {machine()}. The `offline` preset (MTCNN + dlib, real weights) on the demo photos "
        f"({ab['n_images'][512]} per size: the package photos and the face_recognition sdist's, cut square, "
        f"resized to 512² and 1024² JPEGs; {ab['faces'][512]} and {ab['faces'][1024]} faces found, identical in every "
        f"configuration); the four configurations alternated A B C D in each of {ab['rounds']} rounds. Per image "
        "(decode + detect + embed), milliseconds; CPU = process CPU time over all threads. The 2 cores were "
        f"shared with other developers' jobs (1-min load average {min(ab['load']):.1f}-{max(ab['load']):.1f} during the "
        f"runs), so wall times are inflated and noisy: compare the CPU columns. Run time {seconds:.0f} s.",
        "",
        "| size | MTCNN crop + NMS | threads | wall min | wall median | CPU min | CPU median | CPU median vs before, same threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, which, threads, wmin, wmed, cmin, cmed in rows:
        label = "per-box loop + torch NMS (before)" if which == "before" else "summed-area table + torchvision NMS"
        rel = f"{base[(size, threads)][6] / cmed:.2f}× less" if which == "after" else ""
        lines.append(f"| {size}² | {label} | {threads} | {1000 * wmin:.0f} | {1000 * wmed:.0f} | {1000 * cmin:.0f} | {1000 * cmed:.0f} | {rel} |")
    lines += [
        "",
        f"cProfile (CPU-time clock) of `MTCNNDetector.detect` alone (1 thread, the {prof['before']['images']} 1024² photos "
        "one at a time; cProfile's per-call overhead inflates the many-call loop of *before*), CPU seconds and share of the detector:",
        "",
        "| part | before s | before % | after s | after % |",
        "|---|---|---|---|---|",
    ]
    for part in ("crop", "nms", "P-Net forward", "R-Net forward", "O-Net forward", "rest", "total"):
        b, a = prof["before"][part], prof["after"][part]
        lines.append(f"| {part} | {b:.2f} | {100 * b / prof['before']['total']:.0f} % | {a:.2f} | {100 * a / prof['after']['total']:.0f} % |")
    lines.append(AB_END)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="offline,paper,arcface")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2, help="runs per configuration; the fastest is reported")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--readme", type=Path, default=None, help="write the table into this README (section replaced)")
    ap.add_argument("--mtcnn-ab", action="store_true", help="MTCNN before/after + threads comparison instead (see above)")
    ap.add_argument("--rounds", type=int, default=3, help="--mtcnn-ab: alternated rounds (>= 3 recommended)")
    args = ap.parse_args(argv)
    if args.mtcnn_ab:
        import torch

        t0, default_threads = time.perf_counter(), torch.get_num_threads()
        with tempfile.TemporaryDirectory() as tmp:
            ab = mtcnn_ab(Path(tmp), max(1, args.rounds))
            prof = profile_mtcnn(Path(tmp))
        torch.set_num_threads(default_threads)  # machine() reports torch's default
        section = ab_markdown(ab, prof, time.perf_counter() - t0)
        print(section)
        if args.readme:
            write_readme(args.readme, section, AB_BEGIN, AB_END)
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(
            [p for p in args.presets.split(",") if p],
            [int(s) for s in args.sizes.split(",")],
            [int(b) for b in args.batches.split(",")],
            args.images,
            Path(tmp),
            max(1, args.repeat),
        )
    section = to_markdown(rows, time.perf_counter() - t0, max(1, args.repeat), args.images)
    print(section)
    if args.readme:
        write_readme(args.readme, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
