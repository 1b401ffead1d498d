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


def _int_at_least(minimum: int):
    """An argparse type: a whole number ≥ ``minimum`` (so ``--batch-size 0`` is a usage error, not a crash deep inside)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {value}")
        return value

    parse.__name__ = f"int≥{minimum}"
    return parse


#: argparse types: ``--batch-size``, ``--seeds``, ``--max-steps`` (≥ 1); ``--workers`` (≥ 0, 0 = decode in the main thread).
positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


#: The files of a run directory that are read back, and how each is checked before it is used.
RUN_JSON_FILES = ("run.json", "summary.json")


def write_text_output(text: str, out) -> None:
    """A command's text result: atomically to ``out`` when given (and say so), else to stdout."""
    from stellar.fileio import atomic_write_text

    if out:
        atomic_write_text(out, text)
        print(f"wrote {out}")
    else:
        print(text, end="")


def check_output_outside_inputs(out, inputs: dict) -> None:
    """Refuse an output folder that is, or lies inside, one of the input folders.

    ``inputs`` maps an option name (``--dataset``) to its folder. Results written into the dataset
    or the generated set would change that input's fingerprint and mix our files with its own.

    Raises:
        StellarError: naming both folders and the fix (exit status 2).
    """
    from pathlib import Path

    from stellar.errors import StellarError

    target = Path(out).resolve()
    for option, folder in inputs.items():
        root = Path(folder).resolve()
        if target == root or root in target.parents:
            raise StellarError(
                f"{out}: the output folder is inside {option} {folder}; writing results there would change that input\n"
                "  fix: pass an --out folder outside the dataset and the generated set (e.g. runs/<method>)"
            )


def check_run_files(folder, *, need: tuple[str, ...] = ()) -> None:
    """Refuse a run directory whose results files cannot be read, naming the file and the fix.

    Checks ``run.json`` / ``summary.json`` (a JSON object each), ``per_image.parquet`` /
    ``reference.parquet`` and every part file (a Parquet footer: truncated or foreign files fail).
    ``need`` lists files that must exist (``report`` needs all three results files). A missing
    ``folder`` passes (a new run); a file in its place is a usage error.

    Raises:
        StellarError: ``folder`` is a file, or a needed file is missing (exit status 2).
        RunFileError: a file is corrupt (exit status 1).
    """
    from pathlib import Path

    from stellar.errors import RunFileError, StellarError

    folder = Path(folder)
    if not folder.exists():
        if need:
            raise StellarError(f"{folder}: run directory not found\n  fix: pass a folder written by `stellar evaluate --out`")
        return
    if not folder.is_dir():
        raise StellarError(f"{folder}: is a file, not a run directory\n  fix: pass a folder (a new one, or one written by `stellar evaluate --out`)")
    for name in need:
        if not (folder / name).is_file():
            raise StellarError(
                f"{folder / name}: missing, so {folder} is not a finished run\n"
                "  fix: finish the run (rerun `stellar evaluate` with the same --out; shards merge when all are done)"
            )
    redo = f"move {folder} away and rerun `stellar evaluate --out {folder}` (or pass --force to recompute it)"
    for name in RUN_JSON_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunFileError(path, f"corrupt results file (not JSON: {exc})", redo) from None
        if not isinstance(data, dict):
            raise RunFileError(path, "corrupt results file (not a JSON object)", redo)
    tables = [folder / "per_image.parquet", folder / "reference.parquet", *sorted((folder / "parts").glob("*/*.parquet"))]
    for path in tables:
        if path.is_file():
            _check_parquet(path, redo)


def _check_parquet(path, fix: str) -> None:
    import pyarrow.parquet as pq

    from stellar.errors import RunFileError

    try:
        pq.read_metadata(path)
    except OSError as exc:
        if exc.errno is not None:  # a real I/O error (permissions, ...): the CLI names it by errno
            raise
        raise RunFileError(path, f"corrupt Parquet table ({str(exc).splitlines()[0]})", fix) from None
    except Exception as exc:  # pyarrow.ArrowInvalid and kin: not a Parquet file, truncated footer
        raise RunFileError(path, f"corrupt Parquet table ({str(exc).splitlines()[0]})", fix) from None


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
