"""Results of a run, written incrementally (DESIGN §5 "Results", §7.5).

::

    RUN/run.json              config, metrics, models, package version, fingerprints
    RUN/parts/<shard>/NNNNNN.parquet   per-image rows, one file per finished batch (atomic)
    RUN/per_image.parquet     the final table, rows in official job order
    RUN/summary.json          dataset-level values

A part file is written to a temporary name and renamed, so a crash never leaves a half part; a
rerun reads the parts, skips the jobs they hold and goes on. Finalisation sorts by job order, so an
interrupted-and-resumed run ends with exactly the table an uninterrupted run writes.

A run directory is recognised by ``run.json``'s ``"format": "stellar-run-v1"`` marker; ``--force`` only
ever deletes the files and folders named in :data:`PROJECT_FILES` of a recognised run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stellar.errors import StellarError
from stellar.fileio import atomic_write_bytes, atomic_write_text

RUN_FORMAT = "stellar-run-v1"
#: what the engine writes into a run directory (``--force`` deletes nothing else)
PROJECT_FILES = ("parts", "per_image.parquet", "summary.json", "reference.parquet", "run.json")


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


class ResultsStore:
    """Part files of one run directory (optionally one shard of it)."""

    def __init__(self, run_dir: str | Path, shard: str = "all"):
        self.run_dir = Path(run_dir)
        self.shard = shard
        self.parts_dir = self.run_dir / "parts" / shard

    def read_run_json(self) -> dict | None:
        """``run.json`` of the run directory, or ``None`` when there is none."""
        path = self.run_dir / "run.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return {}

    def foreign_content(self) -> list[str]:
        """Names of :data:`PROJECT_FILES` present although the folder is not a recognised run directory."""
        if not self.run_dir.is_dir():
            return []
        run = self.read_run_json()
        if run is not None and run.get("format") == RUN_FORMAT:
            return []
        return [name for name in PROJECT_FILES if (self.run_dir / name).exists()]

    def clear(self, everything: bool = True) -> None:
        """Forget the results of the run (``--force``): only files the project wrote, in a recognised run directory.

        ``everything=False`` (a shard) deletes only this shard's parts and the merged outputs, so the
        other shards of the run keep their work.
        """
        import shutil

        if self.foreign_content():
            raise StellarError(f"{self.run_dir} is not a Stellar-Bench run directory; refusing to delete anything there")
        if everything:
            names = PROJECT_FILES
        else:
            names = (f"parts/{self.shard}", f"parts/{self.shard}.done", f"parts/{self.shard}.counters.json", "per_image.parquet", "summary.json", "reference.parquet")
        for name in names:
            p = self.run_dir / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()

    def done_keys(self) -> dict[str, str]:
        """``{job name: row key}`` over every finished part of every shard (what resume compares)."""
        frame = self.read_parts()
        if not len(frame) or "row_key" not in frame:
            return {}
        return dict(zip(frame["name"], frame["row_key"]))

    def done_jobs(self) -> dict[str, str]:
        """``{job name: sha256 of the image it was evaluated on}`` over every finished part of every shard."""
        frame = self.read_parts()
        return dict(zip(frame["name"], frame["image_sha256"])) if len(frame) else {}

    def _next_index(self) -> int:
        if not self.parts_dir.is_dir():
            return 0
        nums = [int(p.stem) for p in self.parts_dir.glob("*.parquet") if p.stem.isdigit()]
        return max(nums) + 1 if nums else 0

    def write_part(self, rows: list[dict]) -> Path | None:
        if not rows:
            return None
        path = self.parts_dir / f"{self._next_index():06d}.parquet"
        atomic_write_parquet(path, pd.DataFrame(rows))
        return path

    def write_reference(self, rows: list[dict]) -> Path:
        """Per-photo reference features of this shard (``parts/<shard>/reference.parquet``)."""
        path = self.parts_dir / "reference.parquet"
        atomic_write_parquet(path, pd.DataFrame(rows))
        return path

    def merge_reference(self) -> Path | None:
        """Union of the shards' reference tables as ``reference.parquet`` (one row per photo)."""
        files = sorted((self.run_dir / "parts").glob("*/reference.parquet"))
        if not files:
            return None
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        frame = frame.drop_duplicates(["subject", "photo"], keep="last").sort_values(["subject", "photo"])
        path = self.run_dir / "reference.parquet"
        atomic_write_parquet(path, frame.reset_index(drop=True))
        return path

    def read_parts(self) -> pd.DataFrame:
        files = sorted(f for f in (self.run_dir / "parts").glob("*/*.parquet") if f.stem.isdigit())
        if not files:
            return pd.DataFrame()
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        # a job evaluated twice (two shards overlapping after a config change) keeps its last row
        return frame.drop_duplicates("name", keep="last").reset_index(drop=True)

    def write_json(self, name: str, obj: dict) -> Path:
        path = self.run_dir / name
        atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
        return path


class PartWriter:
    """Buffers rows and writes a part file every ``flush_rows`` rows or ``flush_seconds`` (issue 10.4).

    A 40,000-image run then has ~40 part files instead of 5,000. Each part is atomic, so a kill -9
    loses at most the rows still in the buffer (at most one part's work is redone on resume).
    """

    def __init__(self, store: ResultsStore, flush_rows: int = 1000, flush_seconds: float = 30.0):
        import time

        self.store, self.flush_rows, self.flush_seconds = store, max(1, flush_rows), flush_seconds
        self._clock = time.monotonic
        self._rows: list[dict] = []
        self._since = self._clock()
        self.parts_written = 0

    def add(self, rows: list[dict]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= self.flush_rows or self._clock() - self._since >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.store.write_part(self._rows)
            self.parts_written += 1
        self._rows = []
        self._since = self._clock()
