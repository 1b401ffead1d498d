"""``stellar generate``: run a registered method over the benchmark's jobs (the generation harness).

Writes the official generated layout (``NAME.png`` + ``NAME.json`` sidecar with the job metadata and
every setting), deterministic per (job, seed), resumable (valid outputs are skipped, files are
written then renamed), sharded with ``--shard i/n`` (jobs ``i, i+n, …``; automatic under
``torchrun`` / ``accelerate launch`` from ``RANK``/``WORLD_SIZE``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stellar.commands._common import add_threads_option, parse_shard, positive_int, split_list


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="run a method (copy, noise, paste, stellarnet, ...) over the jobs")
    g.add_argument("--method", required=True, help="registered method name (see --list)")
    g.add_argument("--dataset", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True, help="output folder of the generated set")
    g.add_argument("--split", default="test", choices=["test", "val", "all"])
    g.add_argument("--kinds", default="T,H")
    g.add_argument("--seeds", type=positive_int, default=1, help="images per job; >1 names them -sK")
    g.add_argument("--seed", type=int, default=42, help="base seed (default 42, as the official samples)")
    g.add_argument("--shard", default=None, help="i/n: generate jobs i, i+n, ... (auto under torchrun/accelerate)")
    g.add_argument("--device", default="auto")
    g.add_argument("--batch-size", type=positive_int, default=1, help="jobs per generate call (default 1)")
    add_threads_option(g)
    g.add_argument("--format", default="png", choices=["png", "jpg", "webp"])
    g.add_argument("--force", action="store_true", help="regenerate existing valid outputs")
    g.add_argument("--checkpoint", default=None, help="stellarnet: trained checkpoint folder")
    g.add_argument("--steps", type=int, default=None, help="stellarnet: denoising steps (default 100)")
    g.add_argument("--guidance", type=float, default=None, help="stellarnet: guidance scale (default 5)")
    g.add_argument("--resolution", type=int, default=None, help="stellarnet: output side (default 1024)")
    g.add_argument("--size", type=int, default=None, help="sanity baselines: output side")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other method setting (VALUE parsed as JSON when it can be)")
    g.set_defaults(func=cmd_generate)


def method_settings(args: argparse.Namespace) -> dict:
    """Keyword arguments of the method: the explicit flags that were given, then every ``--set``."""
    from stellar.errors import StellarError

    settings = {k: getattr(args, k) for k in ("checkpoint", "steps", "guidance", "resolution", "size") if getattr(args, k) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StellarError(f"--set {item!r}: expected KEY=VALUE")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def cmd_generate(args: argparse.Namespace) -> int:
    from stellar.data.dataset import StellarDataset
    from stellar.generate import create_method, write_generated_set

    i, n = parse_shard(args.shard)
    dataset = StellarDataset(args.dataset)
    jobs = dataset.jobs(None if args.split == "all" else args.split, split_list(args.kinds), args.seeds)
    mine = jobs[i::n]
    method = create_method(args.method, **method_settings(args))
    summary = write_generated_set(
        method,
        mine,
        args.out,
        dataset=dataset,
        seed=args.seed,
        batch_size=args.batch_size,
        device=None if args.device == "auto" else args.device,
        image_format=args.format,
        force=args.force,
    )
    shard = f" (shard {i}/{n}: {len(mine)} of {len(jobs)} jobs)" if n > 1 else ""
    print(f"{args.method}: {summary.written} written, {summary.skipped} already done, {summary.total} jobs{shard} -> {args.out}")
    return 0
