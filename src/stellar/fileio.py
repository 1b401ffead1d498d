"""Atomic file writes shared by every writer (datasets, generated sets, results, caches).

A file is written to a uniquely named temporary file in the same folder and renamed over the target
(``os.replace``), so a crash never leaves a partial file and readers see the old or the new content.
Temporary files are created with mode 0o666 so the umask decides the permissions (``mkstemp`` would
force 0600).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (parents created) via a temp file + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_if_changed(path: str | Path, data: bytes) -> bool:
    """:func:`atomic_write_bytes` unless ``path`` already holds exactly ``data``; True when written."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def json_bytes(obj: object, indent: int = 2) -> bytes:
    """``obj`` as UTF-8 JSON text with a final newline (stable bytes for write-if-changed)."""
    return (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")
