"""Model cards and the weights cache (DESIGN §4): every pretrained model Stellar-Bench loads.

A :class:`ModelCard` is *data*: name, task, the files it needs (with sha256 and size where known),
one or more sources in priority order, licence, citation and the preprocessing protocol the
weights expect. All cards live in :data:`CARDS` at the bottom of this module, nowhere else.

Sources (tried in the card's order, after the user's local files):

- ``hf``   — :class:`HfSource`: a Hugging Face repo id + pinned revision, through ``huggingface_hub``
  (imported lazily). Either the card lists its files, or the source lists file *patterns* and the
  files are discovered from the repo listing at the pinned revision (whole-repo cards such as OWLv2).
- ``url``  — :class:`UrlSource`: a direct file URL (GitHub releases, dlib.net), optionally a ``zip``
  archive (its members are unpacked) or a ``bz2``-compressed single file.
- ``pypi`` — :class:`PypiSource`: member files inside a published package (``facenet-pytorch==2.6.0``
  ships the MTCNN weights, ``face-recognition-models==0.3.0`` the dlib models). An installed
  distribution with exactly that version is used first (a local copy, allowed offline); otherwise
  ``python -m pip download --no-deps SPEC`` fetches the wheel or sdist and the members are unpacked.
- ``local`` — implicit for every card: ``--weights NAME=PATH`` / :func:`set_local_override` (a file or
  a folder) and ``$STELLAR_WEIGHTS_DIR/<card>/<file>``. Local files are used in place, not copied.

Cache layout: ``$STELLAR_HOME`` (default ``~/.cache/stellar``) ``/models/<card>/<file>`` plus
``/models/<card>/hashes.json`` (per file: sha256, size, trust, source, resolved revision, time).
``$STELLAR_HOME/hf`` is the ``huggingface_hub`` cache; hub files are hard-linked from it into
``models/<card>/`` (copied when the file system refuses links), so a file is stored once.

Choices and deviations (documented here as STYLE asks):

- Integrity: every fetched file is sha256-verified *before* it is moved into place (temp file in
  the card folder + ``os.replace``), so the cache never holds a partial or unverified file. A
  mismatch raises :class:`HashMismatchError` naming the file, the expected and the actual hash, and
  nothing is installed. Files whose hash could not be computed when the card was written (hub and
  GitHub files unreachable from where this was developed) are *trust-on-first-use*: the hash is
  recorded in ``hashes.json`` at first download and verified against it afterwards;
  ``stellar models list/verify`` say "recorded on first download" for them.
- Cache hits are checked by size (cheap) on every :func:`resolve_file`; the full sha256 is
  re-checked by :func:`fetch` and :func:`verify` (hashing a 10 GB SDXL snapshot at every metric
  call would be absurd). A cached file whose size is wrong is deleted and fetched again.
- Local files with a pinned sha256 are verified (once per process per file state) and a mismatch is
  an error: a card name promises specific weights, and numbers from other weights would be
  silently incomparable. Local files of trust-on-first-use cards are used as given.
- Revisions: hub cards are pinned to commits found in public references. Where none was found the
  card says ``revision="main"`` with a note; the commit it resolves to at first fetch is recorded in
  ``hashes.json`` and used for every later fetch of that card, so one cache never mixes commits.
- Offline mode (``STELLAR_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on) never touches the
  network: ``hf`` and ``url`` sources and ``pip download`` are not attempted; copying from an
  installed distribution still is (it is local). The error names the card, the file, and the
  commands that provide it.
- No locking: two processes fetching the same file each stage their own temp file and the last
  ``os.replace`` wins; both copies are verified, so the result is correct either way.
"""

from __future__ import annotations

import bz2
import difflib
import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import ClassVar, Iterable, Mapping, Sequence, Union

from stellar.data.layout import sha256_file
from stellar.errors import StellarError

__all__ = [
    "CARDS",
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
    "local_override",
    "resolve",
    "resolve_file",
    "set_local_override",
    "stellar_home",
    "verify",
    "where",
]

HASHES_FILE = "hashes.json"
TRUST_PINNED = "pinned"
TRUST_FIRST_USE = "recorded on first download"
_TRUTHY = {"1", "true", "yes", "on"}
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SNAPSHOT_RE = re.compile(r"[\\/]snapshots[\\/]([0-9a-f]{40})[\\/]")


# ---------------------------------------------------------------------------------------- errors
class UnknownModelError(StellarError):
    """No card has this name (or the card has no such file); lists the close matches."""

    def __init__(self, name: str, suggestions: Sequence[str] = (), what: str = "model card"):
        self.name = name
        self.suggestions = list(suggestions)
        text = f"unknown {what} '{name}'"
        if self.suggestions:
            text += f"; did you mean: {', '.join(self.suggestions)}?"
        if what == "model card":
            text += "\n  fix: `stellar models list` shows every card"
        super().__init__(text)


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


class _SourceError(Exception):
    """One source could not provide the files (internal; collected into WeightsUnavailableError)."""


# ----------------------------------------------------------------------------------- environment
def stellar_home() -> Path:
    """``$STELLAR_HOME``, default ``~/.cache/stellar`` (not created here)."""
    return Path(os.environ.get("STELLAR_HOME") or "~/.cache/stellar").expanduser()


def models_dir() -> Path:
    return stellar_home() / "models"


def is_offline() -> bool:
    """True when ``STELLAR_OFFLINE`` or ``HF_HUB_OFFLINE`` is 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in _TRUTHY for v in ("STELLAR_OFFLINE", "HF_HUB_OFFLINE"))


def weights_dir() -> Path | None:
    """``$STELLAR_WEIGHTS_DIR`` when set (a folder of ``<card>/<file>``)."""
    value = os.environ.get("STELLAR_WEIGHTS_DIR")
    return Path(value).expanduser() if value else None


# ------------------------------------------------------------------------------------ card model
def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if value is None else MappingProxyType(dict(value))


@dataclass(frozen=True)
class ModelFile:
    """One file a card needs. ``name`` may contain ``/`` (repo layout, e.g. ``unet/config.json``)."""

    name: str
    sha256: str | None = None
    size: int | None = None

    @property
    def trust(self) -> str:
        return TRUST_PINNED if self.sha256 else TRUST_FIRST_USE


@dataclass(frozen=True)
class HfSource:
    """Hugging Face Hub repo at a revision.

    ``files`` maps card file name -> path in the repo (default: the same name). For cards that list
    no files, the repo is listed at the revision and every file matching ``allow_patterns`` is taken,
    plus the first group of ``weights_preference`` that matches anything (so a repo carrying both
    ``model.safetensors`` and ``pytorch_model.bin`` is fetched once, in the preferred format).
    """

    repo_id: str
    revision: str
    files: Mapping[str, str] | None = None
    allow_patterns: tuple[str, ...] = ()
    weights_preference: tuple[tuple[str, ...], ...] = ()
    repo_type: str = "model"
    kind: ClassVar[str] = "hf"

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _frozen_map(self.files))

    @property
    def pinned(self) -> bool:
        return bool(_COMMIT_RE.match(self.revision))

    def describe(self) -> str:
        return f"hf {self.repo_id}@{self.revision if self.pinned else self.revision + ' (unpinned)'}"

    def repo_path(self, filename: str) -> str:
        return (self.files or {}).get(filename, filename)

    def provides(self, filename: str, card: "ModelCard") -> bool:
        return self.files is None or filename in self.files

    def fetch(self, card: "ModelCard", filenames: list[str] | None, staging: Path, offline: bool) -> "_Fetched":
        if offline:
            raise _SourceError(f"{self.describe()}: offline, not attempted")
        try:
            import huggingface_hub
        except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
            raise _SourceError(f"{self.describe()}: huggingface_hub is not installed ({exc})") from exc
        revision = _recorded_revision(card.name, self.repo_id) or self.revision
        cache_dir = stellar_home() / "hf"
        try:
            if filenames is None:
                listing = huggingface_hub.list_repo_files(self.repo_id, revision=revision, repo_type=self.repo_type)
                filenames = self._select(listing)
                if not filenames:
                    raise _SourceError(f"{self.describe()}: no file of the repo matches {list(self.allow_patterns)}")
            out: dict[str, Path] = {}
            resolved: str | None = revision if _COMMIT_RE.match(revision) else None
            for name in filenames:
                got = huggingface_hub.hf_hub_download(
                    self.repo_id,
                    self.repo_path(name),
                    revision=revision,
                    repo_type=self.repo_type,
                    cache_dir=str(cache_dir),
                )
                match = _SNAPSHOT_RE.search(str(got))
                if match:  # the commit the revision resolved to, recorded for reproducibility
                    resolved = match.group(1)
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(Path(got).resolve(), target)
                out[name] = target
        except _SourceError:
            raise
        except Exception as exc:  # hub errors are many types (HTTP, repo not found, gated, ...)
            raise _SourceError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        return _Fetched(out, origin=self.describe(), revision=resolved)

    def _select(self, listing: Iterable[str]) -> list[str]:
        listing = sorted(listing)
        chosen = [f for f in listing if any(fnmatch.fnmatchcase(f, p) for p in self.allow_patterns)]
        for group in self.weights_preference:
            weights = [f for f in listing if any(fnmatch.fnmatchcase(f, p) for p in group)]
            if weights:
                chosen += [f for f in weights if f not in chosen]
                break
        return chosen


@dataclass(frozen=True)
class UrlSource:
    """A direct URL. ``archive``: None (the file itself), ``"bz2"`` (a compressed single file) or
    ``"zip"`` (``members`` maps card file -> member path; a member is also found by its unique base
    name, because some released zips nest their files one folder deeper than documented).
    ``file``: for non-zip URLs, the card file this URL provides (default: the card's only file)."""

    url: str
    archive: str | None = None
    members: Mapping[str, str] | None = None
    file: str | None = None
    kind: ClassVar[str] = "url"

    def __post_init__(self) -> None:
        if self.archive not in (None, "zip", "bz2"):
            raise ValueError(f"UrlSource.archive must be None, 'zip' or 'bz2', not {self.archive!r}")
        object.__setattr__(self, "members", _frozen_map(self.members))

    def describe(self) -> str:
        return f"url {self.url}" + (f" ({self.archive})" if self.archive else "")

    def provides(self, filename: str, card: "ModelCard") -> bool:
        if self.archive == "zip":
            return self.members is None or filename in self.members
        if self.file is not None:
            return filename == self.file
        return len(card.files) == 1

    def fetch(self, card: "ModelCard", filenames: list[str] | None, staging: Path, offline: bool) -> "_Fetched":
        if offline:
            raise _SourceError(f"{self.describe()}: offline, not attempted")
        if filenames is None:
            raise _SourceError(f"{self.describe()}: cannot list files")
        download = staging / ".download"
        _download(self.url, download, desc=f"{card.name}: {PurePosixPath(self.url).name}")
        out: dict[str, Path] = {}
        if self.archive == "zip":
            try:
                with zipfile.ZipFile(download) as zf:
                    names = zf.namelist()
                    for name in filenames:
                        member = _find_member(names, (self.members or {}).get(name, name))
                        if member is None:
                            raise _SourceError(f"{self.describe()}: no member '{name}' in the archive")
                        out[name] = _extract(zf.open(member), staging / name)
            except zipfile.BadZipFile as exc:
                raise _SourceError(f"{self.describe()}: not a zip archive ({exc})") from exc
        else:
            (name,) = filenames
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.archive == "bz2":
                try:
                    with bz2.open(download, "rb") as src:
                        _extract(src, target)
                except (OSError, EOFError) as exc:
                    raise _SourceError(f"{self.describe()}: bad bz2 data ({exc})") from exc
            else:
                os.replace(download, target)
            out[name] = target
        download.unlink(missing_ok=True)
        return _Fetched(out, origin=self.describe())


@dataclass(frozen=True)
class PypiSource:
    """Member files of a published package ``package==version``.

    ``members`` maps card file -> path inside the installed distribution / wheel
    (e.g. ``facenet_pytorch/data/pnet.pt``). In an sdist the same path is looked up below the
    sdist's top folder (``NAME-VERSION/`` or ``NAME-VERSION/src/``).
    """

    package: str
    version: str
    members: Mapping[str, str] = field(default_factory=dict)
    kind: ClassVar[str] = "pypi"

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", _frozen_map(self.members))

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"

    def describe(self) -> str:
        return f"pypi {self.spec}"

    def provides(self, filename: str, card: "ModelCard") -> bool:
        return filename in self.members

    def installed_path(self, filename: str) -> Path | None:
        """The member inside an installed distribution of exactly this version, if any."""
        try:
            dist = importlib.metadata.distribution(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None
        if dist.version != self.version:
            return None
        path = Path(str(dist.locate_file(self.members[filename])))
        return path if path.is_file() else None

    def fetch(self, card: "ModelCard", filenames: list[str] | None, staging: Path, offline: bool) -> "_Fetched":
        if filenames is None:
            filenames = list(self.members)
        out: dict[str, Path] = {}
        remaining = []
        for name in filenames:
            installed = self.installed_path(name)
            if installed is not None:  # a local copy: allowed offline
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(installed, target)
                out[name] = target
            else:
                remaining.append(name)
        origin = f"{self.describe()} (installed)"
        if remaining:
            if offline:
                raise _SourceError(f"{self.describe()}: not installed at this version, and offline: pip download not attempted")
            artifact = self._pip_download(staging / ".pip")
            origin = f"{self.describe()} ({artifact.name})"
            for name in remaining:
                out[name] = _extract_from_package(artifact, self.members[name], staging / name, self.describe())
            shutil.rmtree(staging / ".pip", ignore_errors=True)
        return _Fetched(out, origin=origin)

    def _pip_download(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        cmd = _pip_download_command(self.spec, dest)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _SourceError(f"{self.describe()}: pip download failed to run ({exc})") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise _SourceError(f"{self.describe()}: pip download exited {proc.returncode}: {' | '.join(tail)}")
        artifacts = sorted(p for p in dest.iterdir() if p.suffix in (".whl", ".zip") or p.name.endswith((".tar.gz", ".tgz")))
        if not artifacts:
            raise _SourceError(f"{self.describe()}: pip download produced no wheel or sdist in {dest}")
        return artifacts[0]


Source = Union[HfSource, UrlSource, PypiSource]


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to obtain, verify and correctly use one pretrained model.

    ``files`` empty means the file list is discovered from the (single) hub source at first fetch
    and recorded; ``requires`` names other cards the model cannot be used without (e.g. the CLIP
    backbone under an aesthetic head); ``preprocessing`` is the input protocol the weights expect.
    """

    name: str
    task: str
    sources: tuple[Source, ...]
    files: tuple[ModelFile, ...]
    licence: str
    citation: str
    preprocessing: Mapping[str, object] = field(default_factory=dict)
    description: str = ""
    requires: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "preprocessing", MappingProxyType(dict(self.preprocessing)))
        if not self.sources:
            raise ValueError(f"card {self.name}: no source")
        if not self.files and not (len(self.sources) == 1 and isinstance(self.sources[0], HfSource)):
            raise ValueError(f"card {self.name}: only a single hub source may discover its files")
        for f in self.files:
            if not any(s.provides(f.name, self) for s in self.sources):
                raise ValueError(f"card {self.name}: no source provides {f.name}")

    @property
    def discovered(self) -> bool:
        """True when the file list comes from the hub listing at fetch time."""
        return not self.files

    def file(self, filename: str) -> ModelFile:
        for f in self.files:
            if f.name == filename:
                return f
        if self.discovered:
            return ModelFile(filename)
        names = [f.name for f in self.files]
        raise UnknownModelError(
            filename, difflib.get_close_matches(filename, names, n=3) or names, what=f"file of model card '{self.name}'"
        )

    @property
    def file_names(self) -> list[str]:
        return [f.name for f in self.files]


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


@dataclass
class _Fetched:
    files: dict[str, Path]
    origin: str
    revision: str | None = None


# --------------------------------------------------------------------------------- file helpers
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) so a local file is hashed once per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = sha256_file(path)
    return _HASH_MEMO[key]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # other file system, or links not allowed
        shutil.copyfile(src, dst)


def _extract(stream, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with stream, open(target, "wb") as out:
        shutil.copyfileobj(stream, out, length=1 << 20)
    return target


def _find_member(names: Sequence[str], wanted: str) -> str | None:
    """Exact member path, else the unique member whose base name is ``wanted``'s base name."""
    if wanted in names:
        return wanted
    base = PurePosixPath(wanted).name
    hits = [n for n in names if PurePosixPath(n).name == base and not n.endswith("/")]
    return hits[0] if len(hits) == 1 else None


def _extract_from_package(artifact: Path, member: str, target: Path, label: str) -> Path:
    """Unpack ``member`` from a wheel (zip) or sdist (tar.gz / zip); sdist paths sit below a top folder."""
    try:
        if artifact.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(artifact) as zf:
                name = _package_member(zf.namelist(), member)
                if name is None:
                    raise _SourceError(f"{label}: {artifact.name} has no member {member}")
                return _extract(zf.open(name), target)
        with tarfile.open(artifact, "r:*") as tf:
            name = _package_member(tf.getnames(), member)
            stream = tf.extractfile(name) if name is not None else None
            if stream is None:
                raise _SourceError(f"{label}: {artifact.name} has no member {member}")
            return _extract(stream, target)
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise _SourceError(f"{label}: cannot read {artifact.name} ({exc})") from exc


def _package_member(names: Sequence[str], member: str) -> str | None:
    if member in names:  # wheel layout
        return member
    for name in names:  # sdist layout: TOP/member or TOP/src/member
        parts = name.split("/", 1)
        if len(parts) == 2 and parts[1] in (member, f"src/{member}"):
            return name
    return None


def _pip_download_command(spec: str, dest: Path) -> list[str]:
    """The pip command fetching one distribution (no dependencies) into ``dest``.

    pip reads its usual configuration (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``pip.conf``), so
    mirrors and private indexes work without options here."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input", spec, "-d", str(dest)]


def _download(url: str, target: Path, desc: str) -> None:
    """Stream ``url`` to ``target`` with a progress bar; any failure -> _SourceError."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "stellar-bench"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp, open(target, "wb") as out:
            total = resp.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=desc, leave=False) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        raise _SourceError(f"url {url}: {exc}") from exc


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


# ------------------------------------------------------------------------------ card registry
def _index(cards: Sequence[ModelCard]) -> dict[str, ModelCard]:
    index: dict[str, ModelCard] = {}
    for card in cards:
        for key in (card.name, *card.aliases):
            if key in index:
                raise ValueError(f"duplicate model card name {key!r}")
            index[key] = card
    return index


def get_card(name: str) -> ModelCard:
    """The card called ``name`` (or one of its aliases); unknown -> :class:`UnknownModelError` with close matches."""
    card = _BY_NAME.get(name)
    if card is None:
        raise UnknownModelError(name, difflib.get_close_matches(name, list(_BY_NAME), n=4, cutoff=0.5))
    return card


def list_cards(task: str | None = None) -> list[ModelCard]:
    """All cards (in declaration order), optionally only those of one ``task``."""
    return [c for c in CARDS if task is None or c.task == task]


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


def _check_local(card: ModelCard, filename: str, path: Path) -> Path:
    spec = card.file(filename)
    if spec.sha256:
        actual = _sha256(path)
        if actual != spec.sha256:
            raise HashMismatchError(path, spec.sha256, actual, card.name, filename, origin="local weights")
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
                got = source.fetch(card, wanted, staging, offline)
            except _SourceError as exc:
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


def _install(card: ModelCard, got: _Fetched) -> dict[str, Path]:
    """Verify every staged file, then move them into the cache and record their hashes.

    All files are verified before any is moved, so a mismatch leaves the cache as it was."""
    folder = _card_dir(card.name)
    checked: list[tuple[str, Path, str, str]] = []
    for name, staged in got.files.items():
        sha, size, trust = _expected(card, name)
        actual = sha256_file(staged)
        if sha is not None and actual != sha:
            raise HashMismatchError(folder / name, sha, actual, card.name, name, origin=got.origin)
        if sha is None and size is not None and staged.stat().st_size != size:
            raise HashMismatchError(folder / name, f"(size {size})", f"{actual} (size {staged.stat().st_size})", card.name, name, got.origin)
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
        }
        out[name] = final
    if got.revision:
        for source in card.sources:
            if isinstance(source, HfSource) and got.origin == source.describe():
                records["revisions"][source.repo_id] = got.revision
    _write_records(card.name, records)
    return out


# ----------------------------------------------------------------------------------- verification
def verify(name: str | Sequence[str] | None = None) -> list[VerifyResult]:
    """Re-hash the files of one card, several, or (None) every card; never fetches.

    Status per file: ``ok`` (matches the pinned or first-download hash), ``mismatch``, ``missing``,
    ``unpinned`` (a local file of a card without a pinned hash: used as given)."""
    names = [c.name for c in CARDS] if name is None else [name] if isinstance(name, str) else list(name)
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


# ======================================================================================== CARDS
# Data only below. sha256/size values: computed here from the files shipped in facenet-pytorch 2.6.0
# and face-recognition-models 0.3.0 (they match the wheels' RECORD), or taken from several
# independent public references that agree (facenet 20180402-114759, buffalo_l). Hub revisions are
# commits seen pinned in public code; the rest are trust-on-first-use (see the module docstring).

_FACENET_PYTORCH = PypiSource(
    "facenet-pytorch",
    "2.6.0",
    {f"{n}.pt": f"facenet_pytorch/data/{n}.pt" for n in ("pnet", "rnet", "onet")},
)


def _dlib_sources(filename: str) -> tuple[Source, ...]:
    return (
        PypiSource("face-recognition-models", "0.3.0", {filename: f"face_recognition_models/models/{filename}"}),
        UrlSource(f"http://dlib.net/files/{filename}.bz2", archive="bz2", file=filename),
    )


_DLIB_LICENCE = (
    "CC0-1.0 for the model files (LICENSE shipped in face-recognition-models 0.3.0; package metadata says MIT); "
    "models by Davis King, dlib (Boost Software License)"
)
_DLIB_CITATION = "D. E. King, Dlib-ml: A Machine Learning Toolkit, JMLR 10, 2009. Models: github.com/davisking/dlib-models"

_INSIGHTFACE_LICENCE = (
    "NON-COMMERCIAL RESEARCH ONLY: insightface's pretrained models (incl. auto-downloaded model packs) are "
    "released for non-commercial research purposes only; the insightface code is MIT"
)
_ARCFACE_PREPROCESSING = {
    "detector_input": "RGB, resized to fit 640x640 (aspect kept, zero-padded), (x - 127.5) / 128",
    "alignment": "5-point similarity transform to the ArcFace 112x112 template",
    "recognition_input": [112, 112],
    "recognition_normalisation": "(x - 127.5) / 127.5, RGB",
    "embedding_dim": 512,
    "l2_normalised": True,
}

_HF_TRANSFORMERS_CONFIG = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
#: Weight files in preference order: safetensors if the repo has them, else the pickled .bin.
_HF_WEIGHTS = (
    ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json"),
)

_CLIP_OPENAI_NORM = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
_SD_TOKENIZER = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")
_SDXL_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    *(f"tokenizer/{n}" for n in _SD_TOKENIZER),
    *(f"tokenizer_2/{n}" for n in _SD_TOKENIZER),
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
_CLIP_L_FILES = (
    "config.json",
    "merges.txt",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
)

CARDS: tuple[ModelCard, ...] = (
    # ------------------------------------------------------------------ faces (issue 3)
    ModelCard(
        name="mtcnn",
        task="face-detection",
        description="MTCNN P-Net/R-Net/O-Net weights as shipped in the facenet-pytorch wheel",
        sources=(_FACENET_PYTORCH,),
        files=(
            ModelFile("pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570),
            ModelFile("rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147),
            ModelFile("onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269),
        ),
        licence="MIT (facenet-pytorch, which ported the original MTCNN Caffe weights via davidsandberg/facenet, MIT)",
        citation=(
            "K. Zhang, Z. Zhang, Z. Li, Y. Qiao, Joint Face Detection and Alignment using Multitask Cascaded "
            "Convolutional Networks, IEEE Signal Processing Letters 23(10), 2016"
        ),
        preprocessing={
            "input": "RGB uint8 HxWx3",
            "normalisation": "(x - 127.5) * 0.0078125",
            "min_face_size": 20,
            "scale_factor": 0.709,
            "thresholds": [0.6, 0.7, 0.7],
            "landmarks": "5: left eye, right eye, nose, left mouth, right mouth",
        },
    ),
    ModelCard(
        name="facenet-vggface2",
        task="face-embedding",
        description="InceptionResnetV1 trained on VGGFace2 (David Sandberg's 20180402-114759), facenet-pytorch state dict",
        sources=(UrlSource("https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"),),
        files=(ModelFile("20180402-114759-vggface2.pt", "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b", 111898327),),
        licence=(
            "MIT for the code and weight conversion (facenet-pytorch, davidsandberg/facenet); the weights were trained "
            "on VGGFace2, whose images are licensed for non-commercial research — check its terms before other uses"
        ),
        citation=(
            "F. Schroff, D. Kalenichenko, J. Philbin, FaceNet: A Unified Embedding for Face Recognition and Clustering, "
            "CVPR 2015; Q. Cao et al., VGGFace2: A dataset for recognising faces across pose and age, FG 2018"
        ),
        preprocessing={
            "input_size": [160, 160],
            "crop": "detector box (MTCNN, margin 0), resized to 160x160 (facenet-pytorch extract_face)",
            "normalisation": "(x - 127.5) / 128.0 (fixed_image_standardization)",
            "embedding_dim": 512,
            "l2_normalised": True,
        },
    ),
    ModelCard(
        name="dlib-shape-predictor-5",
        task="face-landmarks",
        description="dlib 5-point face landmark predictor (used to build dlib face chips)",
        sources=_dlib_sources("shape_predictor_5_face_landmarks.dat"),
        files=(ModelFile("shape_predictor_5_face_landmarks.dat", "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", 9150489),),
        licence=_DLIB_LICENCE,
        citation=_DLIB_CITATION,
        preprocessing={"input": "RGB uint8 + a face rectangle", "landmarks": 5},
    ),
    ModelCard(
        name="dlib-resnet-v1",
        task="face-embedding",
        description="dlib ResNet-29 face recognition model (128-d), dlib_face_recognition_resnet_model_v1",
        sources=_dlib_sources("dlib_face_recognition_resnet_model_v1.dat"),
        files=(ModelFile("dlib_face_recognition_resnet_model_v1.dat", "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", 22466066),),
        licence=_DLIB_LICENCE,
        citation=_DLIB_CITATION,
        preprocessing={
            "alignment": "dlib get_face_chip from 5 landmarks (dlib-shape-predictor-5), 150x150, padding 0.25",
            "embedding_dim": 128,
            "l2_normalised": "no (dlib output); Stellar L2-normalises",
        },
        requires=("dlib-shape-predictor-5",),
    ),
    ModelCard(
        name="dlib-mmod-cnn",
        task="face-detection",
        description="dlib MMOD CNN face detector (mmod_human_face_detector)",
        sources=_dlib_sources("mmod_human_face_detector.dat"),
        files=(ModelFile("mmod_human_face_detector.dat", "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", 729940),),
        licence=_DLIB_LICENCE,
        citation=_DLIB_CITATION + "; D. E. King, Max-Margin Object Detection, arXiv:1502.00046",
        preprocessing={"input": "RGB uint8", "upsample": "0-2 times for small faces"},
    ),
    ModelCard(
        name="arcface-buffalo-l",
        task="face-embedding",
        description="insightface buffalo_l pack: SCRFD-10GF detector (det_10g) + ArcFace R50 trained on WebFace600K (w600k_r50)",
        sources=(
            UrlSource(
                "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
                archive="zip",
                members={"det_10g.onnx": "det_10g.onnx", "w600k_r50.onnx": "w600k_r50.onnx"},
            ),
            HfSource(
                "public-data/insightface",
                "33c1063c49c785b7652d3fd529f86fa4f149392b",
                files={"det_10g.onnx": "models/buffalo_l/det_10g.onnx", "w600k_r50.onnx": "models/buffalo_l/w600k_r50.onnx"},
            ),
        ),
        files=(
            ModelFile("det_10g.onnx", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91", 16923827),
            ModelFile("w600k_r50.onnx", "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43", 174383860),
        ),
        licence=_INSIGHTFACE_LICENCE,
        citation=(
            "J. Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019; "
            "J. Guo et al., Sample and Computation Redistribution for Efficient Face Detection (SCRFD), ICLR 2022; "
            "Z. Zhu et al., WebFace260M, CVPR 2021"
        ),
        preprocessing=_ARCFACE_PREPROCESSING,
    ),
    ModelCard(
        name="arcface-antelopev2",
        task="face-embedding",
        aliases=("arcface-r100-glint360k",),
        description="insightface antelopev2 pack: SCRFD-10GF with keypoints + ArcFace ResNet100 trained on Glint360K (glintr100)",
        sources=(
            UrlSource(
                "https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip",
                archive="zip",
                # the released zip nests its files in antelopev2/; members are also found by base name
                members={"scrfd_10g_bnkps.onnx": "antelopev2/scrfd_10g_bnkps.onnx", "glintr100.onnx": "antelopev2/glintr100.onnx"},
            ),
        ),
        files=(ModelFile("scrfd_10g_bnkps.onnx"), ModelFile("glintr100.onnx")),
        licence=_INSIGHTFACE_LICENCE,
        citation=(
            "J. Deng et al., ArcFace, CVPR 2019; X. An et al., Partial FC: Training 10 Million Identities on a Single "
            "Machine (Glint360K), ICCVW 2021; J. Guo et al., SCRFD, ICLR 2022"
        ),
        preprocessing=_ARCFACE_PREPROCESSING,
        notes="sha256 recorded on first download (the zip could not be fetched where the card was written)",
    ),
    # ------------------------------------------------------------------ CLIP and other backbones (later issues)
    ModelCard(
        name="clip-vit-l-14-openai",
        task="clip",
        description="OpenAI CLIP ViT-L/14 (224 px), transformers format",
        sources=(HfSource("openai/clip-vit-large-patch14", "32bd64288804d66eefd0ccbe215aa642df71cc41"),),
        files=tuple(ModelFile(n) for n in _CLIP_L_FILES),
        licence="MIT (openai/CLIP); see the model card's intended-use section",
        citation="A. Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
        preprocessing={"input_size": 224, "resize": "shortest side 224, bicubic, center crop", **_CLIP_OPENAI_NORM},
    ),
    ModelCard(
        name="clip-vit-bigg-14-laion2b",
        task="clip",
        description="OpenCLIP ViT-bigG/14 trained on LAION-2B (39B samples seen), transformers format",
        sources=(
            HfSource(
                "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
                "743c27bd53dfe508a0ade0f50698f99b39d03bec",
                allow_patterns=_HF_TRANSFORMERS_CONFIG,
                weights_preference=_HF_WEIGHTS,
            ),
        ),
        files=(),
        licence="MIT (LAION OpenCLIP weights)",
        citation="M. Cherti et al., Reproducible scaling laws for contrastive language-image learning, CVPR 2023",
        preprocessing={"input_size": 224, "resize": "shortest side 224, bicubic, center crop", **_CLIP_OPENAI_NORM},
        notes="files discovered from the repo listing at the pinned revision; sha256 recorded on first download",
    ),
    ModelCard(
        name="owlvit-large-patch14",
        task="open-vocab-detection",
        description="OWL-ViT ViT-L/14 open-vocabulary detector (840 px), transformers format",
        sources=(HfSource("google/owlvit-large-patch14", "main", allow_patterns=_HF_TRANSFORMERS_CONFIG, weights_preference=_HF_WEIGHTS),),
        files=(),
        licence="Apache-2.0",
        citation="M. Minderer et al., Simple Open-Vocabulary Object Detection with Vision Transformers, ECCV 2022",
        preprocessing={"input_size": 840, "resize": "840x840, bicubic", **_CLIP_OPENAI_NORM},
        notes="revision to be pinned: no public commit id found; the commit 'main' resolves to at first fetch is recorded and reused",
    ),
    ModelCard(
        name="blip-vqa-base",
        task="vqa",
        description="BLIP VQA (ViT-B), the RFS relation scorer --relation-scorer vqa: p(yes) to 'Is the person {predicate} the {object}?'",
        sources=(HfSource("Salesforce/blip-vqa-base", "main", allow_patterns=(*_HF_TRANSFORMERS_CONFIG, "vocab.txt"), weights_preference=_HF_WEIGHTS),),
        files=(),
        licence="BSD-3-Clause",
        citation="J. Li, D. Li, C. Xiong, S. Hoi, BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language Understanding and Generation, ICML 2022",
        preprocessing={"input_size": 384, "resize": "384x384, bicubic", **_CLIP_OPENAI_NORM},
        notes="revision to be pinned: the commit 'main' resolves to at first fetch is recorded and reused",
    ),
    ModelCard(
        name="owlv2-large-patch14-ensemble",
        task="open-vocab-detection",
        description="OWLv2 ViT-L/14 (self-trained + fine-tuned ensemble, 1008 px), transformers format",
        sources=(
            HfSource(
                "google/owlv2-large-patch14-ensemble",
                "d638f16c163f70a8b6bd643b2ddbfc8be2c34807",
                allow_patterns=_HF_TRANSFORMERS_CONFIG,
                weights_preference=_HF_WEIGHTS,
            ),
        ),
        files=(),
        licence="Apache-2.0",
        citation="M. Minderer, A. Gritsenko, N. Houlsby, Scaling Open-Vocabulary Object Detection, NeurIPS 2023",
        preprocessing={"input_size": 1008, "resize": "pad to square (gray 0.5), resize 1008x1008", **_CLIP_OPENAI_NORM},
    ),
    ModelCard(
        name="grounding-dino-base",
        task="open-vocab-detection",
        description="Grounding DINO (Swin-B), transformers format",
        sources=(
            HfSource(
                "IDEA-Research/grounding-dino-base",
                "12bdfa3120f3e7ec7b434d90674b3396eccf88eb",
                allow_patterns=(*_HF_TRANSFORMERS_CONFIG, "vocab.txt"),
                weights_preference=_HF_WEIGHTS,
            ),
        ),
        files=(),
        licence="Apache-2.0",
        citation="S. Liu et al., Grounding DINO: Marrying DINO with Grounded Pre-Training for Open-Set Object Detection, ECCV 2024",
        preprocessing={"resize": "shortest side 800, longest <= 1333", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    ),
    ModelCard(
        name="dino-vits16",
        task="image-embedding",
        description="DINO ViT-S/16 self-supervised image features (the DINO metric of DreamBooth)",
        sources=(
            HfSource(
                "facebook/dino-vits16",
                "abe3b354cb6a9b6f146096b14a4a9d7eecbcb4bd",
                allow_patterns=("config.json", "preprocessor_config.json"),
                weights_preference=_HF_WEIGHTS,
            ),
        ),
        files=(),
        licence="Apache-2.0",
        citation="M. Caron et al., Emerging Properties in Self-Supervised Vision Transformers, ICCV 2021",
        # what the checkpoint's own preprocessor_config.json does (used as shipped), not DINO's training transform
        preprocessing={"input_size": 224, "resize": "224x224, bilinear, no crop", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ),
    ModelCard(
        name="clip-vit-h-14-laion2b-processor",
        task="processor",
        description="Tokenizer and image-processor files of laion/CLIP-ViT-H-14-laion2B-s32B-b79K (what PickScore uses)",
        sources=(
            HfSource(
                "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
                "1c2b8495b28150b8a4922ee1c8edee224c284c0c",
                allow_patterns=tuple(p for p in _HF_TRANSFORMERS_CONFIG if p != "config.json"),
            ),
        ),
        files=(),
        licence="MIT (LAION OpenCLIP)",
        citation="M. Cherti et al., Reproducible scaling laws for contrastive language-image learning, CVPR 2023",
        preprocessing={"input_size": 224, "resize": "shortest side 224, bicubic, center crop", **_CLIP_OPENAI_NORM},
    ),
    ModelCard(
        name="pickscore-v1",
        task="preference",
        description="PickScore v1: CLIP-H fine-tuned on Pick-a-Pic human preferences, transformers format",
        sources=(
            HfSource(
                "yuvalkirstain/PickScore_v1",
                "a4e4367c6dfa7288a00c550414478f865b875800",
                allow_patterns=("config.json",),
                weights_preference=_HF_WEIGHTS,
            ),
        ),
        files=(),
        requires=("clip-vit-h-14-laion2b-processor",),
        licence="MIT (PickScore repository)",
        citation="Y. Kirstain et al., Pick-a-Pic: An Open Dataset of User Preferences for Text-to-Image Generation, NeurIPS 2023",
        preprocessing={"processor": "clip-vit-h-14-laion2b-processor", "score": "logit_scale.exp() * cosine(image, text) (the model's own scale, ~100)"},
    ),
    ModelCard(
        name="laion-aesthetic-v2",
        task="aesthetic",
        description="LAION improved aesthetic predictor: MLP on L2-normalised OpenAI CLIP ViT-L/14 image embeddings",
        sources=(UrlSource("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth"),),
        files=(ModelFile("sac+logos+ava1-l14-linearMSE.pth"),),
        requires=("clip-vit-l-14-openai",),
        licence="Apache-2.0 (repository licence as listed on GitHub; not re-checked here)",
        citation="C. Schuhmann, LAION-Aesthetics Predictor V2, github.com/christophschuhmann/improved-aesthetic-predictor, 2022",
        preprocessing={
            "backbone": "clip-vit-l-14-openai image embedding (768-d), L2-normalised",
            "head": "MLP 768-1024-128-64-16-1 (dropout in training only)",
            "output": "mean opinion score, roughly 1-10",
        },
        notes="GitHub 'raw/main' URL (no release tag exists); sha256 recorded on first download",
    ),
    ModelCard(
        name="hpsv2",
        task="preference",
        description="Human Preference Score v2 and v2.1: OpenCLIP ViT-H/14 fine-tuned on HPD v2",
        sources=(HfSource("xswu/HPSv2", "697403c78157020a1ae59d23f111aa58ced35b0a"),),
        files=(ModelFile("HPS_v2_compressed.pt"), ModelFile("HPS_v2.1_compressed.pt")),
        licence="Apache-2.0 (HPSv2 repository)",
        citation="X. Wu et al., Human Preference Score v2: A Solid Benchmark for Evaluating Human Preferences of Text-to-Image Synthesis, arXiv:2306.09341, 2023",
        preprocessing={"architecture": "open_clip ViT-H-14", "input_size": 224, "resize": "longest side 224, bicubic, letterbox: pad to 224x224 with black (no crop; HPSv2 preprocess_val, open_clip resize_mode=longest)", **_CLIP_OPENAI_NORM},
    ),
    ModelCard(
        name="sdxl-base-1.0",
        task="text-to-image",
        description="Stable Diffusion XL base 1.0 (diffusers layout, fp32 safetensors)",
        sources=(HfSource("stabilityai/stable-diffusion-xl-base-1.0", "462165984030d82259a11f4367a4eed129e94a7b"),),
        files=tuple(ModelFile(n) for n in _SDXL_FILES),
        licence="CreativeML Open RAIL++-M (use restrictions apply; read the licence before use)",
        citation="D. Podell et al., SDXL: Improving Latent Diffusion Models for High-Resolution Image Synthesis, ICLR 2024",
        preprocessing={"resolution": 1024, "vae_scaling_factor": 0.13025, "text_encoders": ["CLIP ViT-L/14", "OpenCLIP ViT-bigG/14"]},
    ),
)

_BY_NAME: dict[str, ModelCard] = _index(CARDS)
