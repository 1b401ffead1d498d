"""Every `hf` card fetched end to end through the real `huggingface_hub` client, against a local hub.

The hub (tests/hub_helpers.py) runs on 127.0.0.1 with a random port and is reached through
``HF_ENDPOINT`` — read by the registry at call time and passed to the client as ``endpoint=`` (the
client reads the variable only at import). It serves tiny stand-in files under each card's real repo
id, revision and file names. A card that pins file sha256s gets a *stand-in card*: the same card
with the stand-in's sha256 (everything else — repo, revision, file names, source order of hub
sources — unchanged); cards whose first source is not the hub keep only their hub sources here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from hub_helpers import LFS_SUFFIXES, LocalHub  # noqa: E402

from stellar.cli import main  # noqa: E402
from stellar.models import registry, sources  # noqa: E402
from stellar.models.registry import HashMismatchError, HfSource, WeightsUnavailableError  # noqa: E402

HF_CARDS = [c.name for c in registry.CARDS if any(isinstance(s, HfSource) for s in c.sources)]
MAIN_COMMIT = "f" * 40  # what 'main' resolves to for cards that pin no commit


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def standin(card: str, name: str, version: str = "") -> bytes:
    return f"stand-in {version}of {card}/{name}\n".encode() * 3


def repo_files(card: registry.ModelCard, source: HfSource, version: str = "") -> tuple[dict[str, bytes], list[str]]:
    """(files the repo holds, card files the fetch must select)."""
    if card.files:
        names = [f.name for f in card.files if source.provides(f.name, card)]
        return {source.repo_path(n): standin(card.name, n, version) for n in names}, names
    wanted = [p for p in source.allow_patterns if not any(ch in p for ch in "*?[")]
    if source.weights_preference:
        wanted.append(source.weights_preference[0][0])  # model.safetensors: preferred over the .bin decoy
    files = {n: standin(card.name, n, version) for n in wanted}
    files["pytorch_model.bin"] = b"decoy: a second copy of the weights, in the non-preferred format"
    files["README.md"] = b"decoy: not matched by allow_patterns"
    return files, sorted(wanted)


def standin_card(card: registry.ModelCard) -> registry.ModelCard:
    hub_sources = tuple(s for s in card.sources if isinstance(s, HfSource))
    files = tuple(dataclasses.replace(f, sha256=sha(standin(card.name, f.name)) if f.sha256 else None, size=None) for f in card.files)
    files = tuple(f for f in files if any(s.provides(f.name, card) for s in hub_sources))
    return dataclasses.replace(card, sources=hub_sources, files=files)


def card_entries(home: Path, name: str) -> list[str]:
    folder = home / "models" / name
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The local hub with every hf card's repo, and an online, empty STELLAR_HOME pointed at it."""
    import huggingface_hub.constants

    server = LocalHub(lifetime=300)
    for name in HF_CARDS:
        card = registry.get_card(name)
        for source in card.sources:
            if isinstance(source, HfSource):
                files, _ = repo_files(card, source)
                server.add(source.repo_id, files, source.revision if source.pinned else MAIN_COMMIT)
        monkeypatch.setitem(registry._cards(), name, standin_card(card))
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read by the client at import
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(sources, "_REACHABLE", {})
    registry.clear_local_overrides()
    yield server
    server.stop()
    registry.clear_local_overrides()


def go_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("name", HF_CARDS)
def test_every_hf_card_is_fetched_through_the_real_client(name, hub, tmp_path, monkeypatch):
    card = registry.get_card(name)
    source = card.sources[0]
    files, selected = repo_files(registry.get_card(name), source)
    paths = registry.fetch(name)
    assert sorted(paths) == sorted(selected)  # discovered cards: allow_patterns + preferred weights only
    for f, path in paths.items():
        assert path.read_bytes() == standin(name, f), f
        assert path == tmp_path / "home" / "models" / name / f
    commit = source.revision if source.pinned else MAIN_COMMIT
    resolves = [p for _, p, _ in hub.requests if "/resolve/" in p]
    assert resolves and all(f"/{source.repo_id}/resolve/{commit}/" in p for p in resolves)  # pinned revision honoured
    records = json.loads((tmp_path / "home" / "models" / name / "hashes.json").read_text())
    assert records["revisions"] == {source.repo_id: commit}
    for f in selected:
        if f.endswith(LFS_SUFFIXES):  # recorded, and checked against the hub's own LFS sha256
            assert records["files"][f]["sha256"] == sha(standin(name, f))
    assert all(r.ok for r in registry.verify(name))
    assert not [e for e in card_entries(tmp_path / "home", name) if e.startswith(".")]  # no temp / partial leftovers
    # the cache answers first: online, a second resolve makes no request; offline, neither
    before = len(hub.requests)
    assert registry.resolve(name) == paths
    go_offline(monkeypatch)
    assert registry.resolve(name) == paths
    assert registry.card_status(name).ready
    assert len(hub.requests) == before


def test_pinned_revision_is_honoured_when_main_moves(hub):
    name = "clip-vit-l-14-openai"
    source = registry.get_card(name).sources[0]
    files, _ = repo_files(registry.get_card(name), source, version="newer ")
    hub.push(source.repo_id, files, "e" * 40)
    paths = registry.fetch(name)
    assert paths["config.json"].read_bytes() == standin(name, "config.json")  # the pinned commit's bytes
    assert not any("/resolve/main/" in p or "e" * 40 in p for _, p, _ in hub.requests)


def test_first_fetch_pins_the_revision_and_verify_says_so(hub, tmp_path, capsys):
    name = "owlvit-large-patch14"
    source = registry.get_card(name).sources[0]
    assert not source.pinned  # this card could not know its commit in advance
    registry.fetch(name)
    newer, _ = repo_files(registry.get_card(name), source, version="newer ")
    hub.push(source.repo_id, newer, "e" * 40)  # main moves on
    (tmp_path / "home" / "models" / name / "config.json").unlink()
    hub.requests.clear()
    path = registry.resolve_file(name, "config.json")
    assert path.read_bytes() == standin(name, "config.json")  # fetched again at the recorded commit, not main
    assert all(f"/resolve/{MAIN_COMMIT}/" in p for _, p, _ in hub.requests if "/resolve/" in p)
    assert main(["models", "verify", name]) == 0
    out = capsys.readouterr().out
    assert f"{name}: revision of {source.repo_id}: {MAIN_COMMIT} (pinned at first fetch)" in out
    assert main(["models", "verify", "dino-vits16"]) == 1  # not fetched: missing
    assert "(not fetched yet — revision" not in capsys.readouterr().out  # a pinned card says "pinned"


def _hf_blobs(home: Path) -> list[Path]:
    return [p for p in (home / "hf").rglob("blobs/*") if p.is_file()]


def test_corrupted_byte_is_refused_and_leaves_nothing(hub, tmp_path):
    name = "dino-vits16"  # trust on first use: the hub's LFS sha256 is the only reference
    hub.faults["model.safetensors"] = "corrupt"
    with pytest.raises(HashMismatchError) as err:
        registry.fetch(name)
    text = str(err.value)
    assert "dino-vits16" in text and "model.safetensors" in text and "LFS sha256" in text
    assert sha(standin(name, "model.safetensors")) in text
    home = tmp_path / "home"
    assert "model.safetensors" not in card_entries(home, name) and not [e for e in card_entries(home, name) if e.startswith(".")]
    bad = [p for p in _hf_blobs(home) if p.read_bytes() != standin(name, p.name) and b"stand-in of dino-vits16/model" in p.read_bytes()[:40]]
    assert bad == [] and not any(p.name == sha(standin(name, "model.safetensors")) for p in _hf_blobs(home))
    del hub.faults["model.safetensors"]  # the hub serves the right bytes again: a clean retry
    assert registry.fetch(name)["model.safetensors"].read_bytes() == standin(name, "model.safetensors")


def test_corrupted_byte_of_a_pinned_file_names_both_hashes(hub, tmp_path):
    name = "arcface-buffalo-l"  # pinned sha256 in the card (its hub source)
    hub.faults["models/buffalo_l/w600k_r50.onnx"] = "corrupt"
    with pytest.raises(HashMismatchError) as err:
        registry.fetch(name)
    assert registry.get_card(name).file("w600k_r50.onnx").sha256 in str(err.value)
    assert [e for e in card_entries(tmp_path / "home", name) if e.endswith(".onnx")] == []  # all-or-nothing per source


@pytest.fixture
def small_chunks(monkeypatch):
    """The client hands over bytes per 10 MB chunk; with 16-byte chunks the half a dropped response
    delivered reaches its .incomplete file, as it does for real multi-GB files."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16)


def test_dropped_connection_is_resumed_by_the_client(hub, small_chunks):
    name = "pickscore-v1"
    hub.drop("model.safetensors")  # half the body, then the connection closes: the client resumes with Range
    assert registry.fetch(name)["model.safetensors"].read_bytes() == standin(name, "model.safetensors")
    assert any(r and r.startswith("bytes=") for _, p, r in hub.requests if p.startswith("/cdn/")), hub.requests


def test_dropped_connection_gives_a_clear_error_then_a_clean_retry(hub, tmp_path, small_chunks):
    name = "pickscore-v1"
    hub.drop("model.safetensors", then_refuse=8)  # more than the client's own retries
    with pytest.raises(WeightsUnavailableError) as err:
        registry.fetch(name)
    text = str(err.value)
    assert "pickscore-v1" in text and "run the same command again to continue" in text
    assert "model.safetensors" not in card_entries(tmp_path / "home", name)
    # huggingface_hub >= 1.x keeps no partial file between calls (a unique temp file per download): nothing
    # half-written is left to be mistaken for the file, and the next call restarts it cleanly
    assert list((tmp_path / "home" / "hf").rglob("*.incomplete")) == []
    assert [p.name for p in _hf_blobs(tmp_path / "home") if p.name == sha(standin(name, "model.safetensors"))] == []
    kept = [p for p in _hf_blobs(tmp_path / "home")]  # config.json, fetched before the drop, is kept
    hub.drops.clear()
    hub.requests.clear()
    assert registry.fetch(name)["model.safetensors"].read_bytes() == standin(name, "model.safetensors")
    assert kept and not any(p.endswith("/config.json") and m == "GET" for m, p, _ in hub.requests)  # not downloaded twice


def test_missing_repo_names_the_card_the_page_and_the_login(hub):
    name = "hpsv2"
    del hub.repos["xswu/HPSv2"]
    with pytest.raises(WeightsUnavailableError) as err:
        registry.fetch(name)
    text = str(err.value)
    assert "'hpsv2'" in text and f"{hub.url}/xswu/HPSv2" in text and sources.hf_login_command() in text


def test_missing_file_names_the_card_and_the_page(hub):
    del hub.repos["xswu/HPSv2"].commits[registry.get_card("hpsv2").sources[0].revision]["HPS_v2.1_compressed.pt"]
    with pytest.raises(WeightsUnavailableError) as err:
        registry.resolve_file("hpsv2", "HPS_v2.1_compressed.pt")
    text = str(err.value)
    assert "EntryNotFound" in text and "'hpsv2'" in text and f"{hub.url}/xswu/HPSv2" in text
    assert registry.resolve_file("hpsv2", "HPS_v2_compressed.pt").is_file()  # the other file is fine


def test_gated_repo_names_the_card_the_licence_page_and_the_login(hub):
    hub.repos["stabilityai/stable-diffusion-xl-base-1.0"].gated = True
    with pytest.raises(WeightsUnavailableError) as err:
        registry.resolve_file("sdxl-base-1.0", "model_index.json")
    text = str(err.value)
    assert "sdxl-base-1.0" in text and f"{hub.url}/stabilityai/stable-diffusion-xl-base-1.0" in text
    assert "accept its licence" in text and "hf auth login" in text  # huggingface_hub >= 1.0 spells it so


def test_login_command_follows_the_installed_client(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.36.0")
    assert sources.hf_login_command() == "huggingface-cli login"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.2.0")
    assert sources.hf_login_command() == "hf auth login"


def test_snapshot_download_works_against_the_local_hub(hub, tmp_path):
    """The model-info and tree endpoints behave as the client expects (snapshot_download uses them)."""
    import huggingface_hub

    card = registry.get_card("grounding-dino-base")
    source = card.sources[0]
    folder = huggingface_hub.snapshot_download(source.repo_id, revision=source.revision, cache_dir=str(tmp_path / "snap"), endpoint=hub.url)
    files, _ = repo_files(card, source)
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted(files)
    assert any(f"/api/models/{source.repo_id}/" in p for _, p, _ in hub.requests), hub.requests


def test_fetch_for_metrics_plans_then_fetches(hub, tmp_path, capsys):
    assert main(["models", "fetch", "--for", "dino,pick_score", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dino-vits16 — licence: Apache-2.0" in out and "pickscore-v1 — licence:" in out and "clip-vit-h-14-laion2b-processor" in out
    size = len(standin("dino-vits16", "model.safetensors"))
    assert f"model.safetensors" in out and f"{size} B" in out  # sizes from the hub's model info
    assert "total to download:" in out and not (tmp_path / "home" / "models").exists()  # dry run: nothing fetched
    assert main(["models", "fetch", "--for", "dino,pick_score"]) == 0
    out = capsys.readouterr().out
    assert out.index("total to download:") < out.index("file(s) ready")  # the total is printed before starting
    for name in ("dino-vits16", "pickscore-v1", "clip-vit-h-14-laion2b-processor"):
        assert registry.card_status(name).ready
    assert not (tmp_path / "home" / "models" / "owlvit-large-patch14").exists()  # exactly the cards asked for
