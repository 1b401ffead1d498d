"""GOA / RFS arithmetic with known answers (DESIGN §6.5–6.6): hand-computed expected values."""

import doctest
import math

import numpy as np
import pytest

from stellar.metrics import context as ctx
from stellar.metrics.context import (
    ROLE_WORDS,
    best_boxes,
    box_labels,
    goa_queries,
    grounding_accuracy,
    relation_fidelity,
    sufficient_boxes,
    union_box,
)


def test_doctests():
    assert doctest.testmod(ctx).failed == 0


def test_goa_queries_drop_role_words_and_duplicates():
    assert goa_queries(["horse", "jungle"]) == ["horse", "jungle"]
    assert goa_queries(["doctor", "hospital"]) == ["hospital"]
    assert goa_queries(["Sumo  Fighter", "ring", "DJ", "turntable", "ring"]) == ["ring", "turntable"]
    assert goa_queries(["astronaut"]) == []
    assert goa_queries([]) == []
    # only whole detectables are role words: "fire truck" stays, "firefighter" goes
    assert goa_queries(["firefighter", "fire truck", "king size bed"]) == ["fire truck", "king size bed"]
    assert goa_queries(["clown", "balloon"], role_words=()) == ["clown", "balloon"]
    for w in ("clown", "egyptian pharaoh", "pope", "president", "sumo fighter", "dj"):
        assert w in ROLE_WORDS


# three boxes, queries (horse, jungle, person)
S = np.array(
    [
        [0.9, 0.2, 0.7],  # a horse
        [0.1, 0.3, 0.8],  # a person
        [0.6, 0.5, 0.95],  # person wins over horse 0.6 when person is a query
    ]
)


def test_box_labels_over_a_subset_of_queries():
    labels, scores = box_labels(S)
    assert labels.tolist() == [0, 2, 2] and scores.tolist() == [0.9, 0.8, 0.95]
    labels, scores = box_labels(S, among=[0, 1])  # GOA labelling: person is not a query
    assert labels.tolist() == [0, 1, 0] and scores.tolist() == [0.9, 0.3, 0.6]
    labels, scores = box_labels(np.zeros((2, 0)))
    assert labels.tolist() == [-1, -1] and scores.tolist() == [0, 0]


def test_best_boxes_label_that_never_wins():
    # over all queries, jungle never wins a box -> (-1, 0)
    assert best_boxes(S) == {0: (0, 0.9), 1: (-1, 0.0), 2: (2, 0.95)}
    # over GOA queries, jungle wins box 1 (its score 0.3 there, although box 2 scores jungle 0.5: box 2 is a horse)
    assert best_boxes(S, [0, 1]) == {0: (0, 0.9), 1: (1, 0.3)}
    assert best_boxes(np.zeros((0, 2))) == {0: (-1, 0.0), 1: (-1, 0.0)}


def test_sufficient_boxes_keep_every_grounding_exactly():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(200, 5))
    labellings = [[0, 1, 2], [0, 1, 2, 3, 4]]
    keep = sufficient_boxes(scores, labellings)
    assert len(keep) <= 8 and (np.diff(keep) > 0).all()
    for among in labellings:
        full = best_boxes(scores, among)
        pruned = best_boxes(scores[keep], among)
        assert {q: v[1] for q, v in full.items()} == {q: v[1] for q, v in pruned.items()}
        assert {q: int(keep[v[0]]) if v[0] >= 0 else -1 for q, v in pruned.items()} == {q: v[0] for q, v in full.items()}


def test_grounding_accuracy_known_answers():
    assert grounding_accuracy({"horse": 0.9, "jungle": 0.3}, ["horse", "jungle"]) == pytest.approx(0.6)
    # a label that never wins a box scores 0 for its query
    assert grounding_accuracy({"horse": 0.9}, ["horse", "jungle"]) == pytest.approx(0.45)
    # extra entries (e.g. the person query of RFS) do not count
    assert grounding_accuracy({"horse": 0.9, "person": 0.1}, ["horse"]) == pytest.approx(0.9)
    assert math.isnan(grounding_accuracy({"x": 1.0}, []))
    assert grounding_accuracy({}, [], empty="zero") == 0.0
    with pytest.raises(ValueError, match="empty"):
        grounding_accuracy({}, [], empty="-1")


def test_images_with_different_numbers_of_queries():
    # per-image best scores for a batch of three images with 3, 1 and 0 queries
    batch = [
        (np.array([[0.9, 0.1, 0.2], [0.2, 0.7, 0.6]]), ["horse", "jungle", "saddle"]),
        (np.array([[0.4], [0.5]]), ["pizza"]),
        (np.zeros((0, 0)), []),
    ]
    got = []
    for scores, queries in batch:
        best = best_boxes(scores)
        got.append(grounding_accuracy({queries[q]: s for q, (_, s) in best.items()}, queries))
    assert got[0] == pytest.approx((0.9 + 0.7 + 0.0) / 3)  # saddle never wins a box
    assert got[1] == pytest.approx(0.5)
    assert math.isnan(got[2])


def test_relation_fidelity_known_answers():
    triplets = [("person", "riding", "horse"), ("person", "in", "jungle")]
    score, per = relation_fidelity(triplets, 0.8, {"horse": 0.5, "jungle": 0.25}, [0.9, 0.4])
    assert per == pytest.approx([0.8 * 0.5 * 0.9, 0.8 * 0.25 * 0.4])
    assert score == pytest.approx((0.36 + 0.08) / 2)
    # a missing object box -> that triplet is 0, the mean still counts it
    score, per = relation_fidelity(triplets, 0.8, {"horse": 0.5}, [0.9, None])
    assert per == pytest.approx([0.36, 0.0]) and score == pytest.approx(0.18)
    # no person box -> every triplet 0 (a predicate probability is ignored)
    score, per = relation_fidelity(triplets, 0.0, {"horse": 0.5, "jungle": 0.25}, [0.9, 0.4])
    assert per == [0.0, 0.0] and score == 0.0
    # subject scores by name
    score, _ = relation_fidelity([("person", "holding", "cup")], {"person": 0.5}, {"cup": 0.5}, [1.0])
    assert score == pytest.approx(0.25)
    # NaN predicate probability counts as not scored
    assert relation_fidelity([("person", "on", "moon")], 1.0, {"moon": 1.0}, [float("nan")])[0] == 0.0
    score, per = relation_fidelity([], 1.0, {}, [])
    assert math.isnan(score) and per == []
    with pytest.raises(ValueError):
        relation_fidelity(triplets, 1.0, {}, [0.5])


def test_union_box():
    assert union_box((10, 20, 30, 40), (25, 5, 50, 35)) == (10, 5, 50, 40)
    assert union_box((0, 0, 1, 1), (0, 0, 1, 1)) == (0, 0, 1, 1)
    assert union_box(np.array([5.5, 6, 7, 8]), (1, 9, 2, 10)) == (1.0, 6.0, 7.0, 10.0)
