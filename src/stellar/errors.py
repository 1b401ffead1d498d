"""Typed, actionable errors.

Every error a user can cause carries what was wrong, where (file / name) and what to do. The CLI
(:func:`stellar.cli.main`, the one place of the policy) prints ``str(error)`` instead of a traceback
and exits with the error's :attr:`~StellarError.exit_status`: 2 for a usage error (an option, or the
input an option names, is wrong: the user changes the command line or that input), 1 for a failure
of a command that was given right (a run's results file is corrupt, the disk is full, ...).
"""

from __future__ import annotations

from pathlib import Path


class StellarError(Exception):
    """Base class of every error Stellar-Bench raises on purpose."""

    #: the CLI's exit status for this error: 2 = usage error, 1 = failure
    exit_status: int = 2


class DatasetError(StellarError):
    """A dataset folder, or a file inside it, is missing or malformed."""

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        self.path = Path(path) if path is not None else None
        self.fix = fix
        text = f"{path}: {message}" if path is not None else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class ImageDecodeError(StellarError):
    """An image file cannot be decoded (empty, truncated, unknown format, too large, ...)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: cannot decode image: {reason}")


class MissingDependencyError(StellarError):
    """An optional dependency (extra) is not installed."""

    def __init__(self, package: str, extra: str, feature: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the Python package '{package}', which is not installed.\n"
            f"  fix: pip install 'stellar-bench[{extra}]'"
        )


class RunFileError(StellarError):
    """A file of a run directory (``run.json``, ``summary.json``, a Parquet table) is unreadable."""

    exit_status = 1

    def __init__(self, path: str | Path, reason: str, fix: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}\n  fix: {fix}")
