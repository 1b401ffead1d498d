"""`stellar doctor` known answers (empty cache, partial cache, corrupted file, missing extra, ready) and
`stellar evaluate` failing fast with the same text before it opens any image."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from stellar.cli import main
from stellar.models import registry, sources


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    registry.clear_local_overrides()
    yield tmp_path / "home"
    registry.clear_local_overrides()


def doctor(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["doctor", "--device", "cpu", *args])
    return code, [line.rstrip() for line in capsys.readouterr().out.splitlines()]


def row(lines: list[str], subject: str) -> list[str]:
    """The line of ``subject`` (spaces collapsed) and its ``fix:`` lines."""
    start = next(i for i, line in enumerate(lines) if line.split("  ")[0].strip() == subject)
    out = [" ".join(lines[start].split())]
    for line in lines[start + 1 :]:
        if not line.strip().startswith("fix: "):
            break
        out.append(line.strip())
    return out


def test_empty_cache(capsys, home):
    code, lines = doctor(capsys, "--for", "ips", "--clip", "none")
    assert code == 1
    assert lines[0] == f"stellar doctor — STELLAR_HOME={home}  offline: yes  device: cpu  fp16: no (cpu: fp32)"
    (ips, fix) = row(lines, "ips")
    assert ips.split() == ["ips", "NOT", "READY", "weights", "not", "downloaded:", "facenet-vggface2", "(106.7", "MiB)"]
    assert fix == "fix: stellar models fetch facenet-vggface2"
    assert "0 of 2 ready" in lines  # the paper face preset and IPS
    assert lines[-2:] == [
        "  stellar models fetch facenet-vggface2",
        "  (offline here: run the fetch where the network is reachable and copy $STELLAR_HOME/models/<card> here, or pass --weights CARD=PATH)",
    ]


def test_ready_from_installed_packages(capsys):
    pytest.importorskip("dlib")
    pytest.importorskip("torch")
    code, lines = doctor(capsys, "--for", "offline", "--clip", "none")
    assert code == 0
    assert row(lines, "ips") == ["ips ready weights: mtcnn (installed package), dlib-shape-predictor-5 (installed package), dlib-resnet-v1 (installed package)"]
    assert "4 of 4 ready" in lines and not any(line.startswith("to fix") for line in lines)


def _fake_card_with_two_files(tmp_path, monkeypatch):
    """A url card of two files, served from file:// (fetched for real into the cache)."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"A" * 1000)
    b.write_bytes(b"B" * 2000)
    card = registry.ModelCard(
        "clip-vit-bigg-14-laion2b",  # stands in for the default CLIP card
        "clip",
        (registry.UrlSource(a.as_uri(), file="a.bin"), registry.UrlSource(b.as_uri(), file="b.bin")),
        (registry.ModelFile("a.bin"), registry.ModelFile("b.bin")),
        "MIT",
        "none",
    )
    monkeypatch.setitem(registry._cards(), card.name, card)
    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    registry.fetch(card.name)
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    return card


def test_partial_cache(capsys, home, tmp_path, monkeypatch):
    card = _fake_card_with_two_files(tmp_path, monkeypatch)
    (home / "models" / card.name / "b.bin").unlink()
    code, lines = doctor(capsys, "--for", "clip_t")
    assert code == 1
    assert row(lines, "clip_t") == [
        "clip_t NOT READY weights not downloaded: clip-vit-bigg-14-laion2b (partly downloaded, 2.0 KiB)",
        "fix: stellar models fetch clip-vit-bigg-14-laion2b",
    ]


def test_corrupted_file_then_repaired_by_the_printed_command(capsys, home, tmp_path, monkeypatch):
    card = _fake_card_with_two_files(tmp_path, monkeypatch)
    path = home / "models" / card.name / "a.bin"
    path.write_bytes(b"A" * 999 + b"Z")  # same size, one byte changed
    code, lines = doctor(capsys, "--for", "clip_i")
    assert code == 1
    assert row(lines, "clip_i") == [
        "clip_i NOT READY clip-vit-bigg-14-laion2b: sha256 mismatch (a.bin)",
        "fix: stellar models fetch clip-vit-bigg-14-laion2b",
    ]
    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    assert main(["models", "fetch", "clip-vit-bigg-14-laion2b"]) == 0  # the remedy, as printed
    capsys.readouterr()
    code, lines = doctor(capsys, "--for", "clip_i")
    assert code == 0 and row(lines, "clip_i")[0].split()[:2] == ["clip_i", "ready"]


def test_verified_stamp_avoids_rehashing_but_not_a_changed_file(home, tmp_path, monkeypatch):
    card = _fake_card_with_two_files(tmp_path, monkeypatch)
    calls = []
    real = registry._sha256
    monkeypatch.setattr(registry, "_sha256", lambda p: calls.append(p) or real(p))
    assert registry.card_status(card.name).ready and calls == []  # verified at install, unchanged since
    records = json.loads((home / "models" / card.name / "hashes.json").read_text())
    assert records["files"]["a.bin"]["verified"][0] == 1000
    path = home / "models" / card.name / "a.bin"
    path.write_bytes(b"A" * 1000)  # rewritten (new mtime), same bytes: hashed again, still fine
    assert registry.card_status(card.name).ready and len(calls) == 1


def test_missing_extra(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dlib" else real(name, *a))
    code, lines = doctor(capsys, "--for", "offline", "--clip", "none")
    assert code == 1
    preset = row(lines, "face preset offline")
    assert preset[0].startswith("face preset offline NOT READY extra 'dlib' not installed (no module dlib)")
    assert preset[1] == "fix: pip install 'stellar-bench[dlib]'"
    assert "  pip install 'stellar-bench[dlib]'" in lines


def test_unknown_for_word_is_refused_with_the_choices(capsys):
    assert main(["doctor", "--for", "ipss"]) == 2
    err = capsys.readouterr().err
    assert "--for 'ipss'" in err and "did you mean ips" in err and "paper, all, default" in err


def test_cuda_asked_without_a_gpu(capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, lines = doctor(capsys, "--for", "clip_t", "--clip", "none", "--device", "cuda")
    assert code == 1 and "device cuda asked for, but torch sees no CUDA GPU" in row(lines, "clip_t")[0]


def test_evaluate_fails_fast_with_the_doctor_text_before_opening_anything(capsys, tmp_path):
    missing = tmp_path / "no-such-dataset"  # never opened: the check comes first
    code = main(["evaluate", "--dataset", str(missing), "--generated", str(tmp_path / "gen"), "--out", str(tmp_path / "run"),
                 "--metrics", "ips,goa", "--faces", "paper", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert "nothing was evaluated" in err and "stellar doctor — STELLAR_HOME=" in err
    assert "fix: stellar models fetch facenet-vggface2" in err and "fix: stellar models fetch owlvit-large-patch14" in err
    assert str(missing) not in err and not (tmp_path / "run").exists()


def test_evaluate_online_leaves_missing_weights_to_the_run(tmp_path, monkeypatch):
    """Online, weights that are only missing are fetched by the run itself: the check does not stop it."""
    from argparse import Namespace

    from stellar.commands.doctor import preflight

    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(sources, "probe", lambda *a, **k: pytest.fail("the check must not touch the network"))
    args = Namespace(faces="paper", clip="clip-vit-bigg-14-laion2b", detector=None, relation_scorer=None, scorer_option=[], device="cpu")
    diagnosis = preflight(("ips", "clip_t"), args)
    assert "facenet-vggface2 (106.7 MiB) fetched at start" in diagnosis.render()


def test_read_only_cache_is_checked_without_writing(home, tmp_path, monkeypatch):
    card = _fake_card_with_two_files(tmp_path, monkeypatch)
    records = home / "models" / card.name / "hashes.json"
    data = json.loads(records.read_text())
    data["files"]["a.bin"].pop("verified")  # e.g. fetched by an older version: no stamp yet
    records.write_text(json.dumps(data))
    monkeypatch.setattr(registry, "_write_records", lambda *a: (_ for _ in ()).throw(PermissionError("read-only")))
    assert registry.card_status(card.name).ready


def test_a_metric_whose_model_role_has_no_entry_is_not_blocked(monkeypatch):
    """A metric added elsewhere (new role, no entry in stellar.models.requirements yet) is not checked,
    rather than making every `stellar evaluate` of it fail."""
    from stellar.metrics import base
    from stellar.models.requirements import RunOptions, metric_need

    info = dataclasses.replace(base.METRICS["hpsv2"], name="new_metric", models=("brand-new-role",))
    monkeypatch.setitem(base.METRICS, "new_metric", info)
    need = metric_need("new_metric", RunOptions())
    assert need.cards == () and need.extras == ()
