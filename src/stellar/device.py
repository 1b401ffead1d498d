"""Where and how models run: the one device rule and the one CPU-thread rule.

Device: ``None`` / ``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``. Every model-backed
component takes ``device`` as a parameter and resolves it here (never a ``cuda`` default); anything
else (``"cpu"``, ``"cuda:1"``, ``"mps"``) is passed through unchanged.

Threads: :func:`configure_threads` sets torch's intra-op CPU threads for the process; the CLI's
``--threads`` (every model-backed command) calls it. Nothing here runs at import.
"""

from __future__ import annotations

import os

#: What ``configure_threads("auto")`` picks when ``OMP_NUM_THREADS`` is not set (see its docstring).
AUTO_THREADS = 1


def resolve_device(device: object = None) -> str:
    """``device`` as a string; ``None``/``"auto"`` -> ``"cuda"`` if available, else ``"cpu"`` (also without torch)."""
    if device is not None and str(device) != "auto":
        return str(device)
    try:
        import torch
    except ImportError:  # no torch: nothing could use a GPU anyway
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def configure_threads(threads: int | str | None = "auto") -> int:
    """Set torch's intra-op CPU threads (``torch.set_num_threads``) and return the number in effect.

    Args:
        threads: a positive integer (or its string, as the CLI passes it); ``"auto"``; or ``None``
            to leave torch's setting alone.

    ``"auto"``: ``OMP_NUM_THREADS`` when it is set (a user's or a launcher's choice — ``torchrun``
    sets 1 per process — is kept), else :data:`AUTO_THREADS` = 1. Chosen by measurement
    (benchmarks/README.md, "MTCNN before/after"): the evaluation's CPU work is MTCNN's many small
    per-level/per-box operations, dlib/FaceNet on single face chips and Python glue, where a
    parallel region costs more than it saves. On the project's 2-core machine shared with other
    jobs, the offline preset with 1 thread instead of torch's default 2 (one per core) used
    1.6-3.9× less CPU per image and was 1.5-3.0× faster in median wall time (3 alternated rounds,
    512² and 1024² demo photos); an independent profile found per-box regions 5-17× slower with 2
    threads and whole runs 2.6× faster with ``OMP_NUM_THREADS=1``. To use more cores, run more
    processes (``torchrun --nproc_per_node N`` shards); ``--threads N`` may pay on an idle
    many-core machine where one large model on the CPU dominates (not measured here).

    Results do not depend on the thread count beyond float reduction order.

    Raises:
        StellarError: ``threads`` is not ``"auto"``, ``None`` or a positive integer.
    """
    from stellar.errors import StellarError

    try:
        import torch
    except ImportError:  # no torch: no intra-op pool to size (the data-only install)
        torch = None
    if threads is None:
        return torch.get_num_threads() if torch is not None else 1
    text = str(threads).strip().lower()
    if text == "auto":
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        n = int(env) if env.isdigit() and int(env) > 0 else AUTO_THREADS
    else:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1 or isinstance(threads, bool):
            raise StellarError(f"--threads {threads!r}: expected 'auto' or a positive integer (e.g. --threads 1)")
    if torch is None:
        return n
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
