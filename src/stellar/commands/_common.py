"""Helpers shared by the command modules: printing problems and summaries."""

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
