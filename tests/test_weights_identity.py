"""Issue 9.8: every feature-cache protocol names the weights themselves (sha256 of the files loaded, or
the hub commit), the dtype and the preprocessing; the hpsv2 card describes the letterbox the code does.

The central regression: a local CLIP folder whose weights are replaced in place used to keep its cache
namespace (``local:PATH``), so the next run reused the old image features with new text features
(CLIP-I unchanged, CLIP-T wrong).
"""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stellar.data import StellarDataset
from stellar.engine import EvalConfig, evaluate
from stellar.engine.cache import FeatureCache
from stellar.models import loading

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _noise_set(ds, folder):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for job in ds.jobs("test"):
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(folder / f"{job.name}.png")
    return folder


def _run(ds, gen, out, clip_folder, cache):
    from stellar.models.clip import load_clip

    clip = load_clip(str(clip_folder), device="cpu", batch_size=4)
    summary = evaluate(ds, gen, out, EvalConfig(metrics=("clip_t", "clip_i"), batch_size=4), clip=clip, cache=cache, progress=False)
    return summary, pd.read_parquet(out / "per_image.parquet").set_index("name")


def test_clip_features_reused_after_weights_replaced_in_place(synthetic, tmp_path, monkeypatch):
    from stellar.testing import tiny_clip_folder

    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    ds = StellarDataset(synthetic)
    gen = _noise_set(ds, tmp_path / "gen")
    folder = tiny_clip_folder(tmp_path / "clip", seed=0)
    cache = FeatureCache(tmp_path / "features")
    first, old = _run(ds, gen, tmp_path / "run1", folder, cache)
    n_images = first["model_passes"]["clip_image_passes"]
    assert n_images > 0
    # the same weights again: every image feature comes from the cache
    again, _ = _run(ds, gen, tmp_path / "run1b", folder, cache)
    assert again["model_passes"]["clip_image_passes"] == 0

    tiny_clip_folder(folder, seed=1)  # new weights, same folder, same file names and sizes
    second, new = _run(ds, gen, tmp_path / "run2", folder, cache)
    assert second["model_passes"]["clip_image_passes"] == n_images  # nothing reused
    # the numbers are those of a run that never saw the old weights (fresh cache)
    _, truth = _run(ds, gen, tmp_path / "run3", folder, FeatureCache(tmp_path / "fresh"))
    np.testing.assert_allclose(new["clip_t"], truth["clip_t"], atol=1e-6)
    np.testing.assert_allclose(new["clip_i"], truth["clip_i"], atol=1e-6)
    assert not np.allclose(new["clip_i"], old["clip_i"]) and not np.allclose(new["clip_t"], old["clip_t"])


def test_clip_protocol_names_weights_dtype_and_processor(tmp_path):
    from stellar.models.clip import ClipEncoder
    from stellar.testing import tiny_clip_folder

    folder = tiny_clip_folder(tmp_path / "clip")
    enc = ClipEncoder.from_pretrained(str(folder), device="cpu")
    assert f"weights={loading.weights_identity(folder)}" in enc.protocol and "dtype=fp32" in enc.protocol
    base = enc.protocol
    enc._dtype = torch.float16  # what a CUDA device gets: fp16 features must not share fp32 entries
    assert enc.protocol != base and "dtype=fp16" in enc.protocol
    enc._dtype = torch.float32
    enc.image_processor.crop_size = {"height": 30, "width": 30}
    assert enc.protocol != base  # another preprocessing, another namespace
    # a model built in memory (no file) is identified by its state dict
    import copy

    from transformers import CLIPModel

    cfg = copy.deepcopy(enc.model.config)
    cfg._name_or_path = ""
    torch.manual_seed(5)
    mem = ClipEncoder(CLIPModel(cfg), enc.tokenizer, enc.image_processor, name="mem", device="cpu")
    assert mem.weights.startswith("state:") and mem.weights != enc.weights


def test_file_sha256_memoised_by_file_state(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    calls = []
    real = loading._hash_file
    monkeypatch.setattr(loading, "_hash_file", lambda p: calls.append(p) or real(p))
    first = loading.file_sha256(f)
    assert loading.file_sha256(f) == first and len(calls) == 1  # in-process memo
    loading._SHA_MEMO.clear()
    assert loading.file_sha256(f) == first and len(calls) == 1  # $STELLAR_HOME/file-sha256.sqlite (another process)
    f.write_bytes(b"b" * 1000)  # same size, new content
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1))
    assert loading.file_sha256(f) != first and len(calls) == 2


def test_face_analyzer_protocol_names_the_weight_files(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    from stellar.models.faces.analyzer import FaceAnalyzer

    w = tmp_path / "embedder.onnx"
    w.write_bytes(b"weights-1")

    class Det:
        name, protocol = "fake-det", "fake-det:v1"

        def detect(self, images):
            return [[] for _ in images]

    class Emb:
        name, protocol, dim = "fake-emb", "fake-emb:crop112", 4
        weight_files = (w,)

    one = FaceAnalyzer(detector=Det(), embedder=Emb(), device="cpu").protocol
    assert f"weights={loading.weights_identity(w)}" in one and "dtype=fp32" in one
    w.write_bytes(b"weights-2")
    assert FaceAnalyzer(detector=Det(), embedder=Emb(), device="cpu").protocol != one


def test_real_face_components_list_their_weight_files():
    pytest.importorskip("dlib")
    from stellar.models.faces.dlib_backend import DlibResNetEmbedder, packaged_models_dir

    models = packaged_models_dir()
    if models is None:
        pytest.skip("face_recognition_models not installed")
    emb = DlibResNetEmbedder(models)
    assert [p.name for p in emb.weight_files] == ["shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"]


def _rebuild(kind, folder, seed):
    from stellar import testing

    if kind == "dino":
        return testing.tiny_dino_folder(folder, seed=seed)
    if kind == "hps":
        return testing.tiny_hps_folder(folder, seed=seed)
    if kind == "owlvit":
        return testing.tiny_owlvit_folder(folder, seed=seed)
    if kind == "vqa":
        return testing.tiny_blip_vqa_folder(folder, seed=seed)
    if kind in ("pickscore", "clip-relation"):
        return testing.tiny_clip_folder(folder, seed=seed)
    if kind == "aesthetic":
        testing.tiny_clip_folder(folder / "clip", seed=0)
        return testing.tiny_aesthetic_weights(folder / "head.pth", input_dim=16, seed=seed)
    raise AssertionError(kind)


def _load(kind, path):
    from stellar.models import standard

    if kind == "dino":
        return standard.load_dino(str(path), device="cpu").protocol
    if kind == "hps":
        pytest.importorskip("open_clip")
        return standard.load_hps("v2.0", str(path), device="cpu").protocol
    if kind == "pickscore":
        return standard.load_pickscore(str(path), device="cpu").protocol
    if kind == "aesthetic":
        return standard.load_aesthetic(str(path), str(path.parent / "clip"), device="cpu").protocol
    if kind == "owlvit":
        from stellar.models.detectors import load_detector

        return load_detector(str(path), device="cpu").protocol
    if kind == "vqa":
        from stellar.models.relations import VqaRelationScorer

        return VqaRelationScorer.from_pretrained(str(path), device="cpu").protocol
    if kind == "clip-relation":
        from stellar.models.clip import load_clip
        from stellar.models.relations import ClipRelationScorer

        return ClipRelationScorer(load_clip(str(path), device="cpu"), ["in", "on"]).protocol
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["dino", "hps", "pickscore", "aesthetic", "owlvit", "vqa", "clip-relation"])
def test_every_cache_protocol_changes_when_weights_are_replaced_in_place(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    folder = tmp_path / kind
    path = _rebuild(kind, folder, 0)
    before = _load(kind, path)
    assert "weights=sha256:" in before and "dtype=" in before and "pre=" in before
    assert _load(kind, path) == before  # stable for the same files
    _rebuild(kind, folder, 7)
    assert _load(kind, path) != before


def test_hpsv2_card_describes_the_letterbox_the_code_does():
    from stellar.models import registry
    from stellar.models.standard import HpsModel

    text = str(registry.get_card("hpsv2").preprocessing).lower()
    assert "center crop" not in text and "centre crop" not in text
    assert "longest" in text and "pad" in text
    assert "resize-longest" in HpsModel.__dataclass_fields__["preprocess_tag"].default
