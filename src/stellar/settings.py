"""Process-wide settings read from the environment: where Stellar keeps its files, and the offline rule.

Shared by every layer that downloads something (the model registry, the demo dataset's photos), so
that the layers do not import each other for it (``data`` never imports ``models``):

- ``STELLAR_HOME`` (default ``~/.cache/stellar``): ``models/`` (verified weights), ``hf/`` (the
  ``huggingface_hub`` cache), ``downloads/`` (the demo's photo sources).
- Offline rule: ``STELLAR_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on means nothing touches
  the network; what is cached (or installed locally) is used, anything else fails at once with the
  command that provides it.
- ``STELLAR_WEIGHTS_DIR``: an optional folder of ``<card>/<file>`` local weights.

Read at call time (never at import), so tests and users can change them per process.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["OFFLINE_VARIABLES", "is_offline", "stellar_home", "weights_dir"]

OFFLINE_VARIABLES = ("STELLAR_OFFLINE", "HF_HUB_OFFLINE")
_TRUTHY = {"1", "true", "yes", "on"}


def stellar_home() -> Path:
    """``$STELLAR_HOME``, default ``~/.cache/stellar`` (not created here)."""
    return Path(os.environ.get("STELLAR_HOME") or "~/.cache/stellar").expanduser()


def is_offline() -> bool:
    """True when ``STELLAR_OFFLINE`` or ``HF_HUB_OFFLINE`` is 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in _TRUTHY for v in OFFLINE_VARIABLES)


def weights_dir() -> Path | None:
    """``$STELLAR_WEIGHTS_DIR`` when set (a folder of ``<card>/<file>``)."""
    value = os.environ.get("STELLAR_WEIGHTS_DIR")
    return Path(value).expanduser() if value else None
