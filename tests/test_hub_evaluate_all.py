"""First run, end to end, from an empty STELLAR_HOME: fetch -> verify -> doctor -> evaluate --metrics all -> report.

Every model folder is served by the loopback hub (tests/hub_helpers.py) under its card's real repo id,
revision and file names, as *tiny* random models (stellar.testing) — CLIP bigG and ViT-L/14, OWL-ViT,
DINO, PickScore and its processor, HPSv2, ImageReward and its BERT vocabulary — and the aesthetic head,
HPSv1's ``hpc.pt`` and DreamSim's checkpoint zip + DINO backbone by a loopback file server under their cards' URL paths. Faces use the ``offline`` preset (MTCNN and dlib weights copied from the installed
PyPI packages). The cards are the shipped ones, unchanged, except the aesthetic card's URL host. One
test-only step: tiny HPS checkpoints are not ViT-H-14 / ViT-L-14, so their ``open_clip_config.json`` is put next
to the fetched files (the real card needs none), and the tiny DreamSim ensemble its ``dreamsim_config.json``. After the fetch the run is offline and the servers
count no request: evaluation reads only the verified cache.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import urllib.parse
import zipfile

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")
pytest.importorskip("dlib")

from hub_helpers import FileServer, LocalHub  # noqa: E402

from stellar.cli import main  # noqa: E402
from stellar.metrics.base import METRICS  # noqa: E402
from stellar.models import registry, sources  # noqa: E402
from stellar.models.registry import HfSource  # noqa: E402

MAIN_COMMIT = "c" * 40


def _folder_files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_repos(tmp_path_factory):
    """repo id -> files of the tiny stand-in models; plus the aesthetic head and the HPS config."""
    import math as _math

    import torch
    from transformers import AutoTokenizer, CLIPModel

    from stellar.testing import (
        tiny_aesthetic_weights, tiny_clip_folder, tiny_dino_folder, tiny_hps_folder, tiny_hpsv1_folder, tiny_image_reward_folder,
        tiny_dreamsim_folder, tiny_owlvit_folder,
    )  # fmt: skip

    root = tmp_path_factory.mktemp("tiny-hub")
    clip_l = tiny_clip_folder(root / "clip-l", seed=1)
    tokenizer = AutoTokenizer.from_pretrained(str(clip_l))
    tokenizer.save_pretrained(str(clip_l))  # adds tokenizer.json, as the real repo has
    if not (clip_l / "special_tokens_map.json").exists():  # the real repo has one; recent transformers write none
        special = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
        (clip_l / "special_tokens_map.json").write_text(json.dumps(special))
    pick = tiny_clip_folder(root / "pick", seed=3)
    model = CLIPModel.from_pretrained(str(pick))
    with torch.no_grad():
        model.logit_scale.fill_(_math.log(100.0))
    model.save_pretrained(pick)
    pick_files = _folder_files(pick)
    hps = tiny_hps_folder(root / "hps")
    reward = _folder_files(tiny_image_reward_folder(root / "image-reward"))
    repos = {
        "THUDM/ImageReward": {k: v for k, v in reward.items() if k in ("ImageReward.pt", "med_config.json")},
        "google-bert/bert-base-uncased": {"vocab.txt": reward["vocab.txt"], "tokenizer_config.json": b'{"do_lower_case": true}'},
        "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k": _folder_files(tiny_clip_folder(root / "clip-g", seed=5)),
        "openai/clip-vit-large-patch14": _folder_files(clip_l),
        "google/owlvit-large-patch14": _folder_files(tiny_owlvit_folder(root / "owl")),
        "facebook/dino-vits16": _folder_files(tiny_dino_folder(root / "dino")),
        "yuvalkirstain/PickScore_v1": {k: v for k, v in pick_files.items() if k in ("config.json", "model.safetensors")},
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": {k: v for k, v in pick_files.items() if k not in ("config.json", "model.safetensors")},
        "xswu/HPSv2": {k: v for k, v in _folder_files(hps).items() if k.endswith(".pt")},
    }
    aesthetic = tiny_aesthetic_weights(root / "aesthetic.pth", input_dim=16).read_bytes()  # 16 = tiny CLIP-L projection
    hps1 = tiny_hpsv1_folder(root / "hps1")
    dreamsim = tiny_dreamsim_folder(root / "dreamsim")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:  # the release zip's layout (dreamsim 0.2.1 download_weights)
        for member in ("ensemble_lora/adapter_config.json", "ensemble_lora/adapter_model.safetensors", "clip_vitb16_pretrain.pth.tar", "open_clip_vitb16_pretrain.pth.tar"):
            z.write(dreamsim / member, member)
    # card -> the content of each of its URL sources, in order
    urls = {"laion-aesthetic-v2": [aesthetic], "hpsv1": [(hps1 / "hpc.pt").read_bytes()],
            "dreamsim-ensemble": [zipped.getvalue(), (dreamsim / "dino_vitbase16_pretrain.pth").read_bytes()]}  # fmt: skip
    configs = {"hpsv2": (hps / "open_clip_config.json").read_bytes(), "hpsv1": (hps1 / "open_clip_config.json").read_bytes(),
               "dreamsim-ensemble": (dreamsim / "dreamsim_config.json").read_bytes()}  # fmt: skip
    return repos, urls, configs


@pytest.fixture
def servers(tiny_repos, tmp_path, monkeypatch):
    import huggingface_hub.constants

    repos, urls, _ = tiny_repos
    hub = LocalHub(lifetime=600)
    files = FileServer(lifetime=600)
    for card in registry.CARDS:
        for source in card.sources:
            if isinstance(source, HfSource) and source.repo_id in repos:
                hub.add(source.repo_id, repos[source.repo_id], source.revision if source.pinned else MAIN_COMMIT)
    for name, contents in urls.items():  # URL cards: served by the loopback file server under their URL paths
        card = registry.get_card(name)
        assert len(card.sources) == len(contents)
        served = []
        for url_source, content in zip(card.sources, contents):
            path = urllib.parse.unquote(urllib.parse.urlsplit(url_source.url).netloc + urllib.parse.urlsplit(url_source.url).path)
            files.files[path] = content
            served.append(dataclasses.replace(url_source, url=f"{files.url}/{urllib.parse.quote(path)}"))
        monkeypatch.setitem(registry._cards(), card.name, dataclasses.replace(card, sources=tuple(served)))
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(sources, "_REACHABLE", {})
    registry.clear_local_overrides()
    yield hub, files
    hub.stop()
    files.stop()
    registry.clear_local_overrides()


def test_first_run_fetch_verify_evaluate_report_from_an_empty_home(servers, tiny_repos, demo_dataset, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from stellar.data import StellarDataset

    hub, files = servers
    home = tmp_path / "home"
    assert not home.exists()

    # 1. fetch exactly what --metrics all needs with the offline face preset
    assert main(["models", "fetch", "--for", "all", "--faces", "offline"]) == 0
    out = capsys.readouterr().out
    assert "total to download:" in out and out.index("total to download:") < out.index("file(s) ready")
    fetched = sorted(p.name for p in (home / "models").iterdir())
    assert fetched == sorted(
        ["mtcnn", "dlib-shape-predictor-5", "dlib-resnet-v1", "clip-vit-bigg-14-laion2b", "owlvit-large-patch14", "dino-vits16",
         "clip-vit-l-14-openai", "laion-aesthetic-v2", "pickscore-v1", "clip-vit-h-14-laion2b-processor", "hpsv2", "hpsv1",
         "imagereward-v1", "bert-base-uncased-tokenizer", "dreamsim-ensemble"]
    )  # fmt: skip
    for name, config in tiny_repos[2].items():  # test-only: tiny architectures
        (home / "models" / name / ("dreamsim_config.json" if name == "dreamsim-ensemble" else "open_clip_config.json")).write_bytes(config)

    # 2. verify: every file re-hashed; the first-fetch commit reported
    assert main(["models", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"owlvit-large-patch14: revision of google/owlvit-large-patch14: {MAIN_COMMIT} (pinned at first fetch)" in out

    # 3. doctor: everything asked is ready
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    assert main(["doctor", "--for", "all", "--faces", "offline", "--device", "cpu"]) == 0
    n = len(METRICS) + 1  # the face preset and every metric
    assert f"{n} of {n} ready" in capsys.readouterr().out

    # 4. evaluate every metric, offline: the servers see no request
    ds = StellarDataset(demo_dataset)
    gen = tmp_path / "gen"
    gen.mkdir()
    jobs = [j for j in ds.jobs("test") if j.subject in ("000", "004") and j.prompt.index in (0, 12)]
    assert {j.prompt.kind for j in jobs} == {"T", "H"}
    for job in jobs:
        Image.open(job.photo.path).convert("RGB").resize((256, 256)).save(gen / f"{job.name}.png")
    before = (len(hub.requests), len(files.requests))
    run = tmp_path / "run"
    code = main(["evaluate", "--dataset", str(demo_dataset), "--generated", str(gen), "--out", str(run), "--metrics", "all",
                 "--faces", "offline", "--device", "cpu", "--batch-size", "4"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (len(hub.requests), len(files.requests)) == before
    info = json.loads((run / "run.json").read_text())
    assert info["metrics"] == list(METRICS) and info["skipped_metrics"] == {} and info["exclusion_rule"] == "applied"
    import pandas as pd

    frame = pd.read_parquet(run / "per_image.parquet")
    for name, meta in METRICS.items():
        if meta.level == "image":
            assert frame[name].notna().any(), name
    summary = json.loads((run / "summary.json").read_text())
    for name in METRICS:
        if name != "aps":  # APS needs both classes of an attribute among so few photos: it may be NaN
            assert math.isfinite(summary["means"][name]), name

    # 5. report
    assert main(["report", str(run)]) == 0
    table = capsys.readouterr().out
    for meta in METRICS.values():
        assert meta.display_name in table, meta.display_name
