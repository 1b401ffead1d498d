"""A local Hugging Face hub and a plain file server on loopback, for the download tests (issue 13).

:class:`LocalHub` serves, over real HTTP on ``127.0.0.1`` (random port), the endpoints the
``huggingface_hub`` client calls for ``hf_hub_download`` / ``snapshot_download`` / ``list_repo_files``
/ ``model_info``, with the headers the real hub sends:

- ``HEAD|GET /{repo}/resolve/{revision}/{path}``: ``X-Repo-Commit``; for a regular file ``ETag`` (its git
  blob sha1) and ``Content-Length``; for an LFS file (weights: ``.safetensors``, ``.bin``, ``.pt``,
  ``.pth``, ``.onnx``) a 302 to the "CDN" (``/cdn/{sha256}``) with ``X-Linked-Etag`` (the sha256) and
  ``X-Linked-Size``, as the real hub does. The CDN honours ``Range`` (206) like S3/CloudFront.
- ``GET /api/models/{repo}/revision/{revision}`` (model info, ``?blobs=true`` adds sizes and LFS data) and
  ``GET /api/models/{repo}/tree/{revision}`` (the listing, recursive).
- errors as the hub encodes them: 404 + ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` /
  ``EntryNotFound``, 401 + ``X-Error-Code: GatedRepo`` for a gated repo.

Faults are injected per file: ``corrupt`` (one byte flipped in the body, headers unchanged), ``drop``
(the first response sends half the body and closes; the next ``drop_then_refuse`` responses close
before any byte). Every request is counted in :attr:`LocalHub.requests`.

:class:`FileServer` serves a folder for ``url`` cards (with ``Range``), with the same faults.

Both servers bind 127.0.0.1 only, run in a daemon thread, and stop by themselves after ``lifetime``
seconds (default 600) if a test forgets to stop them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".dat")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]]  # commit -> {path: bytes}
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit
    gated: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    """Thread, lifetime, request log and fault switches shared by both servers."""

    def __init__(self, handler: type, lifetime: float = 600.0):
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.faults: dict[str, str] = {}  # path in repo / file name -> "corrupt"
        self.drops: dict[str, list[str]] = {}  # path -> actions of its next GETs: "half" | "refuse"
        self.honour_range = True  # False: answer a Range request with the whole file (200), as some servers do
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, contains: str = "") -> int:
        with self.lock:
            return sum(contains in p for _, p, _ in self.requests)

    def drop(self, path: str, then_refuse: int = 0) -> None:
        """The next response for ``path`` sends half its body and closes; then ``then_refuse`` responses close at once."""
        self.drops[path] = ["half"] + ["refuse"] * then_refuse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    @property
    def owner(self):
        return self.server.owner  # type: ignore[attr-defined]

    def _log(self) -> None:
        with self.owner.lock:
            self.owner.requests.append((self.command, self.path, self.headers.get("Range")))

    def _error(self, status: int, code: str | None = None, message: str = "") -> None:
        body = json.dumps({"error": message or code or str(status)}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if message:
            self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self, data: bytes, key: str, headers: dict[str, str]) -> None:
        """Send ``data`` (Range-aware) with ``headers``, applying the fault registered for ``key``."""
        owner = self.owner
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and owner.honour_range:
            first = rng[6:].split("-")[0]
            start = int(first) if first else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        part = data[start:]
        if owner.faults.get(key) == "corrupt" and self.command == "GET":
            part = bytearray(part)
            part[len(part) // 2] ^= 0xFF
            part = bytes(part)
        self.send_response(206 if start else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(part)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        action = None
        with owner.lock:
            plan = owner.drops.get(key)
            if plan:
                action = plan.pop(0)
                if not plan:
                    owner.drops.pop(key)
        if action is not None:  # "half": half the body, then close; "refuse": close before any byte
            if action == "half":
                self.wfile.write(part[: max(1, len(part) // 2)])
                self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)


class _HubHandler(_Handler):
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        self._log()
        hub: LocalHub = self.owner
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        if path.startswith("/cdn/"):
            blob = hub.blobs.get(path[5:])
            if blob is None:
                return self._error(404)
            data, key = blob
            return self._body(data, key, {"ETag": f'"{path[5:]}"'})
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/") :], query)
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            return self._resolve(repo_id, revision, filename)
        return self._error(404)

    def _repo(self, repo_id: str, revision: str):
        hub: LocalHub = self.owner
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")  # the hub answers 401 to anonymous callers
            return None
        if repo.gated:
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.")
            return None
        commit = revision if revision in repo.commits else repo.branches.get(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, commit

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        hub: LocalHub = self.owner
        found = self._repo(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        data = repo.commits[commit].get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit}
        if filename.endswith(LFS_SUFFIXES):
            digest = sha256(data)
            hub.blobs[digest] = (data, filename)
            self.send_response(302)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{git_blob_sha1(data)}"')
            self.send_header("Location", f"{hub.cdn_url}/cdn/{digest}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers["ETag"] = f'"{git_blob_sha1(data)}"'
        self._body(data, filename, headers)

    def _api(self, rest: str, query: dict) -> None:
        if "/revision/" in rest:
            repo_id, _, revision = rest.partition("/revision/")
            found = self._repo(repo_id, revision)
            if found is None:
                return
            repo, commit = found
            siblings = []
            for name, data in sorted(repo.commits[commit].items()):
                entry = {"rfilename": name}
                if query.get("blobs"):
                    entry.update(size=len(data), blobId=git_blob_sha1(data))
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"sha256": sha256(data), "size": len(data), "pointerSize": 134}
                siblings.append(entry)
            return self._json({"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings, "private": False, "gated": False, "disabled": False})
        if "/tree/" in rest:
            repo_id, _, tail = rest.partition("/tree/")
            revision = tail.split("/")[0]
            found = self._repo(repo_id, revision)
            if found is None:
                return
            repo, commit = found
            items = []
            for name, data in sorted(repo.commits[commit].items()):
                item = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
                if name.endswith(LFS_SUFFIXES):
                    item["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
                items.append(item)
            return self._json(items)
        return self._error(404)


class LocalHub(_Base):
    """A loopback Hugging Face hub. ``add(repo_id, files, commit, branches)`` publishes a repo."""

    def __init__(self, lifetime: float = 600.0):
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, tuple[bytes, str]] = {}
        super().__init__(_HubHandler, lifetime)
        # the "CDN" LFS files redirect to: another origin (another port), as cdn-lfs.huggingface.co is, so the
        # client reads the file metadata from the 302 itself and follows it only for the download
        self.cdn_httpd = _Server(("127.0.0.1", 0), _HubHandler)
        self.cdn_httpd.owner = self  # type: ignore[attr-defined]
        self.cdn_url = f"http://127.0.0.1:{self.cdn_httpd.server_address[1]}"
        threading.Thread(target=self.cdn_httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        super().stop()
        self.cdn_httpd.shutdown()
        self.cdn_httpd.server_close()

    def add(self, repo_id: str, files: dict[str, bytes], commit: str, gated: bool = False) -> Repo:
        """Publish ``repo_id`` with one commit, which ``main`` points to."""
        repo = Repo({commit: dict(files)}, {"main": commit}, gated)
        self.repos[repo_id] = repo
        return repo

    def push(self, repo_id: str, files: dict[str, bytes], commit: str) -> None:
        """A newer commit on ``main`` (the pinned older commit stays reachable)."""
        self.repos[repo_id].commits[commit] = dict(files)
        self.repos[repo_id].branches["main"] = commit


class _FileHandler(_Handler):
    def do_HEAD(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self._log()
        server: FileServer = self.owner
        path = unquote(urlsplit(self.path).path).lstrip("/")
        data = server.files.get(path)
        if data is None:
            return self._error(404)
        self._body(data, path, {"ETag": f'"{sha256(data)[:16]}"'})


class FileServer(_Base):
    """Serves ``files`` (URL path -> bytes) over HTTP on loopback, with Range and faults."""

    def __init__(self, files: dict[str, bytes] | None = None, lifetime: float = 600.0):
        self.files: dict[str, bytes] = dict(files or {})
        super().__init__(_FileHandler, lifetime)
