"""Job records for external methods: ``stellar jobs export`` (JSONL or CSV).

One record per job, everything a generator needs and nothing it must look up::

    name, subject, split, kind, photo, prompt_index, seed, input_path (absolute), mask_path
    (absolute or ""), template (with {}), prompt (filled with the subject token), detectables,
    categories, output (expected file name NAME.png)

``seed`` is the job's seed index (0..seeds-1); a method derives its RNG seed from its own base seed
and this index. In CSV, list fields are JSON arrays so that commas inside object names survive.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Iterable, Iterator, TextIO

from stellar.data.dataset import Job

FIELDS = (
    "name", "subject", "split", "kind", "photo", "prompt_index", "seed", "input_path", "mask_path",
    "template", "prompt", "detectables", "categories", "output",
)  # fmt: skip


def job_record(job: Job, subject_token: str = "a person") -> dict:
    return {
        "name": job.name,
        "subject": job.subject,
        "split": job.split,
        "kind": job.kind,
        "photo": job.photo.index,
        "prompt_index": job.prompt.index,
        "seed": job.seed,
        "input_path": str(job.photo.path.resolve()),
        "mask_path": str(job.photo.mask_path.resolve()) if job.photo.mask_path else "",
        "template": job.prompt.template,
        "prompt": job.prompt.fill(subject_token),
        "detectables": list(job.prompt.detectables),
        "categories": list(job.prompt.categories),
        "output": f"{job.name}.png",
    }


def job_records(jobs: Iterable[Job], subject_token: str = "a person") -> Iterator[dict]:
    for job in jobs:
        yield job_record(job, subject_token)


def write_records(records: Iterable[dict], out: TextIO, fmt: str = "jsonl") -> int:
    """Write records as ``jsonl`` or ``csv``; returns how many were written."""
    n = 0
    if fmt == "jsonl":
        for rec in records:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for rec in records:
            row = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v for k, v in rec.items()}
            writer.writerow(row)
            n += 1
    else:
        raise ValueError(f"unknown format {fmt!r}; use jsonl or csv")
    return n


def read_records(text: str, fmt: str = "jsonl") -> list[dict]:
    """Inverse of :func:`write_records` (tests and tools read exports back with it)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for key in ("detectables", "categories"):
            row[key] = json.loads(row[key])
        for key in ("photo", "prompt_index", "seed"):
            row[key] = int(row[key])
    return rows
