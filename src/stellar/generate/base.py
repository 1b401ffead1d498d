"""The ``Method`` protocol every generator implements, per-job seeds, devices and the method registry.

A *method* turns jobs (subject photo + prompt, :class:`~stellar.data.dataset.Job`) into images::

    method = create_method("paste", size=512)
    method.setup(resolve_device(None))            # once: load weights, move to the device
    method.prepare_subject(subject)               # optional, once per subject (e.g. encode its photos)
    images = method.generate(jobs, seed=0)        # one PIL image per job, same order

The harness (:func:`stellar.generate.writer.write_generated_set`) drives these calls and writes
the official generated-set layout. Randomness is per job, never per batch: :func:`job_seed`
derives a job's seed from (base seed, subject, photo, prompt index, seed index), so an image does
not depend on which other jobs shared its batch, and resuming an interrupted run reproduces it.

The registry maps names to ``"module:factory"`` strings, imported only when a method is created
(no import side effects; adding a method = one module + one entry).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from PIL import Image

from stellar.data.dataset import Job, Subject
from stellar.device import resolve_device  # noqa: F401 - re-exported for methods
from stellar.errors import StellarError


@runtime_checkable
class Method(Protocol):
    """What a generation method provides. ``prepare_subject`` and ``settings`` are optional.

    Attributes:
        name: registry name, written into every sidecar (``method``).
    """

    name: str

    def setup(self, device: str) -> None:
        """Load models / weights and move them to ``device`` ("cpu", "cuda", "cuda:1", ...). Called once."""
        ...

    def generate(self, jobs: Sequence[Job], seed: int) -> list[Image.Image]:
        """One image per job, in order. ``seed`` is the run's base seed; see :func:`job_seed`."""
        ...


class MethodBase:
    """Convenience base: no-op ``setup`` / ``prepare_subject``, ``settings`` from ``__init__`` arguments."""

    name: str = ""

    def __init__(self, **settings: Any):
        self._settings = dict(settings)

    @property
    def settings(self) -> dict[str, Any]:
        """JSON-able settings that determine the output (written to sidecars; a change means regenerate)."""
        return dict(self._settings)

    def setup(self, device: str) -> None:  # noqa: D401 - protocol method
        self.device = device

    def prepare_subject(self, subject: Subject) -> None:
        return None

    def generate(self, jobs: Sequence[Job], seed: int) -> list[Image.Image]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"{type(self).__name__}({args})"


def method_settings(method: Method) -> dict[str, Any]:
    """A method's ``settings`` mapping, ``{}`` when it declares none."""
    settings = getattr(method, "settings", None)
    return dict(settings) if isinstance(settings, Mapping) else {}


def prepare_subject(method: Method, subject: Subject) -> None:
    """Call ``method.prepare_subject(subject)`` when the method has it."""
    hook = getattr(method, "prepare_subject", None)
    if callable(hook):
        hook(subject)


def job_seed(seed: int, job: Job) -> int:
    """Stable 63-bit seed of ``job`` under base ``seed``: the first 8 bytes of
    sha256("seed|subject|photo|prompt index|seed index"), top bit cleared.

    Independent of batch composition and Python's hash randomisation; different for every job.
    """
    key = f"{int(seed)}|{job.subject}|{job.photo.index}|{job.prompt.index}|{job.seed}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


class UnknownMethodError(StellarError):
    """A method name that is not in the registry."""

    def __init__(self, name: str, valid: Sequence[str]):
        self.name = name
        close = difflib.get_close_matches(name, list(valid), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown method {name!r}.{hint}\n  fix: use one of: {', '.join(valid)}")


#: name -> "module:factory". Factories take keyword settings and return a :class:`Method`.
METHODS: dict[str, str] = {
    "copy": "stellar.generate.baselines:CopyMethod",
    "noise": "stellar.generate.baselines:NoiseMethod",
    "paste": "stellar.generate.baselines:PasteMethod",
    "stellarnet": "stellar.generate.stellarnet.method:StellarNetMethod",
}


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(METHODS)


def create_method(name: str, **settings: Any) -> Method:
    """Instantiate the registered method ``name`` with ``settings``.

    Raises:
        UnknownMethodError: ``name`` is not registered (the message lists the valid names).
        StellarError: a setting the method does not take (the message lists the ones it takes).
    """
    import inspect

    if name not in METHODS:
        raise UnknownMethodError(name, list_methods())
    module, _, attr = METHODS[name].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        takes = [k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k != "self"]
        unknown = sorted(set(settings) - set(takes))
        if unknown:
            raise StellarError(f"method {name!r} does not take setting(s) {', '.join(unknown)}\n  fix: use {', '.join(takes) or 'no settings'}")
    return factory(**settings)
