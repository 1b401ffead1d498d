"""``stellar faces detect | similarity``: what the face stack sees (boxes, scores, similarity).

Meant for debugging a low IPS: run the same preset the evaluation used and look at which faces were
found and how similar the largest ones are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands._common import add_threads_option, positive_int, print_json


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    from stellar.commands.models import add_weights_argument
    from stellar.models.faces.analyzer import DEFAULT_PRESET, DETECTORS, EMBEDDERS, PRESETS

    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"face preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--detector", default=None, help=f"override the preset's detector: {', '.join(DETECTORS)}")
    p.add_argument("--embedder", default=None, help=f"override the preset's embedder: {', '.join(EMBEDDERS)}")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per detector / embedder call")
    add_threads_option(p)
    add_weights_argument(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faces", help="detect faces and compare identities with a face preset (debug IPS)")
    fsub = p.add_subparsers(dest="faces_command", metavar="ACTION")
    fsub.required = True

    d = fsub.add_parser("detect", help="faces in each image: box, score, 5 landmarks, area")
    d.add_argument("images", nargs="+", type=Path, help="image files")
    _add_model_arguments(d)
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d.set_defaults(func=cmd_detect)

    s = fsub.add_parser("similarity", help="cosine similarity of the largest face of two images")
    s.add_argument("a", type=Path, help="first image")
    s.add_argument("b", type=Path, help="second image")
    _add_model_arguments(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_similarity)


def _analyzer(args: argparse.Namespace):
    from stellar.commands.models import apply_weights_overrides
    from stellar.models.faces.analyzer import PRESETS, FaceAnalyzer, UnknownFaceModelError

    apply_weights_overrides(args)
    device = None if args.device == "auto" else args.device
    if args.detector is None and args.embedder is None:
        return FaceAnalyzer.from_preset(args.preset, device=device, batch_size=args.batch_size)
    if args.preset not in PRESETS:
        raise UnknownFaceModelError("preset", args.preset, list(PRESETS))
    preset = PRESETS[args.preset]
    return FaceAnalyzer(
        args.detector or preset.detector, args.embedder or preset.embedder, device=device, batch_size=args.batch_size
    )


def _fmt_face(i: int, face) -> str:
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return f"  {i:>2}  {x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}  {face.score:6.3f}  {face.area:9.0f}"


def cmd_detect(args: argparse.Namespace) -> int:
    analyzer = _analyzer(args)
    results = analyzer.analyze(args.images, progress=not args.json and len(args.images) > 8)
    if args.json:
        print_json(
            {
                "protocol": analyzer.protocol,
                "images": [
                    {"image": str(path), "n_faces": len(faces), "faces": [f.to_dict() for f in faces]}
                    for path, faces in zip(args.images, results)
                ],
            }
        )
        return 0
    print(f"protocol: {analyzer.protocol}")
    for path, faces in zip(args.images, results):
        print(f"{path}: {len(faces)} face(s)" + ("" if faces else " - no face found"))
        if faces:
            print("   #       x1      y1      x2      y2   score       area")
            for i, face in enumerate(faces):
                print(_fmt_face(i, face))
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from stellar.models.faces.analyzer import similarity

    analyzer = _analyzer(args)
    faces_a, faces_b = analyzer.analyze([args.a, args.b])
    missing = [str(p) for p, f in ((args.a, faces_a), (args.b, faces_b)) if not f]
    sim = None if missing else similarity(faces_a[0], faces_b[0])
    if args.json:
        print_json(
            {
                "protocol": analyzer.protocol,
                "similarity": None if sim is None else round(sim, 6),
                "no_face": missing,
                "a": {"image": str(args.a), "n_faces": len(faces_a), "face": faces_a[0].to_dict() if faces_a else None},
                "b": {"image": str(args.b), "n_faces": len(faces_b), "face": faces_b[0].to_dict() if faces_b else None},
            }
        )
    else:
        print(f"protocol: {analyzer.protocol}")
        for path, faces in ((args.a, faces_a), (args.b, faces_b)):
            if faces:
                x1, y1, x2, y2 = (round(float(v), 1) for v in faces[0].box)
                print(
                    f"{path}: largest of {len(faces)} face(s): box ({x1}, {y1}, {x2}, {y2}), "
                    f"score {faces[0].score:.3f}, area {faces[0].area:.0f}"
                )
            else:
                print(f"{path}: no face found")
        if sim is None:
            print("similarity: not computed (no face in " + " and ".join(missing) + ")")
        else:
            print(f"cosine similarity: {sim:.4f}")
    return 1 if missing else 0
