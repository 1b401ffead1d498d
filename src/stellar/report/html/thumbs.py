"""Thumbnails of the report's images: made in parallel, cached by content hash.

A thumbnail is named after the sha256 of the image file's bytes and the thumbnail size
(``thumbs/ab/abcdef…-256.jpg``), so identical images share one file (the ``copy`` sanity method
reproduces the input photos) and a rebuild only makes thumbnails of new or changed images. A stat
cache (``thumbs/index.json``: path → size, mtime, sha256, width, height) spares even the re-hashing
of unchanged files, so an incremental rebuild reads only the files whose stat changed.

An image that no longer exists, or cannot be decoded now, gets no thumbnail: the page shows a
placeholder and the builder lists it in its warnings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tqdm.auto import tqdm

from stellar.fileio import atomic_write_bytes, json_bytes

#: Characters of the sha256 kept in thumbnail names and in the page data (96 bits).
HASH_CHARS = 24
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class ImageInfo:
    """What the page needs to know about one source image."""

    sha256: str | None  # None: the file is missing or unreadable now
    width: int | None
    height: int | None
    error: str | None = None  # why there is no thumbnail

    @property
    def thumb_id(self) -> str | None:
        return None if self.sha256 is None or self.error else self.sha256[:HASH_CHARS]


def thumb_relpath(thumb_id: str, size: int) -> str:
    """Path of a thumbnail inside the report folder (the page builds the same path in JS)."""
    return f"thumbs/{thumb_id[:2]}/{thumb_id}-{size}.jpg"


def _make_one(task: tuple[str, str, int, str | None]) -> tuple[str, str | None, int | None, int | None, str | None]:
    """Worker: hash one file and make its thumbnail unless that thumbnail exists (pure, picklable)."""
    src, out_dir, size, known_sha = task
    from PIL import Image

    try:
        data = Path(src).read_bytes()
    except FileNotFoundError:
        return src, None, None, None, "file not found (moved or deleted since evaluation?)"
    except OSError as exc:
        return src, None, None, None, f"cannot read: {exc}"
    sha = known_sha or hashlib.sha256(data).hexdigest()
    dest = Path(out_dir) / thumb_relpath(sha[:HASH_CHARS], size)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if not dest.is_file():
                im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale directly
                rgb = im.convert("RGB")
                rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                rgb.save(buf, "JPEG", quality=85, optimize=True)
                atomic_write_bytes(dest, buf.getvalue())
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-image outcome
        return src, sha, None, None, f"cannot decode: {type(exc).__name__}: {exc}"
    return src, sha, width, height, None


def make_thumbnails(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    size: int = 256,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, ImageInfo]:
    """Thumbnails of ``paths`` under ``out_dir/thumbs`` (parallel, incremental); path → :class:`ImageInfo`.

    Args:
        paths: source images (duplicates are handled once).
        out_dir: the report folder.
        size: longest side of a thumbnail in pixels.
        workers: worker processes (default: the CPU count; ``0`` or ``1`` = in this process).
        progress: a progress bar.
    """
    out_dir = Path(out_dir)
    index_path = out_dir / "thumbs" / INDEX_FILE
    try:
        cache: dict = json.loads(index_path.read_text()) if index_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}  # a damaged stat cache only costs re-hashing
    result: dict[str, ImageInfo] = {}
    todo: list[tuple[str, str, int, str | None]] = []
    for p in dict.fromkeys(str(p) for p in paths):
        try:
            st = os.stat(p)
        except OSError:
            result[p] = ImageInfo(None, None, None, "file not found (moved or deleted since evaluation?)")
            continue
        hit = cache.get(p)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            sha, w, h, err = hit[2], hit[3], hit[4], hit[5] if len(hit) > 5 else None
            if err is not None:  # undecodable before and unchanged since: no need to try again
                result[p] = ImageInfo(sha, None, None, err)
                continue
            if (out_dir / thumb_relpath(sha[:HASH_CHARS], size)).is_file():
                result[p] = ImageInfo(sha, w, h)
                continue
            todo.append((p, str(out_dir), size, sha))
        else:
            todo.append((p, str(out_dir), size, None))
    workers = (os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=len(todo), desc="thumbnails", unit="img", disable=not progress or not todo)
    if workers > 1 and len(todo) > 32:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outputs: Iterable = pool.map(_make_one, todo, chunksize=max(1, min(256, len(todo) // (workers * 8))))
            outputs = list(_tick(outputs, bar))
    else:
        outputs = list(_tick(map(_make_one, todo), bar))
    bar.close()
    for src, sha, w, h, err in outputs:
        result[src] = ImageInfo(sha, w, h, err)
        if sha is not None:  # decoded, or read but undecodable (cached too: the file's stat keys it)
            st = os.stat(src)
            cache[src] = [st.st_size, st.st_mtime_ns, sha, w, h, err]
        else:
            cache.pop(src, None)
    if todo:
        atomic_write_bytes(index_path, json_bytes(cache, indent=0))
    return result


def _tick(it: Iterable, bar) -> Iterable:
    for x in it:
        bar.update(1)
        yield x


def unused_thumbnails(out_dir: str | Path, keep: Sequence[str], size: int) -> list[Path]:
    """Thumbnail files of the report folder that no image of this build uses (left from older builds)."""
    keep_names = {f"{t}-{size}.jpg" for t in keep}
    out = []
    root = Path(out_dir) / "thumbs"
    if not root.is_dir():
        return out
    for sub in os.scandir(root):
        if sub.is_dir():
            out += [Path(e.path) for e in os.scandir(sub.path) if e.name.endswith(".jpg") and e.name not in keep_names]
    return out
