"""Open-vocabulary detectors with tiny random models built from configs (no download).

What is checked: output shapes from the config, box coordinates in pixels of the ORIGINAL image on a
non-square image (known answers: the tiny OWL models predict exactly their patch grid; parity with
transformers' own post-processing given (height, width)), padded queries never leaking, batching
equal to one-by-one, Grounding DINO's token -> query mapping. Real-weight checks are ``slow``.
"""

import doctest
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from stellar.errors import StellarError
from stellar.models import detectors as det_mod
from stellar.models.detectors import Detections, cxcywh_to_pixels, load_detector

H, W = 40, 60  # non-square on purpose: a height/width swap cannot pass


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from stellar.testing import tiny_grounding_dino_folder, tiny_owlvit_folder

    root = tmp_path_factory.mktemp("detectors")
    return {
        "owlvit": tiny_owlvit_folder(root / "owlvit"),
        "owlv2": tiny_owlvit_folder(root / "owlv2", v2=True),
        "grounding-dino": tiny_grounding_dino_folder(root / "gdino"),
    }


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(4)]


QUERIES = [["horse", "jungle", "person"], ["pizza"], [], ["umbrella", "car"]]


def test_doctests():
    assert doctest.testmod(det_mod).failed == 0


def test_cxcywh_to_pixels_uses_height_and_width():
    b = np.array([[0.25, 0.5, 0.5, 0.2]])
    assert cxcywh_to_pixels(b, H, W)[0].tolist() == pytest.approx([0.0, 16.0, 30.0, 24.0])
    # OWLv2: relative to the padded 60x60 square
    assert cxcywh_to_pixels(b, H, W, square_padding=True)[0].tolist() == pytest.approx([0.0, 24.0, 30.0, 36.0])


def _grid(n: int, height: float, width: float) -> np.ndarray:
    # OWL's box bias: centre at the patch's bottom-right grid corner ((j+1)/n, (i+1)/n), size 1/n
    boxes = []
    for i in range(n):
        for j in range(n):
            cx, cy = (j + 1) / n, (i + 1) / n
            boxes.append([(cx - 0.5 / n) * width, (cy - 0.5 / n) * height, (cx + 0.5 / n) * width, (cy + 0.5 / n) * height])
    return np.array(boxes)


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_owl_boxes_in_original_pixels_known_answer(folders, images, family):
    det = load_detector(str(folders[family]), device="cpu")
    assert det.family == family and det.protocol.startswith("local:") and family in det.protocol
    (d,) = det.detect(images[:1], [["horse", "jungle"]])
    assert d.boxes.shape == (16, 4) and d.query_scores.shape == (16, 2) and d.queries == ("horse", "jungle")
    side = max(H, W)
    expected = _grid(4, H, W) if family == "owlvit" else _grid(4, side, side)
    np.testing.assert_allclose(d.boxes, expected, atol=0.05)
    if family == "owlvit":
        assert d.boxes[:, 2].max() == pytest.approx(W + W / 8, abs=0.05) and d.boxes[:, 3].max() == pytest.approx(H + H / 8, abs=0.05)
    assert ((d.query_scores > 0) & (d.query_scores < 1)).all()
    assert d.query_scores.std() > 0.01  # scores spread, not saturated: label competition is exercised


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_owl_parity_with_transformers_post_processing(folders, images, family):
    from transformers import AutoImageProcessor, AutoTokenizer

    det = load_detector(str(folders[family]), device="cpu")
    queries = ["horse", "jungle", "person"]
    (ours,) = det.detect(images[:1], [queries])
    tok = AutoTokenizer.from_pretrained(folders[family])
    proc = AutoImageProcessor.from_pretrained(folders[family])
    inputs = tok(queries, padding="max_length", max_length=16, return_tensors="pt")
    pixels = proc(images=[images[0]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = det.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=pixels)
    ref = proc.post_process_object_detection(out, threshold=0.0, target_sizes=[(H, W)])[0]
    np.testing.assert_allclose(ours.boxes, ref["boxes"].numpy(), atol=1e-3)
    np.testing.assert_allclose(ours.scores, ref["scores"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(ours.labels, ref["labels"].numpy())


@pytest.mark.parametrize("family", ["owlvit", "owlv2", "grounding-dino"])
def test_batching_equals_one_by_one_with_different_query_counts(folders, images, family):
    det = load_detector(str(folders[family]), device="cpu", batch_size=4)
    batched = det.detect(images, QUERIES)
    assert det.passes == 3  # the image without queries is not sent through the model
    det.batch_size = 1
    single = [det.detect([im], [q])[0] for im, q in zip(images, QUERIES)]
    for b, s, q in zip(batched, single, QUERIES):
        assert b.queries == tuple(q) and b.query_scores.shape[1] == len(q)
        np.testing.assert_allclose(b.boxes, s.boxes, atol=1e-4)
        np.testing.assert_allclose(b.query_scores, s.query_scores, atol=1e-5)
    assert batched[2].boxes.shape == (0, 4) and batched[2].query_scores.shape == (0, 0)
    n = {"owlvit": 16, "owlv2": 16, "grounding-dino": 20}[family]
    assert batched[0].boxes.shape == (n, 4) and batched[3].query_scores.shape == (n, 2)


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_owl_query_scores_do_not_depend_on_the_other_queries(folders, images, family):
    # what lets GOA label boxes over its own queries when the detector also ran with "person"
    det = load_detector(str(folders[family]), device="cpu")
    a, b = det.detect([images[0], images[0]], [["horse", "jungle", "person"], ["jungle", "horse"]])
    np.testing.assert_allclose(a.query_scores[:, [1, 0]], b.query_scores, atol=1e-5)


def test_grounding_dino_caption_and_query_scores(folders, images):
    det = load_detector(str(folders["grounding-dino"]), device="cpu")
    ids, spans = det.caption(["horse", "Fire Truck", "person"])
    tok = det.tokenizer
    assert ids == tok("horse . fire truck . person .")["input_ids"]  # the caption Grounding DINO expects
    assert [tok.convert_ids_to_tokens([ids[i] for i in s]) for s in spans] == [["horse"], tok.tokenize("fire truck"), ["person"]]
    assert tok.convert_ids_to_tokens(ids[0]) == "[CLS]" and tok.convert_ids_to_tokens(ids[-1]) == "[SEP]"
    # query score = sigmoid(max token logit over the query's tokens); boxes scaled by (W, H)
    im = images[0]
    (d,) = det.detect([im], [["horse", "fire truck"]])
    ids, spans = det.caption(["horse", "fire truck"])
    enc = det.image_processor(images=[im], return_tensors="pt")
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = det.model(pixel_values=enc["pixel_values"], pixel_mask=enc["pixel_mask"], input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids), token_type_ids=torch.zeros_like(input_ids))  # fmt: skip
    logits = out.logits[0].numpy()
    expected = 1 / (1 + np.exp(-np.stack([logits[:, s].max(1) for s in spans], 1)))
    np.testing.assert_allclose(d.query_scores, expected, atol=1e-5)
    from transformers import AutoProcessor

    ref = AutoProcessor.from_pretrained(folders["grounding-dino"]).post_process_grounded_object_detection(
        out, input_ids=input_ids, threshold=0.0, text_threshold=0.0, target_sizes=[(H, W)]
    )[0]
    np.testing.assert_allclose(d.boxes, ref["boxes"].numpy(), atol=1e-3)


def test_grounding_dino_groups_images_by_size(folders):
    det = load_detector(str(folders["grounding-dino"]), device="cpu", batch_size=8)
    rng = np.random.default_rng(1)
    ims = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in ((40, 60), (64, 64), (40, 60))]
    qs = [["horse"], ["horse", "jungle"], ["person"]]
    batched = det.detect(ims, qs)
    single = [det.detect([im], [q])[0] for im, q in zip(ims, qs)]
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b.query_scores, s.query_scores, atol=1e-5)
        np.testing.assert_allclose(b.boxes, s.boxes, atol=1e-4)
    with pytest.raises(StellarError, match="tokens"):
        det.detect([ims[0]], [["horse"] * 20])  # a caption longer than max_text_len is refused, with the fix


def test_detections_cache_round_trip_and_views():
    d = Detections(np.arange(8, dtype=np.float32).reshape(2, 4), np.array([[0.1, 0.7], [0.6, 0.2]], np.float32), ("a b", "c"))
    back = Detections.from_arrays(d.to_arrays())
    assert back.queries == ("a b", "c") and np.array_equal(back.boxes, d.boxes)
    assert d.labels.tolist() == [1, 0] and d.scores.tolist() == pytest.approx([0.7, 0.6])
    assert d.subset([1]).boxes.tolist() == [[4, 5, 6, 7]]


def test_load_errors_are_actionable(tmp_path, folders):
    from stellar.testing import tiny_clip_folder

    with pytest.raises(StellarError, match="not an open-vocabulary detector"):
        load_detector(str(tiny_clip_folder(tmp_path / "clip")))
    with pytest.raises(StellarError, match="stellar models fetch"):
        load_detector("owlvit-large-patch14")  # offline, not cached
    with pytest.raises(StellarError, match="HxWx3 uint8"):
        load_detector(str(folders["owlvit"]), device="cpu").detect([np.zeros((4, 4), np.float32)], [["a"]])
    from transformers import AutoImageProcessor, CLIPTokenizer, OwlViTForObjectDetection

    model = OwlViTForObjectDetection.from_pretrained(folders["owlvit"])
    broken = CLIPTokenizer(vocab={"a</w>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}, merges=[])
    with pytest.raises(StellarError, match="tokenizer"):
        det_mod.OwlDetector(model, broken, AutoImageProcessor.from_pretrained(folders["owlvit"]), name="x")


# ------------------------------------------------------------------ real weights (slow)
# Reference: the COCO val2017 image 000000039769 (two cats on a pink blanket, 640x480). Published
# outputs on it (transformers model docstrings, transformers 4.4x-5.x):
#   OWL-ViT base-patch32, "a photo of a cat": 0.707 at [324.97, 20.44, 640.58, 373.29], 0.717 at [1.46, 55.26, 315.55, 472.17]
#   OWLv2 base-patch16-ensemble (image-guided): [341.76, 22.77, 640.65, 370.25], [6.59, 51.43, 329.05, 476.77]
#   Grounding DINO tiny, "a cat": 0.479 at [344.7, 23.11, 637.18, 374.28], 0.438 at [12.27, 51.91, 316.86, 472.44]
# Our cards are the large / base siblings, so we check the boxes (IoU >= 0.8 with the cat boxes the
# docs agree on) and that the cat query beats the dog query, not the exact scores.
CATS = np.array([[324.97, 20.44, 640.58, 373.29], [1.46, 55.26, 315.55, 472.17]])


def _iou(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.slow
@pytest.mark.parametrize("card", ["owlvit-large-patch14", "owlv2-large-patch14-ensemble", "grounding-dino-base"])
def test_real_detector_finds_the_coco_cats(card):
    from stellar.models import registry

    image_path = os.environ.get("STELLAR_COCO_CATS")  # path to COCO val2017 000000039769.jpg
    if not registry.is_cached(card) or not image_path or not Path(image_path).is_file():
        pytest.skip(f"needs the {card} weights cached (stellar models fetch {card}) and STELLAR_COCO_CATS=000000039769.jpg")
    from stellar.images import load_image

    image = np.array(load_image(image_path))
    det = load_detector(card)
    (d,) = det.detect([image], [["a photo of a cat", "a photo of a dog"]])
    cat = d.labels == 0
    order = np.argsort(-d.scores * cat)[:2]
    assert d.scores[order].min() > 0.3 and d.query_scores[:, 0].max() > d.query_scores[:, 1].max()
    for ref in CATS:
        assert max(_iou(d.boxes[k], ref) for k in order) >= 0.8
