"""The study manifest ``STUDY/study.json``: what is shown, to how many raters, and why it is reproducible.

:func:`create_study` samples the items of a blinded side-by-side study from finished run directories
(``run.json`` + ``per_image.parquet``, the results contract) and writes the manifest. Everything the
web app serves comes from this file: image ids map to absolute paths with their sha256, so no path
from a request ever reaches the file system.

Sampling (all from one ``numpy`` generator seeded with ``seed``):

- **Pairs** — ``pairs`` (job, run pair) combinations, balanced three ways: the two prompt kinds
  (Stellar-T / Stellar-H) get equal shares (a kind with too few jobs gives its rest to the other),
  within a kind the subjects are visited round robin in a shuffled order, and the run pairs are
  dealt in shuffled blocks so that each run pair gets ⌊n/R⌋ or ⌈n/R⌉ items per kind. A
  (job, run pair) is never used twice; jobs are preferred unused, so a pair set spreads over
  as many jobs as it can. Left/right is a fair coin per item.
- **Repeats** — ``round(repeat · pairs)`` pairs are shown a second time to the *same* raters, with
  left and right swapped (a rater who answers by position, not content, is then inconsistent),
  after at least ``repeat_gap`` other items; they measure intra-rater consistency.
- **Gold** (attention checks) — ``round(gold · pairs)`` items whose answer is known for one aspect
  (``identity`` when asked, else ``overall``): a real photo of the subject (another photo than the
  job's input when the subject has one) against a decoy — the image of a run whose method is
  ``noise`` for that job when such a run is in the study, else a photo of another subject (the
  latter only for ``identity``, where the answer is unambiguous). Every rater gets every gold item,
  about one in ``1/gold`` items, so that gold accuracy is comparable across raters.

Image and item ids are assigned after a seeded shuffle: they carry no hint of the run, the role
(pair / repeat / gold) or the order of creation.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.errors import StellarError

FORMAT = "stellar-study"
VERSION = 1
CHOICES = ("a", "b", "tie")

#: Built-in aspects and the question a rater reads for each (A = left image, B = right image).
DEFAULT_QUESTIONS: dict[str, str] = {
    "overall": "Overall, which image is better for this prompt and this person?",
    "identity": "Which image better preserves the identity of the person in the input photo?",
    "attributes": "Which image better keeps the person's attributes (age, gender, face shape, hair, …)?",
    "context": "Which image better shows what the prompt asks for (objects, place, activity)?",
    "relations": "Which image better shows the relations in the prompt (who does what with what)?",
    "quality": "Which image has the better visual quality (fewer artefacts, more natural)?",
}
DEFAULT_ASPECTS = ("overall", "identity", "attributes", "context", "quality")

_BAD_STATUS = ("missing", "decode_error")
_ASPECT_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


class StudyError(StellarError):
    """A study folder, manifest or its inputs are unusable; the message names the file and the fix."""

    def __init__(self, message: str, fix_hint: str | None = None):
        super().__init__(message + (f"\n  fix: {fix_hint}" if fix_hint else ""))


@dataclass(frozen=True)
class Manifest:
    """A loaded ``study.json`` with lookups the server needs."""

    path: Path
    data: dict

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def aspects(self) -> list[dict]:
        return self.data["aspects"]

    @property
    def aspect_ids(self) -> list[str]:
        return [a["id"] for a in self.data["aspects"]]

    @property
    def items(self) -> list[dict]:
        return self.data["items"]

    @property
    def images(self) -> dict[str, dict]:
        return self.data["images"]

    @property
    def settings(self) -> dict:
        return self.data["settings"]

    def item_map(self) -> dict[str, dict]:
        return {it["id"]: it for it in self.data["items"]}


def load_manifest(study: str | Path) -> Manifest:
    """Read ``STUDY/study.json`` (or the file itself) and check its format and version."""
    study = Path(study)
    path = study / "study.json" if study.is_dir() or not study.suffix else study
    if not path.is_file():
        raise StudyError(f"{path}: no study manifest here", fix_hint="create one with `stellar study create --dataset D --runs RUN_A RUN_B --out STUDY`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudyError(f"{path}: not a readable JSON manifest ({exc})", fix_hint="recreate it with `stellar study create`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StudyError(f"{path}: not a Stellar study manifest (format {data.get('format') if isinstance(data, dict) else None!r})")
    if data.get("version") != VERSION:
        raise StudyError(f"{path}: manifest version {data.get('version')!r}; this stellar-bench reads version {VERSION}", fix_hint="recreate the study with this version")
    return Manifest(path, data)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_aspects(spec: str | Sequence[str] | None, questions: dict[str, str] | None = None) -> list[dict]:
    """``"overall,identity"`` → ``[{"id", "question"}]``; custom aspects need a question."""
    questions = {**DEFAULT_QUESTIONS, **(questions or {})}
    names = list(DEFAULT_ASPECTS) if spec is None else ([s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec))
    names = [n for n in names if n]
    if not names:
        raise StudyError("no aspects given", fix_hint=f"e.g. --aspects {','.join(DEFAULT_ASPECTS)}")
    out, seen = [], set()
    for n in names:
        if n in seen:
            raise StudyError(f"aspect {n!r} given twice")
        if not set(n) <= _ASPECT_OK or len(n) > 40:
            raise StudyError(f"aspect {n!r}: use lower-case letters, digits, '_' and '-' (at most 40)")
        if n not in questions:
            raise StudyError(f"aspect {n!r} has no question text (known: {', '.join(DEFAULT_QUESTIONS)})", fix_hint=f"add --question {n}='Which image …?'")
        seen.add(n)
        out.append({"id": n, "question": questions[n]})
    return out


# ------------------------------------------------------------------------------------------ runs
@dataclass
class _Run:
    name: str
    path: Path
    method: str | None
    fingerprint: str | None
    rows: dict[str, dict]  # job name -> row


def _load_run(spec: str | Path) -> _Run:
    import pandas as pd

    text = str(spec)
    path_s, _, name = text.partition("=")
    path = Path(path_s)
    for f in ("run.json", "per_image.parquet"):
        if not (path / f).is_file():
            raise StudyError(f"{path}: no {f} — not a finished run directory", fix_hint="finish it with `stellar evaluate`")
    run = json.loads((path / "run.json").read_text())
    cols = ["name", "subject", "photo", "prompt_index", "kind", "image", "image_sha256", "status"]
    df = pd.read_parquet(path / "per_image.parquet")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise StudyError(f"{path / 'per_image.parquet'}: columns {missing} missing", fix_hint="re-evaluate the run with this stellar-bench (`stellar evaluate --force`)")
    rows = {}
    for r in df[cols].to_dict("records"):
        rows[str(r["name"])] = r
    return _Run(name or run.get("method") or path.name, path.resolve(), run.get("method"), (run.get("dataset") or {}).get("fingerprint"), rows)


def _check_run_images(run: _Run) -> list[str]:
    bad = []
    for name, r in run.rows.items():
        img = r["image"]
        if r["status"] in _BAD_STATUS or img is None or (isinstance(img, float) and math.isnan(img)):
            bad.append(f"{name} ({r['status']})")
        elif not Path(img).is_file():
            bad.append(f"{name} (file {img} no longer exists)")
    return bad


# ------------------------------------------------------------------------------------------ sampling
def sample_pairs(strata: dict[tuple[str, str], list[str]], run_pairs: list[tuple[str, str]], n: int, rng: np.random.Generator) -> list[tuple[str, tuple[str, str]]]:
    """``n`` distinct (job, run pair) draws balanced over kinds, subjects and run pairs (module docstring).

    Args:
        strata: ``(kind, subject) -> job names``.
        run_pairs: the unordered run pairs.
        n: number of draws.
        rng: the study's generator.
    """
    kinds = sorted({k for k, _ in strata}, key=lambda k: "TH".find(k) if k in "TH" else 9)
    capacity = {k: sum(len(v) for (kk, _), v in strata.items() if kk == k) * len(run_pairs) for k in kinds}
    total = sum(capacity.values())
    if n > total:
        raise StudyError(f"--pairs {n}: only {total} distinct (job, run pair) combinations exist", fix_hint=f"use --pairs {total} or fewer, or add runs / jobs")
    # equal shares per kind, a kind short of jobs gives the rest to the others
    share = {k: 0 for k in kinds}
    left = n
    open_kinds = list(kinds)
    while left and open_kinds:
        per = max(1, left // len(open_kinds))
        for k in list(open_kinds):
            take = min(per, capacity[k] - share[k], left)
            share[k] += take
            left -= take
            if share[k] >= capacity[k]:
                open_kinds.remove(k)
            if not left:
                break
    out: list[tuple[str, tuple[str, str]]] = []
    # one subject rotation shared by the kinds, so a subject that got an extra item in one kind
    # is not the one that gets the extra item in the next
    all_subjects = sorted({s for _, s in strata})
    all_subjects = [all_subjects[i] for i in rng.permutation(len(all_subjects))]
    si = 0
    for k in kinds:
        subjects = [s for s in all_subjects if (k, s) in strata]
        jobs = {s: [strata[(k, s)][i] for i in rng.permutation(len(strata[(k, s)]))] for s in subjects}
        use_count = {j: 0 for s in subjects for j in jobs[s]}
        used: set[tuple[str, tuple[str, str]]] = set()
        open_pairs = list(run_pairs)
        deck: list[tuple[str, str]] = []
        taken = 0
        while taken < share[k]:
            if not deck:
                deck = [open_pairs[i] for i in rng.permutation(len(open_pairs))]
            rp = deck.pop()
            for _ in range(len(subjects)):
                s = subjects[si % len(subjects)]
                si += 1
                cands = [j for j in jobs[s] if (j, rp) not in used]
                if cands:  # the least-used job of this subject not yet drawn with this run pair
                    j = min(cands, key=lambda x: use_count[x])
                    used.add((j, rp))
                    use_count[j] += 1
                    out.append((j, rp))
                    taken += 1
                    break
            else:  # every job of the kind has been drawn with this run pair
                open_pairs.remove(rp)
                deck = [p for p in deck if p != rp]
    return out


def create_study(
    dataset: str | Path,
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    pairs: int = 600,
    aspects: str | Sequence[str] | None = None,
    questions: dict[str, str] | None = None,
    raters_per_pair: int = 3,
    gold: float = 0.05,
    repeat: float = 0.05,
    repeat_gap: int = 5,
    gold_threshold: float = 0.8,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
) -> Manifest:
    """Sample a study from ``runs`` (all evaluated on ``dataset``) and write ``out/study.json``.

    Raises:
        StudyError: fewer than two runs, runs of another dataset, missing / undecodable / changed
            images (all named), impossible sizes, or an existing study at ``out`` (without ``force``).
    """
    from tqdm import tqdm

    from stellar.data.dataset import StellarDataset
    from stellar.errors import ImageDecodeError
    from stellar.fileio import atomic_write_bytes, json_bytes
    from stellar import __version__
    from stellar.images import load_image

    out = Path(out)
    if (out / "study.json").exists() and not force:
        raise StudyError(f"{out / 'study.json'} exists", fix_hint="choose another --out (a study's manifest is never overwritten once raters may have answered)")
    if (out / "judgements.db").exists():
        raise StudyError(f"{out / 'judgements.db'} exists: this study has collected judgements", fix_hint="choose another --out")
    if pairs < 1:
        raise StudyError(f"--pairs {pairs}: must be ≥ 1")
    if raters_per_pair < 1:
        raise StudyError(f"--raters-per-pair {raters_per_pair}: must be ≥ 1")
    for name, v in (("--gold", gold), ("--repeat", repeat)):
        if not 0 <= v <= 0.5:
            raise StudyError(f"{name} {v}: a fraction between 0 and 0.5")
    aspect_list = parse_aspects(aspects, questions)
    aspect_ids = [a["id"] for a in aspect_list]
    if len(runs) < 2:
        raise StudyError("a side-by-side study needs at least two runs", fix_hint="--runs RUN_A RUN_B [...]")
    loaded = [_load_run(r) for r in runs]
    names = [r.name for r in loaded]
    if len(set(names)) != len(names):
        raise StudyError(f"runs have the same name: {names}", fix_hint="name them with RUN=NAME")
    ds = StellarDataset(dataset)
    fp = ds.fingerprint()
    for r in loaded:
        if r.fingerprint is not None and r.fingerprint != fp:
            raise StudyError(f"{r.path}: evaluated on another dataset (fingerprint {r.fingerprint}, {dataset} has {fp})", fix_hint="give the dataset the runs were evaluated on")
    problems = []
    for r in loaded:
        bad = _check_run_images(r)
        if bad:
            problems.append(f"run {r.name} ({r.path}): {len(bad)} job(s) without a usable image: {', '.join(bad[:8])}{' …' if len(bad) > 8 else ''}")
    if problems:
        raise StudyError("runs with missing or undecodable images:\n  " + "\n  ".join(problems), fix_hint="regenerate those images and re-evaluate, or leave the run out")
    common = sorted(set.intersection(*(set(r.rows) for r in loaded)))
    if not common:
        raise StudyError("the runs have no job in common", fix_hint="evaluate them on the same dataset split")

    rng = np.random.default_rng(seed)
    base = loaded[0].rows
    strata: dict[tuple[str, str], list[str]] = {}
    for j in common:
        r = base[j]
        strata.setdefault((str(r["kind"]), str(r["subject"])), []).append(j)
    run_pairs = [(names[i], names[k]) for i in range(len(names)) for k in range(i + 1, len(names))]
    drawn = sample_pairs(strata, run_pairs, pairs, rng)
    by_name = {r.name: r for r in loaded}

    images: dict[tuple, dict] = {}  # key -> {"path", "sha256", "source"}

    def add_image(key: tuple, path: Path, expected_sha: str | None, source: str) -> tuple:
        if key not in images:
            images[key] = {"path": str(Path(path).resolve()), "expected": expected_sha, "source": source}
        return key

    def subject_photos(subject: str):
        return list(ds.subject(subject).photos)

    def job_info(j: str) -> dict:
        r = base[j]
        subj = ds.subject(str(r["subject"]))
        prompt = next(p for p in subj.prompts if p.index == int(r["prompt_index"]))
        photo = next(p for p in subj.photos if p.index == int(r["photo"]))
        refs = [add_image(("photo", str(photo.path)), photo.path, None, "dataset")]
        for other in subj.photos:
            if other.index != photo.index and len(refs) < 3:
                refs.append(add_image(("photo", str(other.path)), other.path, None, "dataset"))
        return {"job": j, "subject": subj.id, "kind": str(r["kind"]), "prompt": prompt.fill(), "references": refs, "photo": photo}

    raw_items = []
    for j, (x, y) in drawn:
        info = job_info(j)
        sides = [(x, add_image(("run", x, j), by_name[x].rows[j]["image"], by_name[x].rows[j]["image_sha256"], f"run:{x}")),
                 (y, add_image(("run", y, j), by_name[y].rows[j]["image"], by_name[y].rows[j]["image_sha256"], f"run:{y}"))]  # fmt: skip
        if rng.random() < 0.5:
            sides.reverse()
        raw_items.append({"type": "pair", **{k: v for k, v in info.items() if k != "photo"}, "a": {"run": sides[0][0], "image": sides[0][1]}, "b": {"run": sides[1][0], "image": sides[1][1]}})

    n_repeat = int(round(repeat * pairs))
    for k in sorted(rng.choice(len(raw_items), size=min(n_repeat, len(raw_items)), replace=False).tolist()):
        orig = raw_items[k]
        raw_items.append({**orig, "type": "repeat", "repeat_of": k, "a": orig["b"], "b": orig["a"]})

    n_gold = int(round(gold * pairs))
    if n_gold:
        gold_aspect = "identity" if "identity" in aspect_ids else ("overall" if "overall" in aspect_ids else None)
        noise_runs = [r.name for r in loaded if r.method == "noise" or r.name == "noise"]
        if gold_aspect is None or (gold_aspect == "overall" and not noise_runs):
            raise StudyError("gold items need the identity aspect (or overall with a `noise` run in the study)", fix_hint="add identity to --aspects, or use --gold 0")
        subjects = sorted({s for _, s in strata})
        if not noise_runs and len(subjects) < 2:
            raise StudyError("gold items need a second subject (decoy photo) or a `noise` run", fix_hint="use --gold 0")
        gold_jobs = [common[i] for i in rng.permutation(len(common))]
        # spread over subjects: one job per subject in turn
        by_subject: dict[str, list[str]] = {}
        for j in gold_jobs:
            by_subject.setdefault(str(base[j]["subject"]), []).append(j)
        order = [s for s in subjects]
        picks = []
        while len(picks) < n_gold and any(by_subject.values()):
            for s in order:
                if by_subject.get(s) and len(picks) < n_gold:
                    picks.append(by_subject[s].pop())
        for g, j in enumerate(picks):
            info = job_info(j)
            photos = subject_photos(info["subject"])
            others = [p for p in photos if p.index != info["photo"].index]
            true_photo = others[0] if others else info["photo"]
            true = ("reference", add_image(("photo", str(true_photo.path)), true_photo.path, None, "dataset"))
            if noise_runs:
                nr = noise_runs[g % len(noise_runs)]
                decoy = (nr, add_image(("run", nr, j), by_name[nr].rows[j]["image"], by_name[nr].rows[j]["image_sha256"], f"run:{nr}"))
            else:
                other_subjects = [s for s in subjects if s != info["subject"]]
                s2 = other_subjects[int(rng.integers(len(other_subjects)))]
                p2 = subject_photos(s2)[0]
                decoy = ("other-subject", add_image(("photo", str(p2.path)), p2.path, None, "dataset"))
            sides = [true, decoy]
            if rng.random() < 0.5:
                sides.reverse()
            answer = "a" if sides[0] is true else "b"
            raw_items.append({"type": "gold", **{k: v for k, v in info.items() if k != "photo"},
                              "a": {"run": sides[0][0], "image": sides[0][1]}, "b": {"run": sides[1][0], "image": sides[1][1]},
                              "gold": {"aspect": gold_aspect, "answer": answer}})  # fmt: skip

    # verify and hash every image that will be shown
    keys = list(images)
    bad = []
    for key in tqdm(keys, desc="checking images", unit="img", disable=not progress):
        meta = images[key]
        try:
            load_image(meta["path"])
            digest = sha256_file(meta["path"])
        except (ImageDecodeError, OSError) as exc:
            bad.append(f"{meta['source']}: {exc}")
            continue
        if meta["expected"] and meta["expected"] != digest:
            bad.append(f"{meta['source']}: {meta['path']} changed since it was evaluated (sha256 {digest[:12]}…, run says {str(meta['expected'])[:12]}…)")
        meta["sha256"] = digest
    if bad:
        raise StudyError("images the study would show cannot be used:\n  " + "\n  ".join(bad[:20]) + (" …" if len(bad) > 20 else ""), fix_hint="regenerate them and re-evaluate the runs, or leave the run out")

    # opaque ids: shuffled, so ids tell nothing about runs, roles or creation order
    img_ids = {key: f"i{n:05d}" for n, key in enumerate([keys[i] for i in rng.permutation(len(keys))])}
    order = rng.permutation(len(raw_items)).tolist()
    item_ids = {old: f"q{n:05d}" for n, old in enumerate(order)}
    items = []
    for new_pos, old in enumerate(order):
        it = raw_items[old]
        rec = {"id": item_ids[old], "type": it["type"], "job": it["job"], "subject": it["subject"], "kind": it["kind"], "prompt": it["prompt"],
               "references": [img_ids[k] for k in it["references"]],
               "a": {"run": it["a"]["run"], "image": img_ids[it["a"]["image"]]},
               "b": {"run": it["b"]["run"], "image": img_ids[it["b"]["image"]]}}  # fmt: skip
        if it["type"] == "repeat":
            rec["repeat_of"] = item_ids[it["repeat_of"]]
        if it["type"] == "gold":
            rec["gold"] = it["gold"]
        items.append(rec)
    data = {
        "format": FORMAT,
        "version": VERSION,
        "stellar_bench": __version__,
        "seed": seed,
        "dataset": {"root": str(Path(dataset).resolve()), "fingerprint": fp},
        "runs": [{"name": r.name, "path": str(r.path), "method": r.method} for r in loaded],
        "settings": {"pairs": pairs, "raters_per_pair": raters_per_pair, "gold": gold, "repeat": repeat, "repeat_gap": repeat_gap,
                     "gold_threshold": gold_threshold, "jobs_common": len(common)},  # fmt: skip
        "aspects": aspect_list,
        "images": {img_ids[k]: {"path": images[k]["path"], "sha256": images[k]["sha256"], "source": images[k]["source"]} for k in sorted(images, key=lambda k: img_ids[k])},
        "items": sorted(items, key=lambda it: it["id"]),
    }
    atomic_write_bytes(out / "study.json", json_bytes(data))
    return Manifest(out / "study.json", data)


def verify_images(manifest: Manifest, *, progress: bool = False) -> None:
    """Refuse to serve a study whose images are gone or changed since ``create`` (named, with the fix)."""
    from tqdm import tqdm

    bad = []
    for iid, meta in tqdm(manifest.images.items(), desc="verifying images", unit="img", disable=not progress):
        p = Path(meta["path"])
        if not p.is_file():
            bad.append(f"{iid} ({meta['source']}): {p} is missing")
        elif sha256_file(p) != meta["sha256"]:
            bad.append(f"{iid} ({meta['source']}): {p} changed since the study was created")
    if bad:
        raise StudyError(f"{manifest.path}: {len(bad)} image(s) cannot be served:\n  " + "\n  ".join(bad[:20]), fix_hint="restore the files (the study shows exactly the images it was created with)")
