"""Small synthetic studies for the study tests (no model, a few seconds)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from stellar.study.manifest import create_study
from stellar.study.simulate import write_synthetic_runs
from stellar.testing import make_synthetic_dataset

OFFSETS = {"x": 0.2, "y": 0.5, "z": 0.8}


def make_runs(tmp: Path, n_subjects: int = 4, offsets=OFFSETS, **kw) -> tuple[Path, list[Path]]:
    root = make_synthetic_dataset(tmp / "STELLAR", n_subjects, size=32)
    return root, write_synthetic_runs(root, tmp / "runs", offsets, **kw)


def make_study(tmp: Path, *, pairs: int = 36, raters_per_pair: int = 2, gold: float = 0.1, repeat: float = 0.1, aspects=None, **kw):
    root, runs = make_runs(tmp)
    m = create_study(root, [str(r) for r in runs], tmp / "study", pairs=pairs, raters_per_pair=raters_per_pair, gold=gold, repeat=repeat,
                     aspects=aspects, progress=False, **kw)  # fmt: skip
    return m, runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, port: int | None = None):
    """Serve ``app`` with uvicorn on loopback in a background thread; yields the base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
