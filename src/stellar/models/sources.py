"""Where a model card's files come from: the three remote source kinds and their download code.

A card (:mod:`stellar.models.registry`) lists sources in priority order; each source stages the
files it provides into a temporary folder inside the card's cache folder, and the registry verifies
them (sha256) before moving them into place. A source never writes into the cache itself.

- ``hf``   — :class:`HfSource`: a Hugging Face repo at a pinned commit, through the real
  ``huggingface_hub`` client (``hf_hub_download``; the repo listing for whole-repo cards). The client's
  own cache is ``$STELLAR_HOME/hf``. Within one call the client resumes a dropped connection with an HTTP
  ``Range`` request (its own retries); a call that fails leaves no partial file (``huggingface_hub`` ≥ 1.x
  downloads to a temp file unique to the call), and the next call keeps every finished file of the repo
  and restarts the unfinished one cleanly.
  ``HF_ENDPOINT`` is read at *call* time and passed to the client as ``endpoint=`` (the client reads
  the variable only once, at import), so a mirror — or the tests' loopback hub — set after import works.
  LFS files are stored by the client under their sha256 (the hub's ETag): a file whose bytes do not
  hash to it is refused even for a card that pins no sha256, and its blob is deleted.
- ``url``  — :class:`UrlSource`: a direct URL (GitHub releases, dlib.net), optionally a ``zip`` archive
  (members unpacked) or a ``bz2``-compressed single file. Downloads are *resumable*: bytes go to
  ``models/<card>/.downloads/<key>.part``; a later call asks for the rest with an HTTP ``Range``
  request and continues (206), or restarts cleanly when the server ignores ranges (200/416). A
  download whose content then fails verification is deleted, so the next call starts from zero.
- ``pypi`` — :class:`PypiSource`: member files of a published package; an installed distribution of
  exactly that version is copied (allowed offline), else ``python -m pip download --no-deps`` fetches
  the wheel or sdist (pip's own configuration — ``PIP_INDEX_URL``, ``--index-url`` in ``pip.conf`` —
  applies, so a local simple index or mirror works).

Network failures are reported at once, never retried in a loop: before the first hub call of a process
the hub's host is probed with one TCP connection (3 s); an unreachable hub fails immediately with the
offline fix (``STELLAR_OFFLINE=1``), instead of the client's retry loop (~23 s per card, issue 9 item 18).
"""

from __future__ import annotations

import bz2
import fnmatch
import hashlib
import http.client
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Iterable, Mapping, Sequence, Union

from stellar.settings import stellar_home

if TYPE_CHECKING:  # pragma: no cover
    from stellar.models.registry import ModelCard

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SNAPSHOT_RE = re.compile(r"[\\/]snapshots[\\/]([0-9a-f]{40})[\\/]")
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class SourceError(Exception):
    """One source could not provide the files (collected into ``WeightsUnavailableError``)."""


@dataclass
class Fetched:
    """What a source staged: ``files`` (card file -> staged path), where from, the hub commit,
    ``expected`` sha256s the source itself vouches for (the hub's LFS ETag), and ``discard``: paths to
    delete when a file fails verification (the hub client's blob, a resumable ``.part``)."""

    files: dict[str, Path]
    origin: str
    revision: str | None = None
    expected: dict[str, str] = field(default_factory=dict)
    discard: dict[str, list[Path]] = field(default_factory=dict)


def frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if value is None else MappingProxyType(dict(value))


# -------------------------------------------------------------------------------------- the hub
def hf_endpoint() -> str:
    """``$HF_ENDPOINT`` (read now, not at import) or the public hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def hf_login_command() -> str:
    """The login command of the installed ``huggingface_hub`` (``hf auth login`` since 1.0)."""
    try:
        major = int(importlib.metadata.version("huggingface_hub").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        major = 1
    return "hf auth login" if major >= 1 else "huggingface-cli login"


_REACHABLE: dict[str, str | None] = {}


def probe(url: str, timeout: float = 3.0) -> str | None:
    """None when a TCP connection to ``url``'s host opens within ``timeout`` s, else the reason (memoised per host)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = f"{parts.hostname}:{port}"
    if key not in _REACHABLE:
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                _REACHABLE[key] = None
        except OSError as exc:
            _REACHABLE[key] = f"cannot reach {key} ({exc})"
    return _REACHABLE[key]


def _unreachable(what: str, reason: str) -> SourceError:
    return SourceError(
        f"{what}: {reason}; not retried.\n"
        "      If this machine has no network, set STELLAR_OFFLINE=1 (cached weights are then used without any request)"
    )


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
        object.__setattr__(self, "files", frozen_map(self.files))

    @property
    def pinned(self) -> bool:
        return bool(COMMIT_RE.match(self.revision))

    def describe(self) -> str:
        return f"hf {self.repo_id}@{self.revision if self.pinned else self.revision + ' (unpinned)'}"

    def page(self) -> str:
        return f"{hf_endpoint()}/{self.repo_id}"

    def repo_path(self, filename: str) -> str:
        return (self.files or {}).get(filename, filename)

    def provides(self, filename: str, card: "ModelCard") -> bool:
        return self.files is None or filename in self.files

    def fetch(self, card: "ModelCard", filenames: list[str] | None, staging: Path, offline: bool, revision: str | None = None) -> Fetched:
        if offline:
            raise SourceError(f"{self.describe()}: offline, not attempted")
        try:
            import huggingface_hub
        except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency of the model extras
            raise SourceError(f"{self.describe()}: huggingface_hub is not installed ({exc}); pip install 'stellar-bench[clip]'") from exc
        endpoint = hf_endpoint()
        reason = probe(endpoint)
        if reason:
            raise _unreachable(self.describe(), reason)
        revision = revision or self.revision
        cache_dir = stellar_home() / "hf"
        out = Fetched({}, origin=self.describe(), revision=revision if COMMIT_RE.match(revision) else None)
        # ``revision``: the card's, or the commit recorded at this card's first fetch (a branch is resolved
        # to one commit below, so all files of one fetch come from the same commit)
        try:
            api = huggingface_hub.HfApi(endpoint=endpoint)
            if not COMMIT_RE.match(revision):  # a branch: resolve it once, so every file comes from one commit
                revision = api.model_info(self.repo_id, revision=revision).sha or revision
                out.revision = revision if COMMIT_RE.match(revision) else None
            if filenames is None:
                filenames = self.select(api.list_repo_files(self.repo_id, revision=revision, repo_type=self.repo_type))
                if not filenames:
                    raise SourceError(f"{self.describe()}: no file of the repo matches {list(self.allow_patterns)}")
            for name in filenames:
                got = Path(
                    huggingface_hub.hf_hub_download(
                        self.repo_id,
                        self.repo_path(name),
                        revision=revision,
                        repo_type=self.repo_type,
                        cache_dir=str(cache_dir),
                        endpoint=endpoint,
                    )
                )
                blob = got.resolve()
                match = _SNAPSHOT_RE.search(str(got))
                if match:  # the commit the revision resolved to, recorded for reproducibility
                    out.revision = match.group(1)
                if SHA256_RE.match(blob.name):  # LFS file: the client names the blob after the hub's sha256
                    out.expected[name] = blob.name
                out.discard[name] = [got, blob]
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(blob, target)
                out.files[name] = target
        except SourceError:
            raise
        except Exception as exc:  # hub errors are many types (HTTP, repo not found, gated, ...)
            raise SourceError(self._explain(card, exc, revision)) from exc
        return out

    def _explain(self, card: "ModelCard", exc: Exception, revision: str) -> str:
        """One actionable line for a hub error: the card, the repo page, and what to run."""
        import huggingface_hub.errors as hf_errors

        head = f"{self.describe()}: {type(exc).__name__}"
        status = getattr(getattr(exc, "response", None), "status_code", None)
        login = hf_login_command()
        if isinstance(exc, hf_errors.GatedRepoError) or (status == 403 and not isinstance(exc, hf_errors.RepositoryNotFoundError)):
            return (
                f"{head}: access to {self.repo_id} is restricted (HTTP {status}) — model card '{card.name}' needs it.\n"
                f"      Open {self.page()}, accept its licence / request access, then log in with `{login}` and run again"
            )
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            return f"{head}: revision {revision} of {self.repo_id} does not exist (model card '{card.name}'; see {self.page()})"
        if isinstance(exc, hf_errors.RepositoryNotFoundError) or status == 401:
            return (
                f"{head}: repo {self.repo_id} not found, or not visible without logging in (HTTP {status}), "
                f"for model card '{card.name}'.\n"
                f"      Check {self.page()}; a private or gated repo needs `{login}`"
            )
        if isinstance(exc, hf_errors.EntryNotFoundError):
            return f"{head}: a file of model card '{card.name}' is not in {self.repo_id}@{revision} ({exc}); see {self.page()}"
        text = " ".join(str(exc).split())[:300]
        return f"{head}: {text}\n      run the same command again to continue (finished files are kept)"

    def select(self, listing: Iterable[str]) -> list[str]:
        listing = sorted(listing)
        chosen = [f for f in listing if any(fnmatch.fnmatchcase(f, p) for p in self.allow_patterns)]
        for group in self.weights_preference:
            weights = [f for f in listing if any(fnmatch.fnmatchcase(f, p) for p in group)]
            if weights:
                chosen += [f for f in weights if f not in chosen]
                break
        return chosen

    def remote_sizes(self, card: "ModelCard", revision: str | None = None) -> dict[str, int | None]:
        """``{card file: size}`` from the hub's model info at the revision (for plans); raises SourceError."""
        import huggingface_hub

        endpoint = hf_endpoint()
        reason = probe(endpoint)
        if reason:
            raise _unreachable(self.describe(), reason)
        try:
            info = huggingface_hub.HfApi(endpoint=endpoint).model_info(self.repo_id, revision=revision or self.revision, files_metadata=True)
        except Exception as exc:
            raise SourceError(self._explain(card, exc, revision or self.revision)) from exc
        sizes = {s.rfilename: s.size for s in (info.siblings or [])}
        if self.files is not None:
            return {name: sizes.get(path) for name, path in self.files.items()}
        if not card.files:
            return {name: sizes.get(name) for name in self.select(sizes)}
        return {f.name: sizes.get(f.name) for f in card.files}


# ------------------------------------------------------------------------------------ plain URLs
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
            raise ValueError(f"url source archive must be null, 'zip' or 'bz2', not {self.archive!r}")
        object.__setattr__(self, "members", frozen_map(self.members))

    def describe(self) -> str:
        return f"url {self.url}" + (f" ({self.archive})" if self.archive else "")

    def provides(self, filename: str, card: "ModelCard") -> bool:
        if self.archive == "zip":
            return self.members is None or filename in self.members
        if self.file is not None:
            return filename == self.file
        return len(card.files) == 1

    def partial_path(self, card_folder: Path) -> Path:
        """Where the resumable download of this URL lives (inside the card's folder, hidden)."""
        return card_folder / ".downloads" / (hashlib.sha256(self.url.encode()).hexdigest()[:16] + ".part")

    def fetch(self, card: "ModelCard", filenames: list[str] | None, staging: Path, offline: bool, revision: str | None = None) -> Fetched:
        if offline:
            raise SourceError(f"{self.describe()}: offline, not attempted")
        if filenames is None:
            raise SourceError(f"{self.describe()}: cannot list files")
        download = self.partial_path(staging.parent)
        download_resumable(self.url, download, desc=f"{card.name}: {PurePosixPath(urllib.parse.urlsplit(self.url).path).name}")
        out = Fetched({}, origin=self.describe(), discard={name: [download] for name in filenames})
        try:
            self._unpack(download, filenames, staging, out)
        except SourceError:
            discard_download(download)  # a bad archive is not resumable: start from zero next time
            raise
        return out

    def _unpack(self, download: Path, filenames: list[str], staging: Path, out: Fetched) -> None:
        if self.archive == "zip":
            try:
                with zipfile.ZipFile(download) as zf:
                    names = zf.namelist()
                    for name in filenames:
                        member = find_member(names, (self.members or {}).get(name, name))
                        if member is None:
                            raise SourceError(f"{self.describe()}: no member '{name}' in the archive")
                        out.files[name] = extract(zf.open(member), staging / name)
            except zipfile.BadZipFile as exc:
                raise SourceError(f"{self.describe()}: not a zip archive ({exc})") from exc
            return
        (name,) = filenames
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.archive == "bz2":
            try:
                with bz2.open(download, "rb") as src:
                    extract(src, target)
            except (OSError, EOFError) as exc:
                raise SourceError(f"{self.describe()}: bad bz2 data ({exc})") from exc
        else:
            shutil.copyfile(download, target)  # the .part stays until the file is verified and installed
        out.files[name] = target

    def remote_sizes(self, card: "ModelCard", revision: str | None = None) -> dict[str, int | None]:
        """The download's size (HEAD Content-Length), reported for the first file it provides."""
        reason = probe(self.url)
        if reason:
            raise _unreachable(self.describe(), reason)
        request = urllib.request.Request(self.url, method="HEAD", headers={"User-Agent": "stellar-bench"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                size = resp.headers.get("Content-Length")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise SourceError(f"url {self.url}: {exc}") from exc
        return {"(download)": int(size) if size else None}


def download_resumable(url: str, target: Path, desc: str) -> None:
    """Stream ``url`` into ``target``, continuing a partial ``target`` with an HTTP Range request.

    The server answering 206 from the right offset -> append; 200 (ranges ignored) or 416 -> restart
    from zero. A dropped connection keeps the bytes received (the next call continues) and raises
    :class:`SourceError` saying so; a response shorter than its announced length is the same."""
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    have = target.stat().st_size if target.is_file() else 0
    reason = probe(url)
    if reason:
        raise _unreachable(f"url {url}", reason)
    headers = {"User-Agent": "stellar-bench", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial is not a prefix the server knows: start again
            target.unlink()
            return download_resumable(url, target, desc)
        raise SourceError(f"url {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise SourceError(f"url {url}: {exc}") from exc
    with resp:
        start = have if resp.status == 206 and _range_start(resp.headers.get("Content-Range")) == have else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length else None
        received = start
        try:
            with open(target, "ab" if start else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=desc, leave=False
            ) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(_interrupted(url, target, received, total, exc)) from exc
    if total is not None and received < total:
        raise SourceError(_interrupted(url, target, received, total, "connection closed early"))


def discard_download(path: Path) -> None:
    """Delete a resumable download (and its ``.downloads/`` folder once empty)."""
    path.unlink(missing_ok=True)
    if path.parent.name == ".downloads":
        try:
            path.parent.rmdir()
        except OSError:  # another download is in progress there
            pass


def _interrupted(url: str, target: Path, received: int, total: int | None, why: object) -> str:
    return (
        f"url {url}: download interrupted after {received:,} of {total:,} bytes ({why}).\n"
        if total
        else f"url {url}: download interrupted after {received:,} bytes ({why}).\n"
    ) + "      Run the same command again: it continues from there (nothing unverified enters the cache)"


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------- PyPI packages
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
        object.__setattr__(self, "members", frozen_map(self.members))

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

    def fetch(self, card: "ModelCard", filenames: list[str] | None, staging: Path, offline: bool, revision: str | None = None) -> Fetched:
        if filenames is None:
            filenames = list(self.members)
        out = Fetched({}, origin=f"{self.describe()} (installed)")
        remaining = []
        for name in filenames:
            installed = self.installed_path(name)
            if installed is not None:  # a local copy: allowed offline
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(installed, target)
                out.files[name] = target
            else:
                remaining.append(name)
        if remaining:
            if offline:
                raise SourceError(f"{self.describe()}: not installed at this version, and offline: pip download not attempted")
            artifact = self._pip_download(staging / ".pip")
            out.origin = f"{self.describe()} ({artifact.name})"
            for name in remaining:
                out.files[name] = extract_from_package(artifact, self.members[name], staging / name, self.describe())
            shutil.rmtree(staging / ".pip", ignore_errors=True)
        return out

    def _pip_download(self, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        cmd = pip_download_command(self.spec, dest)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"{self.describe()}: pip download failed to run ({exc})") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise SourceError(f"{self.describe()}: pip download exited {proc.returncode}: {' | '.join(tail)}")
        artifacts = sorted(p for p in dest.iterdir() if p.suffix in (".whl", ".zip") or p.name.endswith((".tar.gz", ".tgz")))
        if not artifacts:
            raise SourceError(f"{self.describe()}: pip download produced no wheel or sdist in {dest}")
        return artifacts[0]

    def remote_sizes(self, card: "ModelCard", revision: str | None = None) -> dict[str, int | None]:
        return {}


Source = Union[HfSource, UrlSource, PypiSource]
SOURCE_KINDS: dict[str, type] = {"hf": HfSource, "url": UrlSource, "pypi": PypiSource}


def pip_download_command(spec: str, dest: Path) -> list[str]:
    """The pip command fetching one distribution (no dependencies) into ``dest``.

    pip reads its usual configuration (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``pip.conf``), so
    mirrors and private indexes work without options here."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input", spec, "-d", str(dest)]


# ----------------------------------------------------------------------------------- file helpers
def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # other file system, or links not allowed
        shutil.copyfile(src, dst)


def extract(stream, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with stream, open(target, "wb") as out:
        shutil.copyfileobj(stream, out, length=1 << 20)
    return target


def find_member(names: Sequence[str], wanted: str) -> str | None:
    """Exact member path, else the unique member whose base name is ``wanted``'s base name."""
    if wanted in names:
        return wanted
    base = PurePosixPath(wanted).name
    hits = [n for n in names if PurePosixPath(n).name == base and not n.endswith("/")]
    return hits[0] if len(hits) == 1 else None


def extract_from_package(artifact: Path, member: str, target: Path, label: str) -> Path:
    """Unpack ``member`` from a wheel (zip) or sdist (tar.gz / zip); sdist paths sit below a top folder."""
    try:
        if artifact.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(artifact) as zf:
                name = _package_member(zf.namelist(), member)
                if name is None:
                    raise SourceError(f"{label}: {artifact.name} has no member {member}")
                return extract(zf.open(name), target)
        with tarfile.open(artifact, "r:*") as tf:
            name = _package_member(tf.getnames(), member)
            stream = tf.extractfile(name) if name is not None else None
            if stream is None:
                raise SourceError(f"{label}: {artifact.name} has no member {member}")
            return extract(stream, target)
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise SourceError(f"{label}: cannot read {artifact.name} ({exc})") from exc


def _package_member(names: Sequence[str], member: str) -> str | None:
    if member in names:  # wheel layout
        return member
    for name in names:  # sdist layout: TOP/member or TOP/src/member
        parts = name.split("/", 1)
        if len(parts) == 2 and parts[1] in (member, f"src/{member}"):
            return name
    return None
