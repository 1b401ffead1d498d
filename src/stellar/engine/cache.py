"""On-disk feature cache: extract once, score many (DESIGN §2.2, §7.3).

Features are keyed by ``(protocol, content sha256)``: the protocol string names the model card,
revision and preprocessing (e.g. ``FaceAnalyzer.protocol``), the content hash the image bytes — so a
second run, or a run of another method on the same dataset, reuses the reference side, and a changed
file or model never reuses a stale value.

Storage: one SQLite file per protocol under ``$STELLAR_HOME/features/`` (WAL mode, so shards on one
machine can share it); values are ``np.savez`` archives of named arrays (no pickle: a cache file can
never execute code).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
from pathlib import Path

import numpy as np


def content_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _encode(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _decode(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class FeatureCache:
    """``get``/``put`` named-array features for (protocol, content hash); thread safe.

    Args:
        folder: where the SQLite files live (default ``$STELLAR_HOME/features``).
        enabled: ``False`` makes every ``get`` a miss and every ``put`` a no-op (``--no-cache``).
    """

    def __init__(self, folder: str | Path, *, enabled: bool = True):
        self.folder = Path(folder)
        self.enabled = enabled
        self._conns: dict[str, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _conn(self, protocol: str) -> sqlite3.Connection:
        conn = self._conns.get(protocol)
        if conn is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(protocol.encode()).hexdigest()[:16]
            conn = sqlite3.connect(self.folder / f"{name}.sqlite", check_same_thread=False, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (protocol TEXT)")
            if conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
                conn.execute("INSERT INTO meta VALUES (?)", (protocol,))
            conn.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, value BLOB)")
            conn.commit()
            self._conns[protocol] = conn
        return conn

    def get(self, protocol: str, key: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            self.misses += 1
            return None
        with self._lock:
            row = self._conn(protocol).execute("SELECT value FROM features WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return _decode(row[0])

    def put(self, protocol: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        blob = _encode(arrays)
        with self._lock:
            conn = self._conn(protocol)
            conn.execute("INSERT OR REPLACE INTO features VALUES (?, ?)", (key, blob))
            conn.commit()

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
