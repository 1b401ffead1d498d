"""Small torch helpers shared by the torch face backends (MTCNN, FaceNet): device choice, weight files."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from stellar.errors import StellarError


class WeightsFileError(StellarError):
    """A weight file exists but cannot be used (unreadable, or not the expected state dict)."""

    def __init__(self, path: str | Path, reason: str, fix: str):
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{path}: {reason}\n  fix: {fix}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """:func:`stellar.device.resolve_device` as a ``torch.device``."""
    from stellar.device import resolve_device as resolve

    return torch.device(resolve(device))


def read_state_dict(path: str | Path, what: str, fix: str) -> dict[str, torch.Tensor]:
    """Load a ``torch.save``-d state dict on the CPU, safely (``weights_only=True``).

    ``what`` names the model in the error message; ``fix`` says how to get a good file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(path, f"{what} weight file not found", fix)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, EOF ...)
        raise WeightsFileError(path, f"cannot read {what} weights ({type(exc).__name__}: {exc})", fix) from exc
    # some checkpoints wrap the tensors: {"state_dict": {...}}
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(path, f"is not a {what} state dict (a mapping of names to tensors)", fix)
    return dict(obj)


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, what: str, fix: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a typed error naming the file on mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
        raise WeightsFileError(path, f"does not fit the {what} architecture: " + "; ".join(parts), fix)
    module.load_state_dict(state, strict=True)
