"""Load and fault benchmark of `stellar study serve` (issue 15): 20 simulated raters, 2,000 judgements,
the server killed with SIGKILL and restarted twice; loopback only; stops by itself.

    PYTHONPATH=src python benchmarks/study_load.py [--raters 20] [--judgements 2000] [--kills 2] [--write-readme]

Prints the counts that must be zero (lost, duplicates, per-pair limit violations) and the latency of
successful requests (p50 / p95 per endpoint); ``--write-readme`` rewrites the `study-load` section of
benchmarks/README.md. Exits 1 if anything acknowledged was lost or duplicated, or a limit was broken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from stellar.study.loadtest import run_load_test  # noqa: E402


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def section(r: dict) -> str:
    lat = r["latency_ms"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = "\n".join(f"| {k} | {v['n']} | {_fmt(v['p50'])} | {_fmt(v['p95'])} | {_fmt(v['max'])} |" for k, v in lat.items())
    return f"""<!-- study-load:begin -->
## Human study server under load and SIGKILL (`benchmarks/study_load.py`)

Machine: {platform.machine()}, {cpus} logical CPU cores shared with other jobs (load average {load:.1f} when the section was written), Python {platform.python_version()}, {platform.system()}.
{r['raters']} simulated raters (threads, one HTTP client each) on loopback answered a synthetic study ({r['pairs']} pairs × {r['raters_per_pair']} raters, aspects {', '.join(r['aspects'])}, gold and repeat items) through the real server process (`stellar study serve`, uvicorn, one process), which was killed with SIGKILL {r['kills']} times and restarted; clients retried unanswered requests with the same submission id.

| result | value |
|---|---|
| items acknowledged (each = one answer per aspect) | {r['acknowledged']} |
| committed in judgements.db | {r['committed']} |
| acknowledged but lost | **{r['lost']}** |
| duplicate (rater, item, aspect) answers | **{r['duplicates']}** |
| per-pair limit / repeat / gold violations | **{len(r['limit_violations'])}** |
| retried requests (server down) | {sum(r['retries'].values())} |
| server restarts: time until it answered again (s) | {', '.join(f'{x:.1f}' for x in r['startup_s'][1:])} |
| wall time of the rating phase (s) | {r['run_s']:.1f} |

Latency of successful requests (ms; `answer` commits with `synchronous=FULL` and then assigns the next item):

| endpoint | requests | p50 | p95 | max |
|---|---|---|---|---|
{rows}

The p95 includes requests queued behind SQLite's single writer while 20 raters submit at once, and the
first requests after each restart; the cores were shared, so treat the numbers as an upper bound.
<!-- study-load:end -->
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--judgements", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="study-load-") as tmp:
        r = run_load_test(args.workdir or Path(tmp), raters=args.raters, judgements=args.judgements, kills=args.kills)
    print(json.dumps(r, indent=1))
    if args.write_readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        block = section(r)
        pattern = re.compile(r"<!-- study-load:begin -->.*?<!-- study-load:end -->\n", re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
        readme.write_text(text)
        print(f"updated {readme}")
    bad = r["lost"] or r["duplicates"] or r["limit_violations"] or r["errors"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
