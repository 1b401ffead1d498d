"""Typed, actionable errors.

Every error a user can cause carries what was wrong, where (file / name) and what to do. The CLI
prints ``str(error)`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class StellarError(Exception):
    """Base class of every error Stellar-Bench raises on purpose."""


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
