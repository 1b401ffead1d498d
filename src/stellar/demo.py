"""``stellar demo`` (what ``make demo`` runs): the pipeline end to end on real photos, offline once cached.

1. Materialise the real-photo demo dataset (:mod:`stellar.data.samples`: six people, eight photos,
   twelve Stellar-T + three Stellar-H prompts each) under ``OUT/dataset``. The first run fetches
   the ``face_recognition==1.3.0`` sdist with pip into ``$STELLAR_HOME/downloads``; later runs
   are offline.
2. Generate the test jobs with the sanity methods ``copy``, ``noise`` and ``paste``
   (:mod:`stellar.generate.baselines`) into ``OUT/generated/<method>`` (PNG + JSON sidecars).
3. Check: ``StellarDataset.check()`` and ``GeneratedSet(...).problems(decode_images=True)``.
4. Evaluate each set with the ``offline`` face preset (MTCNN + dlib ResNet, weights from PyPI
   packages) into ``OUT/runs/<method>`` — IPS, SIS, APS; no CLIP model is available offline, so
   CLIP-T/CLIP-I are skipped and the exclusion rule is reported as *not applied* — and print the
   leaderboard (``stellar report``); build the browsable HTML report into ``OUT/report/`` and print
   the path of its ``index.html`` (``stellar report … --format html``).
5. Print a summary; exit status 0 when nothing is an error, 1 otherwise.

Every step is idempotent: a rerun rewrites nothing and takes a few seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from stellar.commands._common import print_problems
from stellar.data.problems import Problem, count

DEMO_METHODS = ("copy", "noise", "paste")


def run_demo(
    out: Path,
    *,
    size: int = 512,
    methods: Sequence[str] = DEMO_METHODS,
    seed: int = 0,
    cache_dir: Path | None = None,
    offline: bool | None = None,
    include_face_recognition: bool = True,
    progress: bool = True,
    evaluate: bool = True,
    faces: str = "offline",
) -> int:
    """Build the demo dataset and generated sets under ``out``, check them, print a summary.

    Args:
        out: output folder (``dataset/`` and ``generated/<method>/`` are written inside).
        size: side of the generated square images.
        methods: registered method names to run.
        seed: base seed of the generated sets.
        cache_dir: download cache of the face_recognition sdist (default ``$STELLAR_HOME/downloads``).
        offline: never fetch (default: ``STELLAR_OFFLINE`` / ``HF_HUB_OFFLINE`` set); the sdist
            must then be cached.
        include_face_recognition: ``False`` leaves out the Obama/Biden photos of the sdist (four
            subjects remain); only when asked, never as a silent fallback.
        progress: progress bars.
        evaluate: evaluate the generated sets and print the leaderboard.
        faces: face preset of the evaluation (``offline`` needs no download).

    Returns:
        0 when no check reported an error, else 1.

    Raises:
        StellarError: the sdist cannot be fetched / verified, or a method name is unknown.
    """
    from stellar.data.dataset import StellarDataset
    from stellar.data.generated import GeneratedSet
    from stellar.data.samples import demo_identities, materialize_demo_dataset
    from stellar.generate import create_method, write_generated_set

    out = Path(out)
    started = time.perf_counter()
    created = [create_method(name, size=size) for name in methods]  # unknown names fail before any work
    root = materialize_demo_dataset(
        out / "dataset",
        cache_dir=cache_dir,
        offline=offline,
        include_face_recognition=include_face_recognition,
        progress=progress,
    )
    dataset = StellarDataset(root)
    dataset_problems = dataset.check(progress=progress)
    # one photo per identity is how the demo dataset is built (issue 9.19): not a problem to fix here
    single = [p for p in dataset_problems if "subject has one photo" in p.message]
    dataset_problems = [p for p in dataset_problems if p not in single]
    jobs = dataset.jobs("test")

    rows = []
    generated_problems: dict[str, list[Problem]] = {}
    for method in created:
        folder = out / "generated" / method.name
        written = write_generated_set(method, jobs, folder, dataset=dataset, seed=seed, progress=progress)
        gset = GeneratedSet(folder, dataset, split="test")
        problems = gset.problems(decode_images=True, progress=progress)
        generated_problems[method.name] = problems
        summary = gset.summary()
        rows.append((method.name, f"{summary['matched']}/{summary['expected']}", written.written, written.skipped,
                     count(problems, "error"), count(problems, "warning"), str(folder)))  # fmt: skip

    summary = dataset.summary()
    n_identities = len(demo_identities(include_face_recognition=include_face_recognition))
    test = summary["splits"].get("test", {})
    print()
    print(f"Stellar-Bench demo -> {out}")
    print(
        f"dataset {root}: {n_identities} identities, {summary['subjects']} subjects, {summary['photos']} photos, "
        f"{summary['prompts_T']} Stellar-T + {summary['prompts_H']} Stellar-H prompts; "
        f"test jobs: {test.get('jobs_T', 0)} T + {test.get('jobs_H', 0)} H = {len(jobs)}"
    )
    print(f"dataset check: {count(dataset_problems, 'error')} error(s), {count(dataset_problems, 'warning')} warning(s)")
    if single:
        print(f"note: {len(single)} demo subject(s) have a single photo by construction, so their SIS equals their IPS")
    print(f"generated sets ({size}x{size} PNG + JSON sidecars), matched against the test jobs:")
    header = ("method", "matched", "written", "kept", "errors", "warnings", "folder")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    all_problems = dataset_problems + [p for ps in generated_problems.values() for p in ps]
    n_errors = count(all_problems, "error")
    if all_problems:
        print("problems:")
        print_problems(all_problems, limit=20)
    if evaluate and n_errors == 0:
        print()
        print(_evaluate_and_report(dataset, out, [m.name for m in created], faces=faces, progress=progress), end="")
    print(f"{'OK' if n_errors == 0 else 'FAILED'} in {time.perf_counter() - started:.1f} s")
    return 0 if n_errors == 0 else 1


def _evaluate_and_report(dataset, out: Path, methods: Sequence[str], *, faces: str, progress: bool) -> str:
    """Evaluate each generated set (resumable: a rerun reuses finished runs) and render the leaderboard."""
    from stellar.engine import EvalConfig, evaluate
    from stellar.models.faces import FaceAnalyzer
    from stellar.report import leaderboard, load_run, render

    analyzer = FaceAnalyzer.from_preset(faces)
    config = EvalConfig(metrics=("ips", "sis", "aps"))
    runs = []
    for name in methods:
        run_dir = out / "runs" / name
        evaluate(dataset, out / "generated" / name, run_dir, config, faces=analyzer, clip=None,
                 clip_unavailable="no CLIP weights offline (stellar models fetch clip-vit-bigg-14-laion2b)", progress=progress)  # fmt: skip
        runs.append(load_run(run_dir))
    from stellar.report.html import build_html_report

    html = build_html_report(runs, out / "report", progress=progress)
    return (
        f"Leaderboard (faces preset {faces!r}; `stellar report {out / 'runs'}/*`):\n"
        + render(leaderboard(runs), "md")
        + f"HTML report (gallery, failure views, plots): {html.index}\n"
    )
