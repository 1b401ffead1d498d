"""Results of a run, written incrementally (DESIGN §5 "Results", §7.5).

::

    RUN/run.json              config, metrics, models, package version, fingerprints
    RUN/parts/<shard>/NNNNNN.parquet   per-image rows, one file per finished batch (atomic)
    RUN/per_image.parquet     the final table, rows in official job order
    RUN/summary.json          dataset-level values

A part file is written to a temporary name and renamed, so a crash never leaves a half part; a
rerun reads the parts, skips the jobs they hold and goes on. Finalisation sorts by job order, so an
interrupted-and-resumed run ends with exactly the table an uninterrupted run writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stellar.fileio import atomic_write_bytes, atomic_write_text


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

    def clear(self) -> None:
        """Forget every result of the run (``--force``)."""
        import shutil

        for name in ("parts", "per_image.parquet", "summary.json", "reference.parquet", "run.json"):
            p = self.run_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

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
