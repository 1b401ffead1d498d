"""``stellar evaluate`` and ``stellar metrics list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stellar.commands._common import add_threads_option, check_output_outside_inputs, check_run_files, non_negative_int, parse_shard, positive_int, print_json, split_list


def register(sub: argparse._SubParsersAction) -> None:
    from stellar.commands.models import add_weights_argument
    from stellar.engine.evaluate import DEFAULT_METRICS

    e = sub.add_parser("evaluate", help="evaluate a generated set against the dataset's jobs")
    e.add_argument("--dataset", type=Path, required=True)
    e.add_argument("--generated", type=Path, required=True, help="folder of generated images (official layout)")
    e.add_argument("--out", type=Path, required=True, help="run directory (created; a rerun resumes)")
    e.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help=f"comma separated (default {','.join(DEFAULT_METRICS)}), or 'paper' (every metric the paper reports), "
        "or 'all'; see `stellar metrics list`",
    )
    e.add_argument("--detector", default=None, help="GOA/RFS open-vocabulary detector: owlvit-large-patch14 (default), owlv2-large-patch14-ensemble, grounding-dino-base, or a folder")
    e.add_argument("--relation-scorer", default=None, choices=["clip", "vqa"], help="RFS predicate scorer (default clip)")
    e.add_argument("--goa-empty", default=None, choices=["nan", "zero"], help="GOA of a prompt without objects: NaN, counted (default) or 0 (the official averaging)")
    e.add_argument("--scorer-option", action="append", default=[], metavar="KEY=VALUE", help="other scorer settings, e.g. dino=FOLDER, hpsv2_version=v2.1")
    e.add_argument(
        "--faces", default="paper",
        help="face preset: paper (mtcnn+facenet), arcface (scrfd+arcface), offline (mtcnn+dlib); a comma-separated list "
        "(paper,arcface) computes IPS/SIS/APS/FDFR/CPS once per preset in the same pass, columns ips@paper, ips@arcface, ...",
    )  # fmt: skip
    e.add_argument("--generator-encoder", default=None, metavar="NAME", help="the face encoder the method was conditioned on (e.g. arcface-antelopev2): a matching evaluation preset is flagged as biased (default: the sidecars' face_encoder)")
    e.add_argument("--clip", default="clip-vit-bigg-14-laion2b", help="CLIP card, hub id or local folder; 'none' to skip CLIP metrics and the exclusion rule")
    e.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    e.add_argument("--batch-size", type=positive_int, default=8)
    e.add_argument("--workers", type=non_negative_int, default=2, help="image-decoding threads")
    add_threads_option(e)
    e.add_argument("--split", default="test", choices=["test", "val", "all"])
    e.add_argument("--kinds", default="T,H")
    e.add_argument("--seeds", type=positive_int, default=None)
    e.add_argument("--method", default=None, help="method name shown in reports (default: the folder name)")
    e.add_argument("--shard", default=None, help="i/n: evaluate every n-th job from i (auto under torchrun/accelerate)")
    e.add_argument("--strict", action="store_true", help="stop when images are unmatched, missing or duplicated")
    e.add_argument("--force", action="store_true", help="discard previous results in --out and recompute (after validating everything; only files Stellar-Bench wrote)")
    e.add_argument("--partial", action="store_true", help="mean over the jobs that have an image (default: a missing or undecodable image scores each metric's worst value)")
    e.add_argument("--plan", action="store_true", help="print the plan (scorers, shared models, cached features, finalisers) and exit")
    e.add_argument("--wait", action="store_true", help="when another evaluation writes --out, wait for it instead of stopping")
    e.add_argument("--no-reuse", action="store_true", help="recompute reference faces per metric and image, as the official code (for benchmarks)")
    e.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    e.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_weights_argument(e)
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("metrics", help="the metrics and their metadata")
    msub = m.add_subparsers(dest="metrics_command", metavar="ACTION")
    msub.required = True
    ml = msub.add_parser("list", help="name, direction, what it needs, models, level, exclusion rule")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_metrics_list)


#: What the Stellar paper reports (its five metrics and the standard ones it compares with) that is implemented.
PAPER_METRICS = (
    "ips", "sis", "aps", "goa", "rfs", "clip_t", "clip_i", "dino", "aesthetic", "pick_score", "pick_score_raw", "hpsv2",
    "hpsv1", "image_reward", "dreamsim",
)  # fmt: skip


def expand_metrics(text: str) -> tuple[str, ...]:
    """``"paper"`` / ``"all"`` / a comma-separated list -> metric names (unknown names are refused)."""
    from stellar.errors import StellarError
    from stellar.metrics.base import METRICS, get_metric

    out: list[str] = []
    for name in split_list(text):
        group = PAPER_METRICS if name == "paper" else tuple(METRICS) if name == "all" else (name,)
        for m in group:
            try:
                get_metric(m)
            except KeyError as exc:
                raise StellarError(str(exc.args[0])) from None
            if m not in out:
                out.append(m)
    return tuple(out)


def scorer_options(args: argparse.Namespace) -> dict:
    """The scorer settings of the command line (``--detector``, ``--relation-scorer``, ``--goa-empty``, ``--scorer-option``)."""
    from stellar.errors import StellarError

    options = {k: v for k, v in (("detector", args.detector), ("relation_scorer", args.relation_scorer), ("goa_empty", args.goa_empty)) if v is not None}
    for item in args.scorer_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StellarError(f"--scorer-option {item!r}: expected KEY=VALUE")
        options[key] = value
    if args.clip.lower() != "none":
        options.setdefault("clip", args.clip)
    return options


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stellar.commands.doctor import preflight
    from stellar.commands.models import apply_weights_overrides
    from stellar.data.dataset import StellarDataset
    from stellar.data.generated import GeneratedSet
    from stellar.engine.evaluate import CLIP_METRICS, FACE_METRICS, EvalConfig, evaluate
    from stellar.engine.scorers import build_scorers
    from stellar.errors import StellarError

    apply_weights_overrides(args)
    metrics = expand_metrics(args.metrics)
    preflight(metrics, args)  # stellar doctor's check: fail fast, before any image is opened
    config = EvalConfig(
        metrics=metrics,
        split=None if args.split == "all" else args.split,
        kinds=tuple(split_list(args.kinds)),
        seeds=args.seeds,
        batch_size=args.batch_size,
        num_workers=args.workers,
        strict=args.strict,
        reuse=not args.no_reuse,
        use_cache=not args.no_cache,
        shard=parse_shard(args.shard),
        method=args.method,
        failure_rule="partial" if args.partial else "worst",
        generator_encoder=args.generator_encoder,
    )
    check_run_files(args.out)  # a corrupt run.json / part file or a file as --out: one message, not a traceback
    check_output_outside_inputs(args.out, {"--dataset": args.dataset, "--generated": args.generated})
    dataset = StellarDataset(args.dataset)
    generated = GeneratedSet(args.generated, dataset, split=config.split, kinds=config.kinds, seeds=config.seeds)
    print(generated.match_text(), file=sys.stderr)  # the match report, before anything runs (#9 item 10)
    faces = None
    if any(m in FACE_METRICS for m in metrics):  # noqa: SIM102
        from stellar.models.faces import FaceAnalyzer, presets_from_names

        names = split_list(args.faces)
        if len(names) == 1:
            faces = FaceAnalyzer.from_preset(names[0], device=args.device, batch_size=args.batch_size)
        else:  # several presets: one analyzer each, a detector shared by the presets that name it
            faces = presets_from_names(names, device=args.device, batch_size=args.batch_size)
    clip, why = None, None
    if args.clip.lower() != "none":
        from stellar.models.clip import load_clip

        try:
            clip = load_clip(args.clip, device=args.device, batch_size=args.batch_size)
        except StellarError as exc:
            why = f"CLIP unavailable ({str(exc).splitlines()[0]})"
            print(f"warning: {why}\n  CLIP-T/CLIP-I are skipped and the exclusion rule is NOT applied.", file=sys.stderr)
    else:
        why = "--clip none"
    options = scorer_options(args)
    if clip is not None and options.get("clip") == args.clip:
        options["clip"] = clip  # the relation scorer reuses the loaded CLIP instead of loading it twice
    if "rfs" in metrics:
        from stellar.data.prompts import predicate_vocabulary, resolve_triplets

        # DESIGN §6.6: the predicate vocabulary = the dataset's triplets' predicates + the built-in list
        triplets = [resolve_triplets(p) for s in dataset.subjects.values() for p in s.prompts_of(("T",))]
        options.setdefault("predicates", predicate_vocabulary(triplets))
    scorers = build_scorers(
        [m for m in metrics if m not in FACE_METRICS and m not in CLIP_METRICS],
        options,
        device=None if args.device == "auto" else args.device,
        batch_size=args.batch_size,
    )
    if args.plan:
        from stellar.engine.plan import build_plan

        plan = build_plan(
            metrics, faces=faces, clip=clip, clip_unavailable=why, scorers=scorers, scorer_options=options,
            batch_size=args.batch_size, reuse=not args.no_reuse, failure_rule=config.failure_rule,
        )  # fmt: skip
        print(plan.describe())
        return 0
    summary = evaluate(
        dataset, generated, args.out, config, faces=faces, clip=clip, clip_unavailable=why, scorers=scorers, force=args.force, wait=args.wait,
        show_plan=True,
    )  # fmt: skip
    if summary is None:
        print(f"shard {config.shard[0]}/{config.shard[1]} done; results are merged when every shard has finished")
        return 0
    if args.json:
        print_json(summary)
    else:
        from stellar.report.leaderboard import console_summary

        print(console_summary(summary))
    return 0


def cmd_metrics_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from stellar.metrics.base import METRICS

    if args.json:
        print_json([asdict(m) for m in METRICS.values()])
        return 0
    w = max(8, *(len(m.name) for m in METRICS.values()))
    d = max(8, *(len(m.display_name) for m in METRICS.values()))
    print(f"{'name':{w}s} {'display':{d}s} {'better':7s} {'level':8s} {'exclusion':9s} {'models':12s} needs")
    for m in METRICS.values():
        print(
            f"{m.name:{w}s} {m.display_name:{d}s} {'higher' if m.higher_is_better else 'lower':7s} {m.level:8s} "
            f"{'yes' if m.exclusion_applies else 'no':9s} {','.join(m.models):12s} {','.join(m.needs)}"
        )
        print(f"{'':{w}s} {m.description}")
    return 0
