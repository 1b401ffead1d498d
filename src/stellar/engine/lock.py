"""One writer per run directory (DESIGN §7.4, issue 9.13).

``RUN/lock-<shard>.json`` is created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file
systems) and holds ``{"pid", "host", "started"}``. A second ``evaluate`` on the same ``--out`` and the
same shard refuses, naming the holder — or, with ``wait=True`` (``--wait``), polls until the holder
releases it. Shards lock their own name (``shard-i-of-n``), so shards of one run keep working side by
side; the finalisation takes ``lock-finalize.json`` so two shards finishing together merge once.

A lock left by a process that died (kill -9) on this host is stale: its pid no longer exists, and the
next process takes it over, saying so. A lock held from another host is never broken automatically
(the fix names the file to delete).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from stellar.errors import StellarError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunLock:
    """``with RunLock(run_dir, "all"): ...`` — exclusive writer of one shard of a run directory."""

    def __init__(self, run_dir: str | Path, name: str, *, wait: bool = False, poll_s: float = 2.0, timeout_s: float | None = None):
        self.path = Path(run_dir) / f"lock-{name}.json"
        self.wait = wait
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.held = False

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
        return True

    def _stale(self, info: dict | None) -> bool:
        if info is None:  # unreadable: being written right now, or garbage; only stale if old
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return False
        return info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1)))

    def acquire(self) -> None:
        start = time.monotonic()
        while not self._try():
            info = self.holder()
            if self._stale(info):
                print(f"note: {self.path}: taking over the lock of a process that no longer runs ({info})", file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            who = f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}" if info else "another process"
            if not self.wait or (self.timeout_s is not None and time.monotonic() - start > self.timeout_s):
                raise StellarError(
                    f"{self.path.parent}: another evaluation is writing this run directory ({who}).\n"
                    f"  fix: wait for it (--wait), choose another --out, or delete {self.path} if that process is gone"
                )
            time.sleep(self.poll_s)
        self.held = True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
