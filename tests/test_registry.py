"""Model registry: sources (pypi installed / pip download wheel+sdist, url file/zip/bz2, hf, local),
verified atomic cache, trust-on-first-use, offline mode, errors, and the ``stellar models`` CLI.

Everything runs offline: the pypi cards copy from the installed facenet-pytorch and
face-recognition-models distributions; ``pip download`` runs for real against a local
``--find-links`` folder; url sources use ``file://``. The hub and HTTP paths run against loopback
servers in tests/test_hub_*.py.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from stellar.cli import main
from stellar.models import registry, sources
from stellar.models.registry import (
    HashMismatchError,
    HfSource,
    ModelCard,
    ModelFile,
    PypiSource,
    UnknownModelError,
    UrlSource,
    WeightsUnavailableError,
)

MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
DLIB_CARDS = ("dlib-shape-predictor-5", "dlib-resnet-v1", "dlib-mmod-cnn")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A fresh STELLAR_HOME, offline, no local weights, no leftover overrides."""
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    registry.clear_local_overrides()
    yield tmp_path / "home"
    registry.clear_local_overrides()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


@pytest.fixture
def add_card(monkeypatch):
    def add(card: ModelCard) -> ModelCard:
        monkeypatch.setitem(registry._cards(), card.name, card)
        return card

    return add


def card_files(home: Path, name: str) -> list[str]:
    """Every entry under models/<card>/ (to catch partial or temp files)."""
    folder = home / "models" / name
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


# --------------------------------------------------------------------------- environment basics
@pytest.mark.parametrize(
    "env,expected",
    [
        ({"STELLAR_OFFLINE": "1"}, True),
        ({"STELLAR_OFFLINE": "TRUE"}, True),
        ({"HF_HUB_OFFLINE": "yes"}, True),
        ({"STELLAR_OFFLINE": "0", "HF_HUB_OFFLINE": "0"}, False),
        ({"STELLAR_OFFLINE": "", "HF_HUB_OFFLINE": "no"}, False),
    ],
)
def test_is_offline(monkeypatch, env, expected):
    monkeypatch.delenv("STELLAR_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert registry.is_offline() is expected


def test_stellar_home_default(monkeypatch):
    monkeypatch.delenv("STELLAR_HOME")
    assert registry.stellar_home() == Path("~/.cache/stellar").expanduser()


def test_card_table_is_consistent():
    names = [c.name for c in registry.CARDS]
    assert len(names) == len(set(names))
    for card in registry.CARDS:
        assert card.licence and card.citation and card.task
        for f in card.files:
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), (card.name, f.name)
        for s in card.sources:
            if isinstance(s, HfSource) and not s.pinned:
                assert "pinned" in card.notes, card.name  # an unpinned revision must say so
        for dep in card.requires:
            registry.get_card(dep)
    for name in ("arcface-buffalo-l", "arcface-antelopev2"):
        assert "NON-COMMERCIAL" in registry.get_card(name).licence
    assert registry.get_card("arcface-r100-glint360k").name == "arcface-antelopev2"
    assert {c.name for c in registry.list_cards("face-detection")} == {"mtcnn", "dlib-mmod-cnn"}


def test_duplicate_card_names_rejected():
    card = registry.get_card("mtcnn")
    with pytest.raises(ValueError, match="duplicate"):
        registry._index([card, card])


# --------------------------------------------------------------------------- pypi: installed dists
def test_pypi_installed_copies_and_verifies_real_files(home):
    paths = registry.resolve("mtcnn")
    assert list(paths) == list(MTCNN_FILES)
    card = registry.get_card("mtcnn")
    for f in card.files:
        path = paths[f.name]
        assert path == home / "models" / "mtcnn" / f.name  # copied into the cache, not site-packages
        assert sha(path.read_bytes()) == f.sha256
        assert path.stat().st_size == f.size
    records = json.loads((home / "models" / "mtcnn" / "hashes.json").read_text())["files"]
    assert records["pnet.pt"]["trust"] == "pinned"
    assert records["pnet.pt"]["origin"] == "pypi facenet-pytorch==2.6.0 (installed)"
    for name in DLIB_CARDS:
        (fname,) = registry.get_card(name).file_names
        path = registry.resolve_file(name, fname)
        assert sha(path.read_bytes()) == registry.get_card(name).files[0].sha256
        assert registry.is_cached(name)
    assert card_files(home, "mtcnn") == ["hashes.json", *sorted(MTCNN_FILES)]  # no temp leftovers


def test_cache_hit_does_not_refetch(home, monkeypatch):
    registry.resolve("mtcnn")

    def boom(*a, **k):
        raise AssertionError("fetched again")

    monkeypatch.setattr(registry, "_fetch_into_cache", boom)
    assert registry.resolve_file("mtcnn", "onet.pt").is_file()


def test_corrupt_cache_is_replaced(home):
    path = registry.resolve_file("mtcnn", "pnet.pt")
    good = path.read_bytes()
    path.write_bytes(good[:100])  # wrong size: caught by resolve_file
    assert registry.resolve_file("mtcnn", "pnet.pt").read_bytes() == good
    path.write_bytes(bytes(len(good)))  # right size, wrong bytes: caught by fetch (full hash)
    assert registry.fetch("mtcnn")["pnet.pt"].read_bytes() == good


def test_pypi_wrong_installed_version_is_not_used_offline(add_card):
    card = add_card(
        ModelCard(
            "fake-facenet-other-version",
            "test",
            (PypiSource("facenet-pytorch", "9.9.9", {"pnet.pt": "facenet_pytorch/data/pnet.pt"}),),
            (ModelFile("pnet.pt"),),
            "MIT",
            "none",
        )
    )
    with pytest.raises(WeightsUnavailableError) as err:
        registry.resolve_file(card.name, "pnet.pt")
    assert "pip download not attempted" in str(err.value)


# --------------------------------------------------------------------------- pypi: pip download
def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid pure-python wheel (what pip download accepts from --find-links)."""
    dist_info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    contents[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{n},,\n" for n in contents) + f"{dist_info}/RECORD,,\n"
    contents[f"{dist_info}/RECORD"] = record.encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in contents.items():
            zf.writestr(n, data)
    return path


def test_pip_download_wheel_for_real(tmp_path, online, monkeypatch, add_card, home):
    links = tmp_path / "links"
    links.mkdir()
    payload = b"weights-inside-a-wheel" * 100
    make_wheel(links, "stellar_fake_weights", "1.0", {"stellar_fake_weights/data/w.bin": payload})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    card = add_card(
        ModelCard(
            "fake-pypi-wheel",
            "test",
            (PypiSource("stellar-fake-weights", "1.0", {"w.bin": "stellar_fake_weights/data/w.bin"}),),
            (ModelFile("w.bin", sha(payload), len(payload)),),
            "MIT",
            "none",
        )
    )
    path = registry.resolve_file(card.name, "w.bin")
    assert path.read_bytes() == payload
    assert "stellar_fake_weights-1.0-py3-none-any.whl" in registry._record(card.name, "w.bin").origin
    assert card_files(home, card.name) == ["hashes.json", "w.bin"]  # pip's download removed


def test_pip_download_sdist_members(tmp_path, online, monkeypatch, add_card):
    payload = b"sdist-member-bytes"
    sdist = tmp_path / "fakepkg-2.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for name, data in {"fakepkg-2.0/setup.py": b"", "fakepkg-2.0/fakepkg/models/m.dat": payload}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    calls = []

    def command(spec, dest):  # stands in for pip: "downloads" the sdist into dest
        calls.append(spec)
        return [sys.executable, "-c", f"import shutil; shutil.copy({str(sdist)!r}, {str(dest)!r})"]

    monkeypatch.setattr(sources, "pip_download_command", command)
    card = add_card(
        ModelCard(
            "fake-pypi-sdist",
            "test",
            (PypiSource("fakepkg", "2.0", {"m.dat": "fakepkg/models/m.dat", "gone.dat": "fakepkg/models/gone.dat"}),),
            (ModelFile("m.dat", sha(payload)), ModelFile("gone.dat")),
            "MIT",
            "none",
        )
    )
    assert registry.resolve_file(card.name, "m.dat").read_bytes() == payload
    assert calls == ["fakepkg==2.0"]
    with pytest.raises(WeightsUnavailableError, match="has no member fakepkg/models/gone.dat"):
        registry.resolve_file(card.name, "gone.dat")


def test_pip_failure_is_reported(online, monkeypatch, add_card):
    monkeypatch.setattr(sources, "pip_download_command", lambda spec, dest: [sys.executable, "-c", "import sys; sys.exit('no such package')"])
    card = add_card(ModelCard("fake-pypi-fail", "test", (PypiSource("nopkg", "1.0", {"a": "nopkg/a"}),), (ModelFile("a"),), "MIT", "none"))
    with pytest.raises(WeightsUnavailableError, match="pip download exited 1: no such package"):
        registry.resolve_file(card.name, "a")


# --------------------------------------------------------------------------- url sources
def test_url_file_zip_and_bz2(tmp_path, online, add_card, home):
    plain, zipped, packed = b"plain" * 50, b"in-zip" * 50, b"bz2!" * 50
    (tmp_path / "plain.bin").write_bytes(plain)
    with zipfile.ZipFile(tmp_path / "pack.zip", "w") as zf:
        zf.writestr("pack/nested/a.onnx", zipped)  # nested deeper than the card says
        zf.writestr("pack/readme.txt", b"x")
    (tmp_path / "c.dat.bz2").write_bytes(bz2.compress(packed))
    card = add_card(
        ModelCard(
            "fake-url",
            "test",
            (
                UrlSource((tmp_path / "plain.bin").as_uri(), file="plain.bin"),
                UrlSource((tmp_path / "pack.zip").as_uri(), archive="zip", members={"a.onnx": "a.onnx"}),
                UrlSource((tmp_path / "c.dat.bz2").as_uri(), archive="bz2", file="c.dat"),
            ),
            (ModelFile("plain.bin", sha(plain)), ModelFile("a.onnx", sha(zipped)), ModelFile("c.dat", sha(packed))),
            "MIT",
            "none",
        )
    )
    paths = registry.fetch(card.name)
    assert {n: p.read_bytes() for n, p in paths.items()} == {"plain.bin": plain, "a.onnx": zipped, "c.dat": packed}
    assert card_files(home, card.name) == ["a.onnx", "c.dat", "hashes.json", "plain.bin"]


def test_sources_tried_in_order(tmp_path, online, add_card):
    data = b"second source"
    (tmp_path / "ok.bin").write_bytes(data)
    card = add_card(
        ModelCard(
            "fake-fallback",
            "test",
            (UrlSource((tmp_path / "missing.bin").as_uri()), UrlSource((tmp_path / "ok.bin").as_uri())),
            (ModelFile("w.bin", sha(data)),),
            "MIT",
            "none",
        )
    )
    assert registry.resolve_file(card.name, "w.bin").read_bytes() == data
    assert (tmp_path / "missing.bin").as_uri() not in registry._record(card.name, "w.bin").origin


def test_hash_mismatch_names_both_hashes_and_installs_nothing(tmp_path, online, add_card, home):
    data = b"tampered"
    (tmp_path / "w.bin").write_bytes(data)
    expected = "0" * 64
    card = add_card(ModelCard("fake-mismatch", "test", (UrlSource((tmp_path / "w.bin").as_uri()),), (ModelFile("w.bin", expected),), "MIT", "none"))
    with pytest.raises(HashMismatchError) as err:
        registry.resolve_file(card.name, "w.bin")
    text = str(err.value)
    assert expected in text and sha(data) in text and "w.bin" in text and "fake-mismatch" in text
    assert card_files(home, card.name) == []  # no file, no temp, no record


def test_trust_on_first_use(tmp_path, online, add_card, home):
    src = tmp_path / "w.bin"
    src.write_bytes(b"first")
    card = add_card(ModelCard("fake-tofu", "test", (UrlSource(src.as_uri()),), (ModelFile("w.bin"),), "MIT", "none"))
    path = registry.resolve_file(card.name, "w.bin")
    rec = registry._record(card.name, "w.bin")
    assert rec.sha256 == sha(b"first") and rec.trust == "recorded on first download"
    (result,) = registry.verify(card.name)
    assert result.ok and "recorded on first download" in str(result)
    path.write_bytes(b"other")  # same size, different bytes
    (result,) = registry.verify(card.name)
    assert result.status == "mismatch" and result.expected == sha(b"first") and result.actual == sha(b"other")
    path.unlink()
    src.write_bytes(b"upstream changed")  # the source now serves something else: refused
    with pytest.raises(HashMismatchError) as err:
        registry.resolve_file(card.name, "w.bin")
    assert sha(b"first") in str(err.value) and sha(b"upstream changed") in str(err.value)


# --------------------------------------------------------------------------- hf source (fake hub)
def test_offline_never_calls_the_hub(add_card, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sources, "probe", lambda *a, **k: calls.append(a))
    card = add_card(ModelCard("fake-hf-offline", "test", (HfSource("org/repo", "ef" * 20),), (ModelFile("config.json"),), "MIT", "none"))
    with pytest.raises(WeightsUnavailableError) as err:
        registry.resolve_file(card.name, "config.json")
    assert calls == []
    text = str(err.value)
    assert "fake-hf-offline" in text and "config.json" in text and "offline" in text
    assert "stellar models fetch fake-hf-offline" in text
    assert "--weights fake-hf-offline=PATH" in text and "STELLAR_WEIGHTS_DIR" in text


def test_offline_url_not_attempted(monkeypatch):
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network touched"))
    with pytest.raises(WeightsUnavailableError, match="stellar models fetch facenet-vggface2"):
        registry.resolve_file("facenet-vggface2", "20180402-114759-vggface2.pt")


# --------------------------------------------------------------------------- local weights
def test_local_override_file_and_folder(tmp_path, add_card, home):
    data = b"local weights"
    card = add_card(ModelCard("fake-local", "test", (UrlSource("https://example.invalid/w.bin"),), (ModelFile("w.bin", sha(data)),), "MIT", "none"))
    f = tmp_path / "anything.bin"
    f.write_bytes(data)
    registry.set_local_override(card.name, f)
    assert registry.resolve_file(card.name, "w.bin") == f.resolve()  # used in place
    assert card_files(home, card.name) == []
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"wrong bytes")
    registry.set_local_override(card.name, folder)
    with pytest.raises(HashMismatchError) as err:
        registry.resolve_file(card.name, "w.bin")
    assert sha(data) in str(err.value) and sha(b"wrong bytes") in str(err.value)


def test_local_override_checks(tmp_path):
    with pytest.raises(Exception, match="no such file or folder"):
        registry.set_local_override("mtcnn", tmp_path / "nope")
    stray = tmp_path / "weights.pt"
    stray.write_bytes(b"x")
    with pytest.raises(UnknownModelError, match="pnet.pt"):  # 3-file card: a file must be one of them
        registry.set_local_override("mtcnn", stray)


def test_weights_dir_env(tmp_path, monkeypatch, home):
    site = Path(registry.get_card("mtcnn").sources[0].installed_path("pnet.pt")).parent
    root = tmp_path / "weights"
    (root / "mtcnn").mkdir(parents=True)
    for f in MTCNN_FILES:
        (root / "mtcnn" / f).write_bytes((site / f).read_bytes())
    monkeypatch.setenv("STELLAR_WEIGHTS_DIR", str(root))
    assert registry.resolve("mtcnn") == {f: root / "mtcnn" / f for f in MTCNN_FILES}
    assert registry.is_cached("mtcnn")
    assert not (home / "models" / "mtcnn").exists()
    assert all(r.ok and r.where == "local" for r in registry.verify("mtcnn"))


# --------------------------------------------------------------------------- names
def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownModelError) as err:
        registry.get_card("facenet-vgface2")
    assert "facenet-vggface2" in err.value.suggestions and "stellar models list" in str(err.value)
    with pytest.raises(UnknownModelError) as err:
        registry.resolve_file("mtcnn", "pnet.pth")
    assert err.value.suggestions[0] == "pnet.pt"


# --------------------------------------------------------------------------- CLI
def test_cli_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^mtcnn\s+face-detection\s+pypi\s+3\s+3 pinned\s+MIT\s+no$", out, re.M)
    assert re.search(r"^arcface-antelopev2 .*recorded on first download\s+NON-COMMERCIAL RESEARCH ONLY", out, re.M)
    assert main(["models", "list", "--task", "face-embedding", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in data} == {"facenet-vggface2", "dlib-resnet-v1", "arcface-buffalo-l", "arcface-antelopev2"}
    facenet = next(d for d in data if d["name"] == "facenet-vggface2")
    assert facenet["files"][0]["sha256"].startswith("281cebca") and facenet["cached"] is False
    assert main(["models", "list", "--task", "nope"]) == 2


def test_cli_fetch_verify_where(capsys, home):
    assert main(["models", "fetch", "mtcnn", "dlib-resnet-v1"]) == 0
    out = capsys.readouterr().out
    assert "mtcnn: 3 file(s) ready" in out
    assert main(["models", "verify"]) == 0
    out = capsys.readouterr().out
    # dlib-resnet-v1 requires dlib-shape-predictor-5: fetched with it
    assert "mtcnn/pnet.pt: ok" in out and "5 ok, 0 problem(s)" in out
    assert main(["models", "where", "mtcnn"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(home / "models" / "mtcnn") and "onet.pt: " in out
    # same-size corruption: verify reports both hashes and fails
    pnet = home / "models" / "mtcnn" / "pnet.pt"
    pnet.write_bytes(bytes(pnet.stat().st_size))
    assert main(["models", "verify", "mtcnn"]) == 1
    out = capsys.readouterr().out
    assert "mismatch" in out and registry.get_card("mtcnn").files[0].sha256 in out and sha(pnet.read_bytes()) in out
    assert main(["models", "verify", "facenet-vggface2"]) == 1  # missing
    assert "missing" in capsys.readouterr().out


def test_cli_fetch_offline_and_unknown(capsys):
    assert main(["models", "fetch", "facenet-vggface2"]) == 1
    out = capsys.readouterr().out
    assert "stellar models fetch facenet-vggface2" in out and "offline" in out
    assert main(["models", "fetch", "mtcn"]) == 2
    assert "did you mean: mtcnn" in capsys.readouterr().err


def test_cli_weights_option(tmp_path, capsys, home):
    dat = registry.get_card("dlib-mmod-cnn").sources[0].installed_path("mmod_human_face_detector.dat")
    assert main(["models", "where", "dlib-mmod-cnn", "--weights", f"dlib-mmod-cnn={dat}"]) == 0
    assert f"{dat.resolve()} (local)" in capsys.readouterr().out
    assert main(["models", "fetch", "dlib-mmod-cnn", "--weights", f"dlib-mmod-cnn={dat}"]) == 0
    assert not (home / "models" / "dlib-mmod-cnn" / "mmod_human_face_detector.dat").exists()
    bad = tmp_path / "mmod_human_face_detector.dat"
    bad.write_bytes(b"not the model")
    registry.clear_local_overrides()
    with pytest.warns(registry.NonReferenceWeightsWarning, match="non-reference weights"):
        assert main(["models", "fetch", "dlib-mmod-cnn", "--weights", f"dlib-mmod-cnn={bad}"]) == 0
    registry.clear_local_overrides()
    folder = tmp_path / "wdir" / "dlib-mmod-cnn"  # found implicitly: the card's promise holds, refused
    folder.mkdir(parents=True)
    (folder / bad.name).write_bytes(b"not the model")
    assert main(["models", "fetch", "dlib-mmod-cnn", "--weights", f"dlib-mmod-cnn={folder}"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out
    assert main(["models", "where", "mtcnn", "--weights", "mtcnn"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err


# ------------------------------------------------------------------ issue 9 item 22: non-reference weights
def test_weights_override_with_other_sha256_is_accepted_as_non_reference(tmp_path, home):
    """Regression (issue 9 item 22): `--weights facenet-vggface2=FILE` refused any file but the released one."""
    mine = tmp_path / "my-facenet.pt"
    mine.write_bytes(b"a re-exported FaceNet")
    registry.set_local_override("facenet-vggface2", mine)
    assert registry.weights_note("facenet-vggface2") == ""
    with pytest.warns(registry.NonReferenceWeightsWarning) as caught:
        path = registry.resolve_file("facenet-vggface2", "20180402-114759-vggface2.pt")
    assert path == mine.resolve() and sha(mine.read_bytes()) in str(caught[0].message)
    assert registry.non_reference_weights() == {"facenet-vggface2": {"20180402-114759-vggface2.pt": sha(mine.read_bytes())}}
    assert sha(mine.read_bytes()) in registry.weights_note("facenet-vggface2")
    (result,) = registry.verify("facenet-vggface2")
    assert result.status == "mismatch" and result.where == "local"  # verify still tells the truth
    registry.clear_local_overrides()
    assert registry.non_reference_weights() == {}


# ------------------------------------------------------------------ issue 10 item 3: cards are data files
CARDS_DIR = Path(registry.__file__).parent / "cards"


def test_every_card_is_one_json_file_named_after_it():
    files = sorted(p.stem for p in CARDS_DIR.glob("*.json"))
    assert files == sorted(c.name for c in registry.CARDS) and len(files) >= 19
    for path in CARDS_DIR.glob("*.json"):
        assert registry.load_card_file(path) == registry.get_card(path.stem)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("licence"), "missing required field 'licence'"),
        (lambda d: d.update(licence=3), "field 'licence' must be str"),
        (lambda d: d.update(colour="red"), "unknown field(s) colour"),
        (lambda d: d["files"][0].update(sha256="XYZ"), "sha256 must be 64 lowercase hex"),
        (lambda d: d["sources"][0].update(kind="ftp"), "'kind' must be one of hf, url, pypi"),
        (lambda d: d["sources"][0].update(archive="rar"), "archive must be null, 'zip' or 'bz2'"),
        (lambda d: d["sources"][0].pop("url"), "missing required field 'url'"),
        (lambda d: d.update(name="other"), "differs from the file name"),
        (lambda d: d["files"].append({"name": "extra.bin"}), "no source provides"),
    ],
)
def test_bad_card_file_is_refused_naming_the_file(tmp_path, change, message):
    data = json.loads((CARDS_DIR / "facenet-vggface2.json").read_text())
    change(data)
    path = tmp_path / "facenet-vggface2.json"
    path.write_text(json.dumps(data))
    with pytest.raises(registry.CardFormatError) as err:
        registry.load_card_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unreadable_card_file_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(registry.CardFormatError, match="(?s)" + re.escape(str(path)) + ".*docs/model-cards.md"):
        registry.load_card_file(path)


def test_card_files_ship_in_the_wheel():
    """pyproject's package-data glob covers every card file (and the folder is a package)."""
    import fnmatch

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    globs = re.search(r'^stellar = \[(.*)\]$', text, re.M).group(1)
    patterns = [g.strip().strip('"') for g in globs.split(",")]
    for path in CARDS_DIR.glob("*.json"):
        rel = path.relative_to(CARDS_DIR.parents[1]).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel
    assert (CARDS_DIR / "__init__.py").is_file()


def test_models_list_output_unchanged(capsys, home):
    """`stellar models list` prints the same table as when the cards were Python code."""
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", out[0]) == ["NAME", "TASK", "SOURCES", "FILES", "SHA256", "LICENCE", "CACHED"]
    rows = {line.split()[0]: re.split(r"\s{2,}", line.strip()) for line in out[1:] if line.strip() and not line.startswith(("cache:", "details:"))}
    assert list(rows)[:3] == ["mtcnn", "facenet-vggface2", "dlib-shape-predictor-5"]  # declaration order kept
    assert rows["mtcnn"] == ["mtcnn", "face-detection", "pypi", "3", "3 pinned", "MIT", "no"]
    assert rows["facenet-vggface2"] == ["facenet-vggface2", "face-embedding", "url", "1", "281cebca8662", "MIT for the code and weight conversion", "no"]
    assert rows["arcface-buffalo-l"][:5] == ["arcface-buffalo-l", "face-embedding", "url,hf", "2", "2 pinned"]
    assert rows["clip-vit-bigg-14-laion2b"][:5] == ["clip-vit-bigg-14-laion2b", "clip", "hf", "repo", "recorded on first download"]
    assert rows["sdxl-base-1.0"][:4] == ["sdxl-base-1.0", "text-to-image", "hf", "18"]
    assert out[-2].startswith("cache: ") and "offline: yes" in out[-2]


def test_data_layer_does_not_import_models():
    """Layers run one way (issue 10 item 3): importing the data layer loads no model code."""
    import subprocess

    code = "import sys, stellar.data.samples, stellar.data.build, stellar.data.importer; print(sorted(m for m in sys.modules if m.startswith('stellar.models')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    for path in (Path(registry.__file__).parents[1] / "data").glob("*.py"):
        assert "stellar.models" not in path.read_text(), path


# ------------------------------------------------------------------ issue 9 item 18: no retry loop without network
def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_clip_without_network_fails_at_once_without_retries(online, monkeypatch, home):
    """Regression (issue 9 item 18): the default --clip spent ~23 s in the hub client's retries when the
    network was down. Now the cache is checked first, the hub host is probed once, and the card fails
    with the offline fix without a single client call."""
    import huggingface_hub

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(sources, "_REACHABLE", {})
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda *a, **k: calls.append(a))
    for _ in range(2):  # the probe is memoised: the second card does not even connect
        with pytest.raises(WeightsUnavailableError) as err:
            registry.resolve("clip-vit-bigg-14-laion2b")
        text = str(err.value)
        assert "cannot reach 127.0.0.1" in text and "not retried" in text and "STELLAR_OFFLINE=1" in text
    assert calls == [] and len(sources._REACHABLE) == 1
    assert card_files(home, "clip-vit-bigg-14-laion2b") == []


def test_cached_card_is_used_without_any_request_even_online(online, monkeypatch, home):
    """The cache is checked before any source: a cached card resolves with the hub unreachable."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(sources, "probe", lambda *a, **k: pytest.fail("network touched"))
    registry.resolve("mtcnn")  # copied from the installed facenet-pytorch
    assert registry.resolve("mtcnn")["pnet.pt"] == home / "models" / "mtcnn" / "pnet.pt"


def test_docs_conversion_snippet_round_trips_every_card():
    """docs/model-cards.md's converter (for cards still written as Python) gives back the same card."""
    text = (Path(__file__).parents[1] / "docs" / "model-cards.md").read_text()
    code = text.split("## Converting")[1].split("```python")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code, "docs/model-cards.md", "exec"), namespace)
    for i, card in enumerate(registry.CARDS):
        data = json.loads(namespace["card_json"](card, (i + 1) * 10))
        assert registry.card_from_data(data, card.name) == card
        assert data == json.loads((CARDS_DIR / f"{card.name}.json").read_text())  # the shipped files, byte for byte in content
