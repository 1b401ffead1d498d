"""FaceNet: our InceptionResnetV1 and crop protocol vs facenet-pytorch (the test oracle).

The released VGGFace2 weights cannot be downloaded here, so parity is tested with a seeded random
oracle network (BatchNorm statistics randomised too, so every layer matters) whose state dict —
with the classifier ``logits.*`` keys the real checkpoint has — is loaded into ours. The ``slow``
test repeats the comparison with the real checkpoint when it is in the cache.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

facenet_pytorch = pytest.importorskip("facenet_pytorch")
from PIL import Image  # noqa: E402

from stellar.errors import StellarError  # noqa: E402
from stellar.models.faces._torch import WeightsFileError  # noqa: E402
from stellar.models.faces.base import Detection, FaceEmbedder  # noqa: E402
from stellar.models.faces.facenet import (  # noqa: E402
    WEIGHTS_FILE,
    FaceNetEmbedder,
    InceptionResnetV1,
    extract_faces,
    load_facenet_weights,
)
from stellar.models.faces.mtcnn import MTCNNDetector  # noqa: E402

EMB_TOL = 1e-5


def _oracle_data_dir() -> Path:
    return Path(importlib.util.find_spec("facenet_pytorch").submodule_search_locations[0]) / "data"


def _photos() -> dict[str, np.ndarray]:
    import skimage.data
    from matplotlib import cbook

    hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    # a two-face image: the astronaut and Grace Hopper side by side, at different scales
    duo = np.full((420, 700, 3), 200, np.uint8)
    duo[:400, :400] = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((400, 400), Image.BILINEAR))
    duo[60:360, 420:676] = np.asarray(Image.fromarray(hopper).resize((256, 300), Image.BILINEAR))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": hopper, "duo": duo}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return _photos()


@pytest.fixture(scope="module")
def oracle_net():
    """facenet-pytorch's network with seeded random weights and a VGGFace2-sized classifier head.

    BatchNorm statistics are calibrated on a random batch (then the affine parameters jittered):
    with the default running statistics a random network maps every input to nearly the same
    vector, which would make an embedding tolerance meaningless.
    """
    torch.manual_seed(0)
    net = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
    bns = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    gen = torch.Generator().manual_seed(1)
    net.train()
    with torch.no_grad():
        net(torch.randn(6, 3, 160, 160, generator=gen))
        for m in bns:
            m.weight.copy_(1 + torch.randn(m.weight.shape, generator=gen) * 0.1)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    net.eval()
    net.classify = False  # forward -> L2-normalised embeddings, like ours
    return net


@pytest.fixture(scope="module")
def checkpoint(oracle_net, tmp_path_factory) -> Path:
    """The random state dict saved like the released file (a plain state dict, logits included)."""
    path = tmp_path_factory.mktemp("facenet") / WEIGHTS_FILE
    torch.save(oracle_net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def embedder(checkpoint) -> FaceNetEmbedder:
    return FaceNetEmbedder(device="cpu", weights=checkpoint, batch_size=2)


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector(device="cpu", weights=_oracle_data_dir())


def test_state_dict_keys_and_shapes_equal_facenet_pytorch():
    ours = InceptionResnetV1().state_dict()
    theirs = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=False).state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_checkpoint_with_classifier_loads_unchanged(embedder, oracle_net):
    assert embedder.dropped_keys == ["logits.weight", "logits.bias"]
    ours = embedder.model.state_dict()
    theirs = oracle_net.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not embedder.model.training


def test_random_weight_parity_on_random_batches(embedder, oracle_net):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 160, 160, generator=gen)
    with torch.no_grad():
        ref = oracle_net(x)
    ours = embedder.embed_crops(x)
    assert ours.shape == (3, 512) and ours.dtype == np.float32
    diff = np.abs(ours - ref.numpy()).max()
    assert diff <= EMB_TOL, diff
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # the embedding is not trivially constant: different inputs, different vectors
    assert float(ours[0] @ ours[1]) < 0.95, ours @ ours.T


def test_crop_and_embedding_pipeline_matches_facenet_pytorch(photos, detector, embedder, oracle_net):
    """Oracle: MTCNN(image_size=160, margin=0, post_process=True) crops -> oracle network."""
    oracle_mtcnn = facenet_pytorch.MTCNN(image_size=160, margin=0, post_process=True, keep_all=True, device="cpu")
    names = list(photos)
    detections = detector.detect([photos[n] for n in names])
    embeddings = embedder.embed([photos[n] for n in names], detections)
    for name, dets, emb in zip(names, detections, embeddings):
        ref_crops = oracle_mtcnn(Image.fromarray(photos[name]))
        assert ref_crops is not None and ref_crops.shape[0] == len(dets), name
        ours = extract_faces(photos[name], [d.box for d in dets])
        assert ours.shape == ref_crops.shape and ours.dtype == torch.float32
        assert torch.equal(ours, ref_crops), (name, (ours - ref_crops).abs().max())
        with torch.no_grad():
            ref = oracle_net(ref_crops).numpy()
        assert emb.shape == (len(dets), 512)
        assert np.abs(emb - ref).max() <= EMB_TOL, name
    assert len(detections[names.index("duo")]) == 2


@pytest.mark.parametrize("margin", [0, 20, 44])
def test_extract_faces_equals_facenet_pytorch_extract_face(photos, margin):
    from facenet_pytorch import extract_face, fixed_image_standardization

    image = photos["grace_hopper"]
    pil = Image.fromarray(image)
    boxes = [
        np.array([181.3, 62.9, 267.7, 172.05], np.float32),
        np.array([-12.6, -30.2, 90.4, 75.5], np.float32),  # beyond the top-left corner
        np.array([450.2, 520.7, 530.9, 640.1], np.float32),  # beyond the bottom-right corner
        np.array([10.0, 10.0, 30.0, 400.0], np.float32),  # very tall: resized, not squared
    ]
    ours = extract_faces(image, boxes, 160, margin)
    for i, box in enumerate(boxes):
        ref = fixed_image_standardization(extract_face(pil, box, 160, margin))
        assert torch.equal(ours[i], ref), (i, (ours[i] - ref).abs().max())


def test_embed_protocol_and_edge_cases(embedder, photos):
    assert isinstance(embedder, FaceEmbedder)
    assert embedder.name == "facenet-vggface2" and embedder.dim == 512
    image = photos["astronaut"]
    box = Detection(box=np.array([181.0, 62.0, 268.0, 172.0], np.float32), score=0.99)
    out = embedder.embed([image, image], [[], [box]])
    assert out[0].shape == (0, 512) and out[0].dtype == np.float32
    assert out[1].shape == (1, 512)
    assert embedder.embed([], []) == []
    # a face and its mirror image are closer than the face and an unrelated crop of the photo
    flipped = image[:, ::-1].copy()
    fbox = Detection(box=np.array([512 - 268.0, 62.0, 512 - 181.0, 172.0], np.float32), score=0.99)
    other = Detection(box=np.array([300.0, 300.0, 420.0, 420.0], np.float32), score=0.99)
    [a], [b], [c] = embedder.embed([image, flipped, image], [[box], [fbox], [other]])
    assert float(a @ b) > float(a @ c)
    with pytest.raises(StellarError, match="2 images but 1"):
        embedder.embed([image, image], [[box]])


def test_weight_file_errors(tmp_path, oracle_net):
    state = {k: v for k, v in oracle_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    model = InceptionResnetV1()
    assert load_facenet_weights(model, state) == ["logits.weight", "logits.bias"]  # no counters: fine
    broken = dict(state)
    del broken["last_bn.running_var"]
    with pytest.raises(WeightsFileError, match="missing keys"):
        load_facenet_weights(InceptionResnetV1(), broken)
    broken = dict(state)
    broken["last_linear.weight"] = torch.zeros(128, 1792)
    with pytest.raises(WeightsFileError, match="shape"):
        load_facenet_weights(InceptionResnetV1(), broken)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(WeightsFileError, match="bad.pt") as err:
        FaceNetEmbedder(device="cpu", weights=bad)
    assert "stellar models fetch facenet-vggface2" in str(err.value)
    with pytest.raises(WeightsFileError, match="not found"):
        FaceNetEmbedder(device="cpu", weights=tmp_path / "absent.pt")


def _cached_real_weights() -> Path | None:
    try:
        from stellar.models.registry import resolve_file

        return Path(resolve_file("facenet-vggface2", WEIGHTS_FILE))  # offline in tests: cache only
    except (ImportError, StellarError):
        pass
    torch_home = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch"))
    legacy = torch_home.expanduser() / "checkpoints" / WEIGHTS_FILE  # where facenet-pytorch caches it
    return legacy if legacy.is_file() else None


@pytest.mark.slow
def test_real_vggface2_weights_parity_and_identity(photos, detector):
    path = _cached_real_weights()
    if path is None:
        pytest.skip(f"{WEIGHTS_FILE} not cached (stellar models fetch facenet-vggface2)")
    embedder = FaceNetEmbedder(device="cpu", weights=path)
    oracle = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=False).eval()
    oracle.load_state_dict({k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("logits.")})
    astronaut, hopper = photos["astronaut"], photos["grace_hopper"]
    flipped = astronaut[:, ::-1].copy()
    dets = detector.detect([astronaut, flipped, hopper])
    embs = embedder.embed([astronaut, flipped, hopper], dets)
    crops = extract_faces(astronaut, [d.box for d in dets[0]])
    with torch.no_grad():
        assert np.abs(embs[0] - oracle(crops).numpy()).max() <= EMB_TOL
    same = float(embs[0][0] @ embs[1][0])
    different = float(embs[0][0] @ embs[2][0])
    assert same > 0.8 and different < 0.5 and same > different


def test_default_weights_resolve_through_the_registry(tmp_path, monkeypatch):
    registry = pytest.importorskip("stellar.models.registry")
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    with pytest.raises(registry.WeightsUnavailableError, match="stellar models fetch facenet-vggface2"):
        FaceNetEmbedder(device="cpu")
