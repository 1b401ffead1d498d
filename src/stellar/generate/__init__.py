"""Generation: the :class:`Method` protocol, the sanity methods and the generated-set writer.

>>> from stellar.generate import create_method, write_generated_set   # doctest: +SKIP
>>> method = create_method("noise", size=256)                          # doctest: +SKIP
>>> write_generated_set(method, ds.jobs("test"), "out/noise", dataset=ds)  # doctest: +SKIP
"""

from stellar.generate.base import (
    METHODS,
    Method,
    MethodBase,
    UnknownMethodError,
    create_method,
    job_seed,
    list_methods,
    resolve_device,
)
from stellar.generate.writer import WriteSummary, write_generated_set

__all__ = [
    "METHODS",
    "Method",
    "MethodBase",
    "UnknownMethodError",
    "WriteSummary",
    "create_method",
    "job_seed",
    "list_methods",
    "resolve_device",
    "write_generated_set",
]
