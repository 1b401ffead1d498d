"""The ``stellar`` command.

Each command group lives in its own module under :mod:`stellar.commands` exposing
``register(subparsers)``; this file only assembles them, so adding a group is one module plus one
line in ``_GROUPS``.

The error policy lives here, in :func:`main`, and nowhere else: every command ends with one clear
message naming the file and the fix, never a raw traceback, and exits with

- **2**, a usage error: a bad option (argparse), or a :class:`~stellar.errors.StellarError` about the
  input the command line names (missing or malformed dataset, a path that is not UTF-8, ...);
- **1**, a failure: a corrupt results file (:class:`~stellar.errors.RunFileError`), a full or
  read-only disk, a file standing where a folder is needed (any ``OSError``: the message names the
  file and a fix chosen by its errno), or an unexpected internal error;
- 130 on Ctrl-C, 141 when the reader of stdout went away (``stellar jobs export | head``).

``stellar --debug COMMAND …`` (or ``STELLAR_DEBUG=1``) prints the traceback before the message.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from pathlib import Path

from stellar import __version__
from stellar.commands._common import apply_threads_option
from stellar.errors import StellarError

#: Command groups, in the order ``stellar --help`` lists them.
_GROUPS = (
    "stellar.commands.dataset",
    "stellar.commands.jobs",
    "stellar.commands.generated",
    "stellar.commands.demo",
    "stellar.commands.models",
    "stellar.commands.doctor",
    "stellar.commands.faces",
    "stellar.commands.evaluate",
    "stellar.commands.report",
    "stellar.commands.compare",
    "stellar.commands.agreement",
    "stellar.commands.generate",
    "stellar.commands.train",
    "stellar.commands.prompts",
    "stellar.commands.study",
)

#: What to do about an OSError, by errno (the message already names the file and the OS's reason).
_OS_FIXES = {
    errno.ENOSPC: "the disk is full: free space there or write the output elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free space there or write the output elsewhere",
    errno.EROFS: "the file system is read-only: write the output to a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to (or fix its permissions)",
    errno.EPERM: "permission denied: choose a folder you can write to (or fix its permissions)",
    errno.EEXIST: "a file stands where a folder is needed: move it away or choose another path",
    errno.ENOTDIR: "a file stands where a folder is needed: move it away or choose another path",
    errno.EISDIR: "a folder stands where a file is needed: choose a file path",
    errno.ENOENT: "the file or folder does not exist: check the path",
    errno.ELOOP: "a symbolic link loops: remove or fix it",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stellar",
        description="Stellar-Bench: evaluate human-centric personalized text-to-image methods (Stellar, arXiv 2312.06116).",
    )
    parser.add_argument("--version", action="version", version=f"stellar-bench {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too (also STELLAR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _GROUPS:
        importlib.import_module(module).register(sub)
    return parser


def _check_text_arguments(args: argparse.Namespace) -> None:
    """Refuse an argument that is not valid UTF-8 (a path with Latin-1 bytes): results files cite it in UTF-8."""
    for dest, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, (str, Path)):
                try:
                    str(item).encode("utf-8")
                except UnicodeEncodeError:
                    shown = str(item).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    raise StellarError(
                        f"{shown}: the {dest.replace('_', '-')} argument is not valid UTF-8 text\n"
                        "  fix: rename the file or folder with UTF-8 characters (e.g. `convmv -f latin1 -t utf8 --notest NAME`)"
                    ) from None


def describe_error(exc: BaseException, args: argparse.Namespace | None = None) -> tuple[int, str]:
    """(exit status, the message printed after ``error: ``) for an exception that ends a command."""
    if isinstance(exc, StellarError):
        return exc.exit_status, str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else getattr(args, "out", None)
        where = f"{where}: " if where is not None else ""
        if exc.filename2 is not None:
            where += f"(-> {exc.filename2}) "
        fix = _OS_FIXES.get(exc.errno, "check the path, its permissions and the free space")
        return 1, f"{where}{exc.strerror or exc}\n  fix: {fix}"
    if isinstance(exc, MemoryError):
        return 1, "out of memory\n  fix: lower --batch-size (and --workers), or use a machine with more memory"
    return 1, (
        f"internal error: {type(exc).__name__}: {exc}\n"
        "  fix: rerun with `stellar --debug …` to see where, and report it with that traceback"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("STELLAR_DEBUG", "") not in ("", "0")
    try:
        _check_text_arguments(args)
        apply_threads_option(args)  # --threads of the model-backed commands, before any model loads
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`stellar jobs export | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # the one place where an error becomes a message and an exit status
        status, message = describe_error(exc, args)
        if debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
