"""The one device rule: ``None`` / ``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

Every model-backed component takes ``device`` as a parameter and resolves it here (never a ``cuda``
default); anything else (``"cpu"``, ``"cuda:1"``, ``"mps"``) is passed through unchanged.
"""

from __future__ import annotations


def resolve_device(device: object = None) -> str:
    """``device`` as a string; ``None``/``"auto"`` -> ``"cuda"`` if available, else ``"cpu"`` (also without torch)."""
    if device is not None and str(device) != "auto":
        return str(device)
    try:
        import torch
    except ImportError:  # no torch: nothing could use a GPU anyway
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
