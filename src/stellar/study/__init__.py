"""Human study (DESIGN §7b): a blinded side-by-side judgement study run in a local web app.

- :mod:`~stellar.study.manifest` — ``stellar study create``: sampling and ``STUDY/study.json``;
- :mod:`~stellar.study.store` — ``STUDY/judgements.db`` (SQLite, WAL): raters, assignment, answers;
- :mod:`~stellar.study.app` — ``stellar study serve``: the Starlette app (rater and admin pages);
- :mod:`~stellar.study.export` — ``stellar study export | status``: the judgments JSONL of
  ``stellar agreement`` and the progress table;
- :mod:`~stellar.study.simulate` — synthetic runs and simulated raters (tests, benchmarks).

Like ``report``, the study reads only results and dataset files, never models. The web stack
(``starlette``, ``uvicorn``) is the ``study`` extra and is imported only by ``serve``.
"""

from stellar.study.export import export_judgements, judgement_records, status_text
from stellar.study.manifest import DEFAULT_ASPECTS, DEFAULT_QUESTIONS, Manifest, StudyError, create_study, load_manifest
from stellar.study.store import RequestError, StudyStore, open_store

__all__ = [
    "DEFAULT_ASPECTS",
    "DEFAULT_QUESTIONS",
    "Manifest",
    "RequestError",
    "StudyError",
    "StudyStore",
    "create_study",
    "export_judgements",
    "judgement_records",
    "load_manifest",
    "open_store",
    "status_text",
]
