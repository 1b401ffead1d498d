"""Helpers shared by the command modules: printing problems and summaries, shared options."""

from __future__ import annotations

import json
import sys

from stellar.data.problems import Problem, count


def print_problems(problems: list[Problem], *, limit: int = 200, file=None) -> None:
    """Errors first, then warnings; at most ``limit`` of each kind, with the rest counted.

    ``file`` defaults to the *current* ``sys.stdout`` (looked up per call, so redirection works).
    """
    file = file or sys.stdout
    for severity in ("error", "warning"):
        items = [p for p in problems if p.severity == severity]
        for p in items[:limit]:
            print(p, file=file)
        if len(items) > limit:
            print(f"... and {len(items) - limit} more {severity}s", file=file)
    print(f"{count(problems, 'error')} error(s), {count(problems, 'warning')} warning(s)", file=file)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def split_list(text: str | None) -> list[str]:
    """``"T,H"`` -> ``["T", "H"]``; empty/None -> ``[]``."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``; ``None`` -> from ``RANK``/``WORLD_SIZE`` (torchrun, accelerate) else ``(0, 1)``."""
    import os

    from stellar.errors import StellarError

    if text is None:
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is not None and world is not None and int(world) > 1:
            return int(rank), int(world)
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise StellarError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise StellarError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def add_threads_option(parser) -> None:
    """``--threads N|auto`` for a model-backed command; :func:`apply_threads_option` applies it."""
    from stellar.device import AUTO_THREADS

    parser.add_argument(
        "--threads",
        default="auto",
        metavar="N|auto",
        help=f"torch CPU threads in this process: auto (= OMP_NUM_THREADS when set, else {AUTO_THREADS}, "
        "measured fastest on shared cores; run torchrun shards to use more cores) or N",
    )


def apply_threads_option(args) -> None:
    """Set torch's intra-op threads from ``args.threads`` (commands without the option: no-op).

    Called once by :func:`stellar.cli.main` before the command runs, so models are loaded and run
    with the chosen pool; a bad value is a :class:`~stellar.errors.StellarError`.
    """
    if getattr(args, "threads", None) is not None:
        from stellar.device import configure_threads

        configure_threads(args.threads)
