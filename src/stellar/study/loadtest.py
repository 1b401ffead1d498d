"""Load and fault test of ``stellar study serve`` (loopback only, bounded, stops by itself).

:func:`run_load_test` builds a synthetic study, starts the real server as a subprocess
(``python -m stellar.cli study serve``), lets ``raters`` simulated raters (threads with their own
HTTP client) answer until ``judgements`` items are acknowledged, and meanwhile kills the server with
SIGKILL ``kills`` times, restarting it on the same port. Raters behave like the page: a request that
gets no answer is retried with the same ``submission`` id until acknowledged.

It then reads ``judgements.db`` and counts what must be zero:

- ``lost`` — acknowledged answers (rater, item, aspect, choice) missing from the database;
- ``duplicates`` — (rater, item, aspect) answered more than once;
- ``limit_violations`` — pairs answered or held by more distinct raters than planned, repeats
  answered by a rater who had not answered the original, gold items answered twice by a rater.

and reports the latency of the successful requests (p50 / p95, ms) per endpoint. Used by
``benchmarks/study_load.py`` (full size) and ``tests/test_study_load.py`` (small).
"""

from __future__ import annotations

import collections
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, study: Path, port: int, log: Path):
        self.study, self.port, self.log = study, port, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> float:
        import httpx

        t0 = time.perf_counter()
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "stellar.cli", "study", "serve", str(self.study), "--host", "127.0.0.1", "--port", str(self.port), "--no-verify"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/study", timeout=1.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start within {timeout:.0f} s; see {self.log}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_load_test(workdir: str | Path, *, raters: int = 20, judgements: int = 2000, kills: int = 2, raters_per_pair: int = 3,
                  aspects: str = "overall,identity,quality", gold: float = 0.02, repeat: float = 0.02, seed: int = 0,
                  timeout_s: float = 900.0) -> dict:  # fmt: skip
    """Run the load/fault test in ``workdir`` (created); returns counts and latencies (module docstring)."""
    import httpx

    from stellar.study.manifest import create_study
    from stellar.study.simulate import hidden_quality, simulated_answer, write_synthetic_runs
    from stellar.study.store import StudyStore
    from stellar.testing import make_synthetic_dataset

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_setup = time.perf_counter()
    pairs = math.ceil(judgements * 1.05 / raters_per_pair)
    jobs_needed = math.ceil(pairs / 3) + 1
    n_subjects = max(2, math.ceil(jobs_needed / 12))  # 2 photos × (4 T + 2 H) prompts per subject
    root = make_synthetic_dataset(workdir / "STELLAR", n_subjects, size=24, seed=seed)
    runs = write_synthetic_runs(root, workdir / "runs", {"x": 0.2, "y": 0.5, "z": 0.8}, size=16, seed=seed)
    manifest = create_study(root, [str(r) for r in runs], workdir / "study", pairs=pairs, raters_per_pair=raters_per_pair, aspects=aspects,
                            gold=gold, repeat=repeat, seed=seed, progress=False)  # fmt: skip
    quality = hidden_quality(runs)
    items = manifest.item_map()
    setup_s = time.perf_counter() - t_setup

    port = _free_port()
    server = _Server(manifest.folder, port, workdir / "server.log")
    startups = [server.start()]
    base = f"http://127.0.0.1:{port}"
    lock = threading.Lock()
    acked: list[tuple[str, str, dict]] = []
    latencies: dict[str, list[float]] = {"next": [], "answer": [], "login": []}
    retries = collections.Counter()
    stop = threading.Event()
    deadline = time.time() + timeout_s
    errors: list[str] = []

    def call(client: httpx.Client, kind: str, method: str, path: str, **kw):
        """One request, retried (same body) until the server answers; returns the response."""
        while not stop.is_set() or kind == "answer":
            if time.time() > deadline:
                raise TimeoutError("load test exceeded its time limit")
            t0 = time.perf_counter()
            try:
                r = client.request(method, path, **kw)
            except httpx.TransportError:
                with lock:
                    retries[kind] += 1
                time.sleep(0.05)
                continue
            if r.status_code >= 500:
                with lock:
                    retries[kind] += 1
                time.sleep(0.05)
                continue
            with lock:
                latencies[kind].append((time.perf_counter() - t0) * 1000)
            return r
        return None

    def rater(name: str, k: int) -> None:
        rng = np.random.default_rng([seed, k])
        try:
            with httpx.Client(base_url=base, timeout=10.0) as client:
                r = call(client, "login", "POST", "/api/login", json={"rater": name})
                if r is None:
                    return
                headers = {"Authorization": f"Bearer {r.json()['token']}"}
                while not stop.is_set():
                    r = call(client, "next", "GET", "/api/next", headers=headers)
                    if r is None:
                        return
                    item = r.json()["item"]
                    if item is None:
                        return
                    answers = simulated_answer(items[item["id"]], manifest.aspect_ids, quality, rng, flip=0.1, tie=0.05)
                    body = {"item": item["id"], "answers": answers, "time_ms": int(rng.integers(500, 5000)), "submission": uuid.uuid4().hex}
                    r = call(client, "answer", "POST", "/api/answer", json=body, headers=headers)
                    if r.status_code != 200:
                        raise RuntimeError(f"{name}: answer refused {r.status_code} {r.text}")
                    with lock:
                        acked.append((name, item["id"], answers))
                        if len(acked) >= judgements:
                            stop.set()
        except Exception as exc:  # reported in the result, never swallowed
            with lock:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")

    t_run = time.perf_counter()
    threads = [threading.Thread(target=rater, args=(f"rater{k:02d}", k), daemon=True) for k in range(raters)]
    for t in threads:
        t.start()
    killed = 0
    downtime = []
    while any(t.is_alive() for t in threads) and time.time() < deadline:
        with lock:
            n = len(acked)
        if killed < kills and n >= judgements * (killed + 1) / (kills + 1):
            t0 = time.perf_counter()
            server.kill()
            killed += 1
            time.sleep(0.2)
            startups.append(server.start())
            downtime.append(time.perf_counter() - t0)
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    run_s = time.perf_counter() - t_run
    server.stop()

    # ---- verification against the database
    store = StudyStore(manifest)
    db = store._db()
    active = {(r, i, a): c for r, i, a, c in db.execute("SELECT rater, item, aspect, choice FROM answers WHERE active = 1")}
    lost = sum(1 for r, i, ans in acked for a, c in ans.items() if active.get((r, i, a)) != c)
    duplicates = db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM answers GROUP BY rater, item, aspect HAVING COUNT(*) > 1)").fetchone()[0]
    committed_items = {(r, i) for r, i, _ in active}
    acked_items = {(r, i) for r, i, _ in acked}
    violations = []
    answered_by = collections.defaultdict(set)
    held_by = collections.defaultdict(set)
    for r, i, done, released in store.assignment_rows():
        if not released:
            held_by[i].add(r)
        if done:
            answered_by[i].add(r)
    for i, it in items.items():
        if it["type"] == "pair" and len(held_by[i]) > raters_per_pair:
            violations.append(f"{i}: {len(held_by[i])} raters > {raters_per_pair}")
        if it["type"] == "repeat" and not answered_by[i] <= answered_by[it["repeat_of"]]:
            violations.append(f"{i}: repeat answered by a rater who did not answer {it['repeat_of']}")
    per_rater_item = collections.Counter((r, i) for r, i, _ in acked)
    violations += [f"{r} acknowledged {i} {n} times" for (r, i), n in per_rater_item.items() if n > 1]
    store.close()
    return {
        "raters": raters,
        "target": judgements,
        "acknowledged": len(acked),
        "committed": len(committed_items),
        "committed_not_acknowledged": len(committed_items - acked_items),
        "lost": lost,
        "duplicates": int(duplicates),
        "limit_violations": violations,
        "kills": killed,
        "errors": errors,
        "retries": dict(retries),
        "pairs": pairs,
        "aspects": manifest.aspect_ids,
        "raters_per_pair": raters_per_pair,
        "setup_s": setup_s,
        "run_s": run_s,
        "startup_s": startups,
        "downtime_s": downtime,
        "latency_ms": {k: {"n": len(v), "p50": _percentile(v, 50), "p95": _percentile(v, 95), "max": max(v) if v else None} for k, v in latencies.items()},
    }
