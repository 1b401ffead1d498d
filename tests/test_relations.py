"""Relation scorers of RFS with tiny random models (CLIP, BLIP VQA): known answers, batching, crops."""

import doctest

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from stellar.errors import StellarError
from stellar.models import relations as rel_mod
from stellar.models.relations import (
    ClipRelationScorer,
    RelationQuery,
    VqaRelationScorer,
    crop,
    processor_fill,
    relation_text,
    square_crop,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from stellar.models.clip import ClipEncoder
    from stellar.testing import tiny_clip_folder

    return ClipEncoder.from_pretrained(str(tiny_clip_folder(tmp_path_factory.mktemp("clip"))), device="cpu")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)


VOCAB = ["riding", "in", "next to", "holding"]


def test_doctests():
    assert doctest.testmod(rel_mod).failed == 0


def test_crop_and_texts():
    im = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    c = crop(im, (10.2, 5.9, 20.1, 30))
    assert c.shape == (25, 11, 3) and np.array_equal(c, im[5:30, 10:21])
    assert crop(im, (70, 50, 80, 60)).shape == (1, 1, 3)  # outside: one pixel at the border, never empty
    assert relation_text("person", "next  to", "umbrella") == "a person next to an umbrella"


def test_clip_scorer_known_answer(clip, image):
    scorer = ClipRelationScorer(clip, VOCAB)
    q = RelationQuery(image, (5, 4, 50, 36), "person", "riding", "horse")
    (p,) = scorer.score([q])
    # by hand: softmax over the vocabulary of exp(logit_scale) * cos(crop, "a person {pred} a horse")
    img = clip.encode_images([square_crop(image, (5, 4, 50, 36), processor_fill(clip.image_processor))])[0].astype(np.float64)
    txt = clip.encode_texts([f"a person {v} a horse" for v in VOCAB]).astype(np.float64)
    logits = float(clip.model.logit_scale.exp()) * txt @ img
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert p == pytest.approx(expected[0], rel=1e-5)
    # the probabilities of all predicates on one region sum to 1
    all_p = scorer.score([RelationQuery(image, q.box, "person", v, "horse") for v in VOCAB])
    assert sum(all_p) == pytest.approx(1.0, abs=1e-6) and all_p[0] == pytest.approx(p, rel=1e-5)
    assert "clip-relation" in scorer.protocol and clip.name in scorer.protocol


def test_clip_scorer_adds_a_missing_predicate_and_batches(clip, image):
    scorer = ClipRelationScorer(clip, VOCAB)
    qs = [
        RelationQuery(image, (0, 0, 30, 30), "person", "feeding", "dog"),  # not in the vocabulary
        RelationQuery(image, (10, 5, 60, 40), "person", "in", "jungle"),
        RelationQuery(image, (0, 0, 60, 40), "person", "holding", "umbrella"),
    ]
    batched = scorer.score(qs)
    assert batched == pytest.approx([scorer.score([q])[0] for q in qs], rel=1e-5)
    assert all(0 < p < 1 for p in batched)
    extended = ClipRelationScorer(clip, VOCAB + ["feeding"]).score(qs[:1])[0]
    assert batched[0] == pytest.approx(extended, rel=1e-5)  # same as a vocabulary holding it
    assert ClipRelationScorer(clip, VOCAB).protocol != ClipRelationScorer(clip, VOCAB + ["feeding"]).protocol
    with pytest.raises(StellarError):
        ClipRelationScorer(clip, [])


def test_clip_scorer_default_vocabulary_is_the_builtin_list(clip):
    from stellar.data.prompts import PREDICATES

    assert set(ClipRelationScorer(clip).vocabulary) == {" ".join(p.split()) for p in PREDICATES}


def test_vqa_scorer_tiny_blip(tmp_path, image):
    from stellar.testing import tiny_blip_vqa_folder

    scorer = VqaRelationScorer.from_pretrained(str(tiny_blip_vqa_folder(tmp_path / "blip")), device="cpu", batch_size=4)
    qs = [
        RelationQuery(image, (0, 0, 30, 30), "person", "riding", "horse"),
        RelationQuery(image, (10, 5, 60, 40), "person", "in front of", "fire truck"),
        RelationQuery(image, (0, 0, 60, 40), "person", "holding", "cup"),
    ]
    batched = scorer.score(qs)
    assert batched == pytest.approx([scorer.score([q])[0] for q in qs], abs=1e-6)
    assert all(0 < p < 1 for p in batched)
    # by hand for the first query: softmax over (yes, no) of the first answer-token logits
    m, tok = scorer.model, scorer.tokenizer
    ids = torch.tensor([tok(VqaRelationScorer.question("riding", "horse"))["input_ids"]])
    pixels = scorer.image_processor(images=[image[0:30, 0:30]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        emb = m.vision_model(pixel_values=pixels)[0]
        q = m.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids), encoder_hidden_states=emb, return_dict=False)[0]
        logits = m.text_decoder(input_ids=torch.tensor([[m.config.text_config.bos_token_id]]), encoder_hidden_states=q).logits[0, -1]
    yes, no = logits[tok.convert_tokens_to_ids("yes")].item(), logits[tok.convert_tokens_to_ids("no")].item()
    assert batched[0] == pytest.approx(1 / (1 + np.exp(no - yes)), abs=1e-6)
    assert VqaRelationScorer.question("next  to", "car") == "Is the person next to the car?"
    assert "vqa-relation" in scorer.protocol


# ------------------------------------------------------------------ real weights (slow)
# Reference: the transformers BlipForQuestionAnswering docstring — Salesforce/blip-vqa-base answers
# "2" to "How many cats are in the picture?" on COCO val2017 000000039769 (two cats on a blanket).
# We check that answer through generate (the loading path of the scorer); no published p_yes exists.
@pytest.mark.slow
def test_real_blip_vqa_answers_the_published_example():
    import os
    from pathlib import Path

    from stellar.models.loading import pretrained_source

    image_path = os.environ.get("STELLAR_COCO_CATS")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(rel_mod.DEFAULT_VQA, "config.json")
    except Exception:  # noqa: BLE001
        cached = None
    if not isinstance(cached, str) or not image_path or not Path(image_path).is_file():
        pytest.skip("needs Salesforce/blip-vqa-base in the Hugging Face cache and STELLAR_COCO_CATS=000000039769.jpg")
    from stellar.images import load_image

    scorer = VqaRelationScorer.from_pretrained(pretrained_source(rel_mod.DEFAULT_VQA).path)
    image = np.array(load_image(image_path))
    inputs = scorer.tokenizer("How many cats are in the picture?", return_tensors="pt")
    pixels = scorer.image_processor(images=[image], return_tensors="pt")["pixel_values"].to(scorer.device, dtype=scorer.dtype)
    out = scorer.model.generate(input_ids=inputs["input_ids"].to(scorer.device), pixel_values=pixels)
    assert scorer.tokenizer.decode(out[0], skip_special_tokens=True).strip() == "2"
