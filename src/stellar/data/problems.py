"""Validation findings: every problem names its file and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding of a validation: ``severity`` ``path``: ``message`` (fix: ``fix``)."""

    severity: Severity
    path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.severity.upper():7s} {self.path}: {self.message}"
        if self.fix:
            text += f"\n        fix: {self.fix}"
        return text

    def to_dict(self) -> dict:
        return {"severity": self.severity, "path": self.path, "message": self.message, "fix": self.fix}


def display_path(path: str | Path) -> str:
    """``path`` as printable UTF-8 text: bytes of a non-UTF-8 name (held as lone surrogates, PEP 383)
    are shown as ``\\xNN`` escapes, so a report or a JSON file can always be written."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def error(path: str | Path, message: str, fix: str = "") -> Problem:
    return Problem("error", display_path(path), display_path(message), fix)


def warning(path: str | Path, message: str, fix: str = "") -> Problem:
    return Problem("warning", display_path(path), display_path(message), fix)


def count(problems: list[Problem], severity: Severity) -> int:
    return sum(p.severity == severity for p in problems)
