"""Judgements out of a study: the JSONL of ``stellar agreement`` and the terminal status table.

The file (judgments format version 1) starts with the header ``{"format": "stellar-judgments",
"version": 1, ...}``, then holds one pairwise record per (rater, item, aspect) answer still active
(undone answers are history, not judgements), in commit order::

    {"rater": "r1", "job": "003-0-07", "a": "copy", "b": "paste", "aspect": "identity",
     "choice": "a", "time_ms": 5120, "item": "q00041"}

``a`` is the run shown on the left, ``b`` the run on the right, and ``choice`` refers to them
(``"a" | "b" | "tie"``). ``time_ms`` is the time the rater spent on the whole item (the same for its
aspects). ``item`` is the judged pair's id — the unit the agreement bootstrap resamples. Extra fields:

- ``"repeat": true`` — the planned second showing of a pair to the same rater (left/right swapped),
  the intra-rater consistency check; its ``item`` is the original pair's, so both judgements fall in
  the same bootstrap unit. ``--no-repeats`` leaves these records out.
- ``"gold": {"expected": "a"|"b", "correct": bool}`` on the scored aspect of an attention check, whose
  ``a``/``b`` are ``reference`` (a real photo of the subject), ``other-subject`` or the ``noise`` run;
  the other aspects of a gold item carry ``"gold": {"expected": null}``. `stellar agreement` leaves
  every record with ``gold`` out of its statistics (counted); ``--no-gold`` leaves them out here.

``--drop-flagged`` leaves out every record of raters whose gold accuracy is below the threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

from stellar.study.store import StudyStore

#: The judgments file format read by ``stellar agreement`` (stellar.report.agreement).
JUDGMENTS_FORMAT = "stellar-judgments"
JUDGMENTS_VERSION = 1


def judgement_records(store: StudyStore, *, drop_flagged: bool = False, gold: bool = True, repeats: bool = True, gold_threshold: float | None = None) -> list[dict]:
    """The study's judgements as pairwise records (module docstring)."""
    flagged = set(store.summary(gold_threshold)["flagged"]) if drop_flagged else set()
    out = []
    for a in store.answers():
        if a["rater"] in flagged:
            continue
        it = store.items[a["item"]]
        if (it["type"] == "gold" and not gold) or (it["type"] == "repeat" and not repeats):
            continue
        rec = {"rater": a["rater"], "job": it["job"], "a": it["a"]["run"], "b": it["b"]["run"], "aspect": a["aspect"], "choice": a["choice"]}
        if a["time_ms"] is not None:
            rec["time_ms"] = int(a["time_ms"])
        rec["item"] = it["repeat_of"] if it["type"] == "repeat" else it["id"]
        if it["type"] == "repeat":
            rec["repeat"] = True
        if it["type"] == "gold":
            g = it["gold"]
            rec["gold"] = {"expected": g["answer"], "correct": a["choice"] == g["answer"]} if a["aspect"] == g["aspect"] else {"expected": None}
        out.append(rec)
    return out


def export_judgements(store: StudyStore, out: str | Path, **kwargs) -> int:
    """Write :func:`judgement_records` to ``out`` as JSONL (atomically); returns the record count."""
    from stellar.fileio import atomic_write_text

    records = judgement_records(store, **kwargs)
    header = {"format": JUDGMENTS_FORMAT, "version": JUDGMENTS_VERSION, "source": "stellar study export", "study": str(store.manifest.folder.resolve()),
              "aspects": store.aspects, "runs": [r["name"] for r in store.manifest.data["runs"]]}  # fmt: skip
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [header, *records]))
    return len(records)


def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def status_text(store: StudyStore, gold_threshold: float | None = None) -> str:
    """The admin page's numbers as plain text (``stellar study status``)."""
    s = store.summary(gold_threshold)
    lines = [
        f"study {store.manifest.folder}: {s['pairs']} pairs × {s['raters_per_pair']} raters = {s['judgements_planned']} judgements planned",
        f"collected {s['judgements']} ({100 * s['judgements'] / max(1, s['judgements_planned']):.1f} %); pairs complete {s['pairs_complete']}/{s['pairs']}, started {s['pairs_started']}",
        "answers per aspect: " + ", ".join(f"{a} {n}" for a, n in s["answers_per_aspect"].items()),
        "",
    ]
    header = ["rater", "items", *store.aspects, "gold", "gold acc", "repeat cons.", "median s", "flag"]
    rows = [header]
    for r in s["raters"]:
        rows.append([r["rater"], str(r["items"]), *[str(r["per_aspect"][a]) for a in store.aspects],
                     f"{r['gold_correct']}/{r['gold_n']}", _f(r["gold_accuracy"], ".2f"), _f(r["repeat_consistency"], ".2f"),
                     _f(r["median_time_s"], ".1f"), "FLAGGED" if r["flagged"] else ""])  # fmt: skip
    if len(rows) == 1:
        lines.append("no raters yet (`stellar study raters add STUDY NAME`, or open the page and enter an id)")
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(f"flagged (gold accuracy < {s['gold_threshold']:.2f}): {', '.join(s['flagged']) or 'none'}")
    return "\n".join(lines) + "\n"
