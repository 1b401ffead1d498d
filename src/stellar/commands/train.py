"""``stellar train stellarnet``: train the StellarNet baseline (mappers + UNet LoRA on frozen SDXL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stellar.commands._common import add_threads_option, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a generator (StellarNet)")
    tsub = p.add_subparsers(dest="train_command", metavar="MODEL")
    tsub.required = True
    s = tsub.add_parser(
        "stellarnet",
        help="train StellarNet's mappers + UNet LoRA on masked face photos (GPU recommended)",
        description="Train StellarNet (SDXL frozen; mappers + rank-4 UNet LoRA). Rerunning with the same --out resumes.",
    )
    s.add_argument("--images", type=Path, required=True, help="CelebAMask-HQ copy, Stellar-layout dataset, or folder of photos + masks")
    s.add_argument("--exclude-dataset", type=Path, default=None, help="Stellar dataset whose identities must not be trained on")
    s.add_argument("--out", type=Path, required=True, help="checkpoint folder (final weights, checkpoints/, log.jsonl, validation/)")
    s.add_argument("--config", type=Path, default=None, help="JSON or YAML file of TrainConfig options")
    s.add_argument("--max-steps", type=positive_int, default=None)
    s.add_argument("--batch-size", type=positive_int, default=None)
    s.add_argument("--resolution", type=int, default=None)
    s.add_argument("--learning-rate", type=float, default=None)
    s.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"], default=None)
    s.add_argument("--gradient-checkpointing", action="store_true", default=None)
    s.add_argument("--base", default=None, help="SDXL base: registry card, hub id or local folder (default sdxl-base-1.0)")
    s.add_argument("--subject-encoder", default=None, help="CLIP vision encoder: card, hub id or folder (default clip-vit-l-14-openai)")
    s.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, ...")
    add_threads_option(s)
    s.add_argument("--no-resume", action="store_true", help="start from scratch even if --out has checkpoints")
    s.set_defaults(func=cmd_stellarnet)


def cmd_stellarnet(args: argparse.Namespace) -> int:
    import dataclasses

    from stellar.generate.stellarnet.config import load_train_config
    from stellar.generate.stellarnet.data import dataset_identities, discover_training_photos, exclude_identities
    from stellar.generate.stellarnet.train import StellarNetTrainer

    config = load_train_config(
        args.config,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        resolution=args.resolution,
        learning_rate=args.learning_rate,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    if args.base is not None:
        config = config.replace(model=dataclasses.replace(config.model, base=args.base))
    if args.subject_encoder is not None:
        config = config.replace(model=dataclasses.replace(config.model, subject_encoder=args.subject_encoder))
    photos, kind = discover_training_photos(args.images)
    excluded = dataset_identities(args.exclude_dataset) if args.exclude_dataset is not None else set()
    kept, report = exclude_identities(photos, excluded, f"{args.images} ({kind})")
    trainer = StellarNetTrainer(config, kept, args.out, device=args.device, selection=report)
    summary = trainer.train(resume=not args.no_resume)
    print(f"trained to step {summary['steps']} (from {summary['started_at']}) in {summary['seconds']} s; checkpoint: {summary['out']}")
    return 0
