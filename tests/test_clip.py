"""CLIP wrapper with a tiny random CLIP saved to disk (tokenizer from local vocab files)."""

import numpy as np
import pytest

pytest.importorskip("transformers")

from stellar.errors import StellarError
from stellar.models.clip import ClipEncoder
from stellar.testing import tiny_clip_folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tiny_clip_folder(tmp_path_factory.mktemp("clip"))
    return ClipEncoder.from_pretrained(str(folder), device="cpu", batch_size=3)


def test_tokenizer_loaded_fully(clip):
    assert len(clip.tokenizer) == 514  # not the 2-token fallback


def test_shapes_and_unit_norm(clip):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(5)]
    im = clip.encode_images(images)
    tx = clip.encode_texts(["a person riding a horse", "a person in a library"])
    assert im.shape == (5, 16) and tx.shape == (2, 16)
    assert np.allclose(np.linalg.norm(im, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(tx, axis=1), 1, atol=1e-5)


def test_batching_equals_one_by_one(clip):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    batched = clip.encode_images(images)
    single = np.concatenate([clip.encode_images([x]) for x in images])
    assert np.allclose(batched, single, atol=1e-5)


def test_long_prompt_truncated_explicitly_not_crashing(clip):
    long = "a person " + "riding a very long horse " * 20
    out = clip.encode_texts([long, "a person"])
    assert out.shape == (2, 16) and clip.last_truncated == 1
    # truncation keeps the first 77 tokens: the same prefix with other tail gives the same embedding
    other = "a person " + "riding a very long horse " * 19 + "zzzz zzz zz"
    assert np.allclose(clip.encode_texts([other])[0], out[0], atol=1e-6)


def test_broken_tokenizer_is_refused(tmp_path):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tiny_clip_folder(tmp_path / "c")
    model = CLIPModel.from_pretrained(folder)
    broken = CLIPTokenizer()  # what an offline hub load can silently give: 2-3 tokens
    with pytest.raises(StellarError, match="did not load correctly"):
        ClipEncoder(model, broken, CLIPImageProcessor.from_pretrained(folder), name="tiny")
