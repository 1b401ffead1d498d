"""Model cards and the weights cache (DESIGN §4): every pretrained model Stellar-Bench loads.

A :class:`ModelCard` is *data*: one JSON file per card in ``stellar/models/cards/`` (shipped in the
wheel), validated when first needed — a wrong field is a :class:`CardFormatError` naming the file.
The format is documented in ``docs/model-cards.md``; adding a model is adding one file there. The card
model and the reading of card files are :mod:`stellar.models.card`; the download code of the three
source kinds (``hf``, ``url``, ``pypi``) is :mod:`stellar.models.sources`; what a metric needs is
:mod:`stellar.models.requirements`. This module (which re-exports the card model) holds the verified
cache: resolution, fetching, verification and readiness (:func:`card_status`, :func:`fetch_plan`).

Local weights are implicit for every card: ``--weights NAME=PATH`` / :func:`set_local_override` (a
file or a folder) and ``$STELLAR_WEIGHTS_DIR/<card>/<file>``. Local files are used in place, not copied.

Cache layout: ``$STELLAR_HOME`` (default ``~/.cache/stellar``) ``/models/<card>/<file>`` plus
``/models/<card>/hashes.json`` (per file: sha256, size, trust, source, resolved revision, time).
``$STELLAR_HOME/hf`` is the ``huggingface_hub`` cache; hub files are hard-linked from it into
``models/<card>/`` (copied when the file system refuses links), so a file is stored once.

Choices and deviations (documented here as STYLE asks):

- Integrity: every fetched file is sha256-verified *before* it is moved into place (temp file in
  the card folder + ``os.replace``), so the cache never holds a partial or unverified file. A
  mismatch raises :class:`HashMismatchError` naming the file, the expected and the actual hash;
  nothing is installed and the download it came from (hub blob, resumable ``.part``) is deleted, so
  the next fetch starts clean. Expected hashes: pinned in the card; else the hub's own LFS sha256;
  else *trust-on-first-use* (recorded in ``hashes.json`` at first download, verified afterwards;
  ``stellar models list/verify`` say "recorded on first download").
- Cache hits are checked by size (cheap) on every :func:`resolve_file`; the full sha256 is
  re-checked by :func:`fetch` and :func:`verify` (hashing a 10 GB SDXL snapshot at every metric
  call would be absurd). A cached file whose size is wrong is deleted and fetched again.
- Local files with a pinned sha256 are verified (once per process per file state). A mismatch is an
  error for files found implicitly (``$STELLAR_WEIGHTS_DIR``): a card name promises specific weights.
  A file the user names explicitly (``--weights NAME=FILE``) is accepted with a warning and recorded
  in :func:`non_reference_weights` — the run then says "non-reference weights" and its model
  protocol carries the file's sha256 (issue 9 item 22).
- Revisions: every hub card pins a commit where one is known. Where none was (``revision`` is a
  branch, and the card's ``notes`` say so) the commit it resolves to at first fetch is recorded in
  ``hashes.json`` and used for every later fetch of that card, so one cache never mixes commits;
  ``stellar models verify`` reports such a card as "pinned at first fetch".
- Offline rule (:mod:`stellar.settings`: ``STELLAR_OFFLINE`` / ``HF_HUB_OFFLINE``): the cache and local
  files are checked first, and nothing touches the network — ``hf`` and ``url`` sources and
  ``pip download`` are not attempted; copying from an installed distribution still is (it is local).
  The error names the card, the file, and the commands that provide it.
- No locking: two processes fetching the same file each stage their own temp file and the last
  ``os.replace`` wins; both copies are verified, so the result is correct either way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from stellar.data.layout import sha256_file
from stellar.errors import StellarError
from stellar.models.card import (  # noqa: F401 - the card model is re-exported: registry.ModelCard, registry.get_card, ...
    TRUST_FIRST_USE,
    TRUST_PINNED,
    CardFormatError,
    ModelCard,
    ModelFile,
    UnknownModelError,
    _index,
    card_from_data,
    cards_in_order,
    cards_index,
    get_card,
    list_cards,
    load_card_file,
)
from stellar.models.sources import (  # noqa: F401 - the source kinds are re-exported: registry.HfSource, ...
    Fetched,
    HfSource,
    PypiSource,
    SourceError,
    UrlSource,
    discard_download,
)
from stellar.settings import is_offline, stellar_home, weights_dir

__all__ = [
    "CARDS",
    "CardFormatError",
    "CardStatus",
    "PlannedFile",
    "card_status",
    "fetch_plan",
    "revision_status",
    "FileRecord",
    "HashMismatchError",
    "HfSource",
    "ModelCard",
    "ModelFile",
    "PypiSource",
    "UnknownModelError",
    "UrlSource",
    "VerifyResult",
    "WeightsUnavailableError",
    "card_summary",
    "clear_local_overrides",
    "fetch",
    "get_card",
    "is_cached",
    "is_offline",
    "list_cards",
    "load_card_file",
    "local_override",
    "non_reference_weights",
    "resolve",
    "resolve_file",
    "set_local_override",
    "stellar_home",
    "verify",
    "where",
]

HASHES_FILE = "hashes.json"
REVISION_PINNED = "pinned"
REVISION_FIRST_FETCH = "pinned at first fetch"

# ---------------------------------------------------------------------------------------- errors
class WeightsUnavailableError(StellarError):
    """A card's file is neither cached nor local, and no source could provide it (or offline)."""

    def __init__(self, card: str, filename: str, attempts: Sequence[str] = (), offline: bool = False):
        self.card = card
        self.filename = filename
        self.attempts = list(attempts)
        self.offline = offline
        lines = [f"weights for model card '{card}' (file '{filename}') are not available"]
        if offline:
            lines[0] += " and offline mode is on (STELLAR_OFFLINE / HF_HUB_OFFLINE), so nothing was downloaded"
        lines += [f"  - {a}" for a in self.attempts]
        lines.append(
            f"  fix: run `stellar models fetch {card}` where the network is reachable (then copy "
            f"{stellar_home() / 'models' / card} here),\n"
            f"       or pass `--weights {card}=PATH` (the file, or a folder holding it),\n"
            f"       or put it at $STELLAR_WEIGHTS_DIR/{card}/{filename}"
        )
        super().__init__("\n".join(lines))


class HashMismatchError(StellarError):
    """A file's sha256 differs from the pinned (or first-download recorded) value."""

    def __init__(self, path: str | Path, expected: str, actual: str, card: str = "", filename: str = "", origin: str = ""):
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.card = card
        self.filename = filename
        text = (
            f"{path}: sha256 mismatch for model card '{card}' file '{filename}'"
            + (f" (from {origin})" if origin else "")
            + f"\n  expected {expected}\n  actual   {actual}"
            + f"\n  fix: the file is corrupt or not the published one; delete it and run `stellar models fetch {card}`,"
            f" or pass the right file with `--weights {card}=PATH`"
        )
        super().__init__(text)



# ----------------------------------------------------------------------------------- environment
def models_dir() -> Path:
    return stellar_home() / "models"


@dataclass(frozen=True)
class FileRecord:
    """What ``hashes.json`` remembers of one cached file."""

    sha256: str
    size: int
    trust: str
    origin: str
    revision: str | None = None
    fetched_at: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking one file: ``status`` is ok | mismatch | missing | unpinned."""

    card: str
    file: str
    status: str
    path: Path | None
    expected: str | None = None
    actual: str | None = None
    trust: str = TRUST_PINNED
    where: str = "cache"  # cache | local

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unpinned")

    def __str__(self) -> str:
        head = f"{self.card}/{self.file}: {self.status}"
        if self.status == "mismatch":
            return f"{head} ({self.path})\n  expected {self.expected}\n  actual   {self.actual}"
        if self.status == "missing":
            return f"{head} (run `stellar models fetch {self.card}`)"
        note = f"sha256 {self.actual[:12]}… {self.trust}" if self.actual else self.trust
        return f"{head} [{self.where}] {note}"



# --------------------------------------------------------------------------------- file helpers
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) so a local file is hashed once per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = sha256_file(path)
    return _HASH_MEMO[key]


# ----------------------------------------------------------------------------------- hashes.json
def _card_dir(name: str) -> Path:
    return models_dir() / name


def _read_records(name: str) -> dict:
    path = _card_dir(name) / HASHES_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"card": name, "files": {}, "revisions": {}}
    data.setdefault("files", {})
    data.setdefault("revisions", {})
    return data


def _write_records(name: str, data: dict) -> None:
    folder = _card_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".hashes-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, folder / HASHES_FILE)


def _record(name: str, filename: str) -> FileRecord | None:
    raw = _read_records(name)["files"].get(filename)
    if not raw:
        return None
    return FileRecord(
        raw["sha256"], int(raw["size"]), raw.get("trust", TRUST_FIRST_USE), raw.get("origin", ""), raw.get("revision"), raw.get("fetched_at", "")
    )


def _recorded_revision(name: str, repo_id: str) -> str | None:
    return _read_records(name)["revisions"].get(repo_id)


def _recorded_files(name: str) -> list[str]:
    return sorted(_read_records(name)["files"])



_cards = cards_index  # name/alias -> card (tests add entries to it)
_cards_in_order = cards_in_order


def __getattr__(name: str) -> Any:  # PEP 562: ``registry.CARDS`` stays available, loaded on first use
    if name == "CARDS":
        return tuple(cards_in_order())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------ local overrides
_LOCAL_OVERRIDES: dict[str, Path] = {}


def set_local_override(name: str, path: str | Path) -> None:
    """Use ``path`` (a file, or a folder holding the card's files) for card ``name`` in this process.

    A file is accepted for a card with one file, or when its base name is one of the card's files.
    """
    card = get_card(name)
    path = Path(path).expanduser()
    if not path.exists():
        raise StellarError(
            f"--weights {name}={path}: no such file or folder\n"
            f"  fix: give the weights file of '{card.name}', or a folder holding {', '.join(card.file_names) or 'its files'}"
        )
    if path.is_file() and not card.discovered and len(card.files) > 1 and path.name not in card.file_names:
        raise UnknownModelError(
            path.name,
            card.file_names,
            what=f"file of model card '{card.name}' (give a folder holding {', '.join(card.file_names)}, or one of them)",
        )
    _LOCAL_OVERRIDES[card.name] = path.resolve()


def clear_local_overrides() -> None:
    _LOCAL_OVERRIDES.clear()
    _NON_REFERENCE.clear()


def local_override(name: str) -> Path | None:
    return _LOCAL_OVERRIDES.get(get_card(name).name)


def _local_candidate(card: ModelCard, filename: str) -> Path | None:
    override = _LOCAL_OVERRIDES.get(card.name)
    if override is not None:
        if override.is_dir():
            path = override / filename
            return path if path.is_file() else None
        if override.name == PurePosixPath(filename).name or len(card.files) == 1:
            return override
    root = weights_dir()
    if root is not None:
        path = root / card.name / filename
        if path.is_file():
            return path
    return None


def _local_folder(card: ModelCard) -> Path | None:
    override = _LOCAL_OVERRIDES.get(card.name)
    if override is not None and override.is_dir():
        return override
    root = weights_dir()
    if root is not None and (root / card.name).is_dir():
        return root / card.name
    return None


# ---------------------------------------------------------------------------------- resolution
def where(name: str) -> Path:
    """The cache folder of card ``name`` (``$STELLAR_HOME/models/<card>``), whether or not it exists."""
    return _card_dir(get_card(name).name)


def _expected(card: ModelCard, filename: str) -> tuple[str | None, int | None, str]:
    """(sha256, size, trust) a file must have: pinned in the card, else recorded at first download."""
    spec = card.file(filename)
    if spec.sha256:
        return spec.sha256, spec.size, TRUST_PINNED
    rec = _record(card.name, filename)
    if rec is not None:
        return rec.sha256, rec.size, TRUST_FIRST_USE
    return None, spec.size, TRUST_FIRST_USE


class NonReferenceWeightsWarning(UserWarning):
    """An explicitly given local weights file differs from the card's pinned file (used, and recorded)."""


#: card -> {file: sha256} of explicitly given local files that differ from the pinned ones (this process).
_NON_REFERENCE: dict[str, dict[str, str]] = {}


def non_reference_weights() -> dict[str, dict[str, str]]:
    """``{card: {file: sha256}}`` of the explicitly given (``--weights``) files that are not the pinned
    reference files, used so far in this process. Runs record it and are marked "non-reference weights"."""
    return {card: dict(files) for card, files in _NON_REFERENCE.items()}


def weights_note(card_name: str) -> str:
    """``""`` for reference weights, else ``"!non-reference:<file>=<sha256>,..."`` for protocol strings."""
    files = _NON_REFERENCE.get(get_card(card_name).name)
    return "" if not files else "!non-reference:" + ",".join(f"{f}={sha}" for f, sha in sorted(files.items()))


def _check_local(card: ModelCard, filename: str, path: Path) -> Path:
    spec = card.file(filename)
    if spec.sha256:
        actual = _sha256(path)
        if actual != spec.sha256:
            if _LOCAL_OVERRIDES.get(card.name) is None or _LOCAL_OVERRIDES[card.name].is_dir():
                # found implicitly ($STELLAR_WEIGHTS_DIR or inside a folder): the card promises its weights
                raise HashMismatchError(path, spec.sha256, actual, card.name, filename, origin="local weights")
            if _NON_REFERENCE.get(card.name, {}).get(filename) != actual:
                _NON_REFERENCE.setdefault(card.name, {})[filename] = actual
                warnings.warn(
                    f"--weights {card.name}={path}: sha256 {actual} is not the reference file of model card "
                    f"'{card.name}' ({spec.sha256}); using it as asked. Results are marked 'non-reference weights' "
                    "and are not comparable with runs on the reference weights.",
                    NonReferenceWeightsWarning,
                    stacklevel=3,
                )
    return path


def _cached_ok(card: ModelCard, filename: str, full: bool) -> Path | None:
    """The cached file when present and sound (size always; sha256 when ``full``); a corrupt one is removed."""
    path = _card_dir(card.name) / filename
    if not path.is_file():
        return None
    sha, size, _ = _expected(card, filename)
    sound = size is None or path.stat().st_size == size
    if sound and full and sha is not None:
        sound = _sha256(path) == sha
    if not sound:  # never hand out a file that is not the verified one; fetch it again instead
        path.unlink()
        return None
    return path


def resolve_file(name: str, filename: str) -> Path:
    """Local path of ``filename`` of card ``name``: a local override / ``$STELLAR_WEIGHTS_DIR`` file
    (sha256-checked when pinned), else the cache, else fetched from the card's sources into the cache.

    Raises :class:`UnknownModelError`, :class:`WeightsUnavailableError`, :class:`HashMismatchError`.
    """
    card = get_card(name)
    card.file(filename)  # unknown file -> error with the card's files
    local = _local_candidate(card, filename)
    if local is not None:
        return _check_local(card, filename, local)
    cached = _cached_ok(card, filename, full=False)
    if cached is not None:
        return cached
    return _fetch_into_cache(card, [filename])[filename]


def _card_files(card: ModelCard) -> list[str] | None:
    """The card's file names: declared, or recorded at first fetch (None: not yet discovered)."""
    if not card.discovered:
        return card.file_names
    recorded = _recorded_files(card.name)
    return recorded or None


def resolve(name: str) -> dict[str, Path]:
    """``{file: path}`` for every file of card ``name`` (see :func:`resolve_file`)."""
    card = get_card(name)
    names = _card_files(card)
    folder = _local_folder(card)
    if card.discovered and folder is not None:  # a local copy of a whole repo: take it as it is
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    if names is None:
        return _fetch_into_cache(card, None)
    return {f: resolve_file(card.name, f) for f in names}


def fetch(name: str) -> dict[str, Path]:
    """Make every file of card ``name`` available and fully verified; returns ``{file: path}``.

    Unlike :func:`resolve`, already-cached files are re-hashed (a corrupt one is fetched again).
    """
    card = get_card(name)
    names = _card_files(card)
    if names is None:
        if card.discovered and _local_folder(card) is not None:
            return resolve(name)
        return _fetch_into_cache(card, None)
    out: dict[str, Path] = {}
    missing = []
    for f in names:
        local = _local_candidate(card, f)
        if local is not None:
            out[f] = _check_local(card, f, local)
            continue
        cached = _cached_ok(card, f, full=True)
        if cached is not None:
            out[f] = cached
        else:
            missing.append(f)
    if missing:
        out.update(_fetch_into_cache(card, missing))
    return {f: out[f] for f in names}


def is_cached(name: str) -> bool:
    """True when every file of card ``name`` is available without fetching (cache or local)."""
    card = get_card(name)
    names = _card_files(card)
    if names is None:
        return card.discovered and _local_folder(card) is not None
    return all(_local_candidate(card, f) is not None or (_card_dir(card.name) / f).is_file() for f in names)


def _fetch_into_cache(card: ModelCard, filenames: list[str] | None) -> dict[str, Path]:
    """Try the card's sources in order for ``filenames`` (None: discover); verify, then install atomically."""
    offline = is_offline()
    folder = _card_dir(card.name)
    attempts: list[str] = []
    todo = None if filenames is None else list(filenames)
    installed: dict[str, Path] = {}
    for source in card.sources:
        wanted = None if todo is None else [f for f in todo if source.provides(f, card)]
        if wanted is not None and not wanted:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
        try:
            try:
                revision = _recorded_revision(card.name, source.repo_id) if isinstance(source, HfSource) else None
                got = source.fetch(card, wanted, staging, offline, revision=revision)
            except SourceError as exc:
                attempts.append(str(exc))
                continue
            installed.update(_install(card, got))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if todo is None:
            return installed
        todo = [f for f in todo if f not in installed]
        if not todo:
            break
    if todo is None or todo:
        missing = "*" if todo is None else todo[0]
        if not attempts:
            attempts.append("no declared source provides this file")
        raise WeightsUnavailableError(card.name, missing, attempts, offline=offline)
    return installed


def _install(card: ModelCard, got: Fetched) -> dict[str, Path]:
    """Verify every staged file, then move them into the cache and record their hashes.

    All files are verified before any is moved, so a mismatch leaves the cache as it was."""
    folder = _card_dir(card.name)
    checked: list[tuple[str, Path, str, str]] = []
    for name, staged in got.files.items():
        sha, size, trust = _expected(card, name)
        actual = sha256_file(staged)
        upstream = got.expected.get(name)
        problem = None
        if sha is not None and actual != sha:
            problem = HashMismatchError(folder / name, sha, actual, card.name, name, origin=got.origin)
        elif upstream is not None and actual != upstream:  # the hub's own sha256 (LFS ETag) of this file
            problem = HashMismatchError(folder / name, upstream, actual, card.name, name, origin=got.origin + ", the hub's LFS sha256")
        elif sha is None and size is not None and staged.stat().st_size != size:
            problem = HashMismatchError(folder / name, f"(size {size})", f"{actual} (size {staged.stat().st_size})", card.name, name, got.origin)
        if problem is not None:
            _discard(got.discard.get(name, []))  # the corrupt download must not be reused by a retry
            raise problem
        checked.append((name, staged, actual, trust))
    records = _read_records(card.name)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = {}
    for name, staged, actual, trust in checked:
        final = folder / name
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        records["files"][name] = {
            "sha256": actual,
            "size": final.stat().st_size,
            "trust": trust,
            "origin": got.origin,
            "revision": got.revision,
            "fetched_at": now,
            "verified": _stamp(final),
        }
        out[name] = final
    if got.revision:
        for source in card.sources:
            if isinstance(source, HfSource) and got.origin == source.describe():
                records["revisions"][source.repo_id] = got.revision
    _write_records(card.name, records)
    for paths in got.discard.values():  # installed: a resumable .part is no longer needed (hub blobs stay)
        _discard([p for p in paths if Path(p).suffix == ".part"])
    return out


def _discard(paths: Sequence[Path]) -> None:
    """Delete downloads (and an emptied ``.downloads/`` folder)."""
    for path in map(Path, paths):
        discard_download(path)




# ------------------------------------------------------------------------- readiness (doctor, plans)
def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _verified_cached(card: ModelCard, filename: str, path: Path) -> bool:
    """True when the cached file hashes to its expected sha256. The hash is skipped when the file's
    (size, mtime) equal the stamp written when it was last verified (so a check before every run
    does not re-hash gigabytes); a file changed since then is hashed again."""
    sha, _, _ = _expected(card, filename)
    records = _read_records(card.name)
    rec = records["files"].get(filename) or {}
    if sha is not None and rec.get("sha256") == sha and rec.get("verified") == _stamp(path):
        return True
    actual = _sha256(path)
    if sha is None or actual != sha:
        return False
    rec["verified"] = _stamp(path)
    records["files"][filename] = {**rec, "sha256": actual, "size": path.stat().st_size}
    try:
        _write_records(card.name, records)
    except OSError:  # a read-only shared cache: verified all the same, just not remembered
        pass
    return True


@dataclass(frozen=True)
class CardStatus:
    """Whether a card can be used now. ``state``: ready | missing | partial | corrupt."""

    card: str
    state: str
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()
    note: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "ready"


def card_status(name: str) -> CardStatus:
    """Readiness of card ``name`` without fetching anything: every file local or cached *and verified*
    (see :func:`_verified_cached`), or copyable from an installed distribution (no network needed)."""
    card = get_card(name)
    names = _card_files(card)
    folder = _card_dir(card.name)
    in_progress = (folder / ".downloads").is_dir() and any((folder / ".downloads").iterdir())
    if names is None:
        if _local_folder(card) is not None:
            return CardStatus(card.name, "ready", note="local folder")
        return CardStatus(card.name, "partial" if in_progress else "missing", ("*",))
    missing, corrupt, notes = [], [], []
    for f in names:
        local = _local_candidate(card, f)
        if local is not None:
            spec = card.file(f)
            explicit = _LOCAL_OVERRIDES.get(card.name) is not None and not _LOCAL_OVERRIDES[card.name].is_dir()
            if spec.sha256 and _sha256(local) != spec.sha256 and not explicit:
                corrupt.append(f)
            continue
        path = folder / f
        if path.is_file():
            if not _verified_cached(card, f, path):
                corrupt.append(f)
            continue
        installed = next((s for s in card.sources if isinstance(s, PypiSource) and s.provides(f, card) and s.installed_path(f)), None)
        if installed is not None:
            notes.append(f"{f}: copied from the installed {installed.spec} at first use")
            continue
        missing.append(f)
    if corrupt:
        state = "corrupt"
    elif not missing:
        state = "ready"
    elif len(missing) < len(names) or in_progress:
        state = "partial"
    else:
        state = "missing"
    return CardStatus(card.name, state, tuple(missing), tuple(corrupt), "; ".join(dict.fromkeys(n.split(": ", 1)[1] for n in notes)))


def revision_status(name: str) -> list[tuple[str, str | None, str]]:
    """Per hub source of card ``name``: (repo id, commit, how it is pinned: "pinned" | "pinned at first
    fetch" | "not fetched yet — revision '<branch>' will be pinned at first fetch")."""
    card = get_card(name)
    out = []
    for source in card.sources:
        if not isinstance(source, HfSource):
            continue
        if source.pinned:
            out.append((source.repo_id, source.revision, REVISION_PINNED))
            continue
        recorded = _recorded_revision(card.name, source.repo_id)
        if recorded:
            out.append((source.repo_id, recorded, REVISION_FIRST_FETCH))
        else:
            out.append((source.repo_id, None, f"not fetched yet — revision '{source.revision}' will be pinned at first fetch"))
    return out


@dataclass(frozen=True)
class PlannedFile:
    """One line of a fetch plan."""

    card: str
    file: str
    size: int | None  # bytes, None when unknown
    state: str  # to fetch | cached | local | installed
    source: str


def fetch_plan(names: Sequence[str], remote: bool = False) -> list[PlannedFile]:
    """What :func:`fetch` of ``names`` would transfer: per file its size (the card's, the cache record's,
    or — with ``remote`` and online — the hub's / server's answer) and whether it is already there."""
    out: list[PlannedFile] = []
    for name in names:
        card = get_card(name)
        status = card_status(card.name)
        files = _card_files(card)
        remote_sizes: dict[str, int | None] = {}
        source = card.sources[0]
        if remote and not is_offline() and (files is None or any(card.file(f).size is None for f in status.missing if f != "*")):
            for src in card.sources:
                try:
                    remote_sizes = src.remote_sizes(card, _recorded_revision(card.name, src.repo_id) if isinstance(src, HfSource) else None)
                    source = src
                    break
                except SourceError:
                    continue
        if files is None:
            listed = [f for f in remote_sizes if f != "(download)"] or ["*"]
            out += [PlannedFile(card.name, f, remote_sizes.get(f), "to fetch", source.describe()) for f in listed]
            continue
        for f in files:
            rec = _record(card.name, f)
            size = card.file(f).size or (rec.size if rec else None) or remote_sizes.get(f)
            if f in status.missing or f in status.corrupt:
                state = "to fetch"
            elif _local_candidate(card, f) is not None:
                state = "local"
            elif (_card_dir(card.name) / f).is_file():
                state = "cached"
            else:
                state = "installed"
            src = next((s for s in card.sources if s.provides(f, card)), card.sources[0])
            out.append(PlannedFile(card.name, f, size, state, src.describe()))
        if "(download)" in remote_sizes and remote_sizes["(download)"]:  # an archive: one download for its members
            todo = [i for i, p in enumerate(out) if p.card == card.name and p.state == "to fetch" and p.size is None]
            if todo:
                out[todo[0]] = PlannedFile(card.name, out[todo[0]].file + " (archive)", remote_sizes["(download)"], "to fetch", source.describe())
    return out

# ----------------------------------------------------------------------------------- verification
def verify(name: str | Sequence[str] | None = None) -> list[VerifyResult]:
    """Re-hash the files of one card, several, or (None) every card; never fetches.

    Status per file: ``ok`` (matches the pinned or first-download hash), ``mismatch``, ``missing``,
    ``unpinned`` (a local file of a card without a pinned hash: used as given)."""
    names = [c.name for c in _cards_in_order()] if name is None else [name] if isinstance(name, str) else list(name)
    results = []
    for card_name in names:
        card = get_card(card_name)
        files = _card_files(card)
        if files is None:
            folder = _local_folder(card)
            if folder is not None:
                results += [
                    VerifyResult(card.name, p.relative_to(folder).as_posix(), "unpinned", p, trust=TRUST_FIRST_USE, where="local")
                    for p in sorted(folder.rglob("*"))
                    if p.is_file()
                ]
            else:
                results.append(VerifyResult(card.name, "*", "missing", None, trust=TRUST_FIRST_USE))
            continue
        for f in files:
            results.append(_verify_file(card, f))
    return results


def _verify_file(card: ModelCard, filename: str) -> VerifyResult:
    local = _local_candidate(card, filename)
    sha, _, trust = _expected(card, filename)
    if local is not None:
        spec = card.file(filename)
        actual = _sha256(local)
        if not spec.sha256:
            return VerifyResult(card.name, filename, "unpinned", local, None, actual, TRUST_FIRST_USE, "local")
        status = "ok" if actual == spec.sha256 else "mismatch"
        return VerifyResult(card.name, filename, status, local, spec.sha256, actual, TRUST_PINNED, "local")
    path = _card_dir(card.name) / filename
    if not path.is_file():
        return VerifyResult(card.name, filename, "missing", None, sha, None, trust)
    actual = _sha256(path)
    if sha is None:  # cached without a record (e.g. hashes.json deleted): record it now
        records = _read_records(card.name)
        records["files"][filename] = {"sha256": actual, "size": path.stat().st_size, "trust": TRUST_FIRST_USE, "origin": "found in cache"}
        _write_records(card.name, records)
        return VerifyResult(card.name, filename, "ok", path, actual, actual, TRUST_FIRST_USE)
    return VerifyResult(card.name, filename, "ok" if actual == sha else "mismatch", path, sha, actual, trust)



# ------------------------------------------------------------------------------------ reporting
def card_summary(card: ModelCard) -> dict:
    """JSON-able description of a card and its cache state (for ``stellar models list --json``)."""
    records = _read_records(card.name)
    names = _card_files(card) or []
    files = []
    for f in names:
        spec = card.file(f)
        rec = records["files"].get(f)
        local = _local_candidate(card, f)
        cached_path = _card_dir(card.name) / f
        files.append(
            {
                "name": f,
                "sha256": spec.sha256 or (rec or {}).get("sha256"),
                "trust": spec.trust,
                "size": spec.size or (rec or {}).get("size"),
                "cached": cached_path.is_file(),
                "local": str(local) if local else None,
            }
        )
    return {
        "name": card.name,
        "aliases": list(card.aliases),
        "task": card.task,
        "sources": [s.describe() for s in card.sources],
        "files": files,
        "discovered_files": card.discovered,
        "licence": card.licence,
        "citation": card.citation,
        "preprocessing": dict(card.preprocessing),
        "requires": list(card.requires),
        "notes": card.notes,
        "revisions": records["revisions"],
        "cached": is_cached(card.name),
        "folder": str(_card_dir(card.name)),
    }



