"""Known-answer tests of IPS, SIS, APS and the exclusion rule on hand-made features."""

import numpy as np
import pytest

from stellar.metrics.identity import (
    NO_FACE_GENERATED,
    NO_FACE_REFERENCE,
    apply_exclusion,
    attribute_preservation,
    exclusion_threshold,
    followed_prompt,
    identity_preservation,
    stability_of_identity,
)


def unit(*v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_ips_is_max_over_face_pairs():
    g = np.stack([unit(1, 0, 0), unit(0, 1, 0)])
    r = np.stack([unit(0.6, 0.8, 0), unit(0, 0, 1)])
    score, status = identity_preservation(g, r)
    assert status == "ok" and score == pytest.approx(0.8)


def test_ips_no_face_is_zero_with_status():
    r = np.stack([unit(1, 0)])
    assert identity_preservation(np.zeros((0, 2)), r) == (0.0, NO_FACE_GENERATED)
    assert identity_preservation(r, np.zeros((0, 2))) == (0.0, NO_FACE_REFERENCE)
    assert identity_preservation(None, r) == (0.0, NO_FACE_GENERATED)


def test_ips_refuses_mixed_embedding_sizes():
    with pytest.raises(ValueError, match="embedding sizes differ"):
        identity_preservation(np.ones((1, 3)), np.ones((1, 4)))


def test_sis_is_worst_photo_and_never_above_ips():
    g = np.stack([unit(1, 0)])
    r0, r1 = np.stack([unit(1, 0)]), np.stack([unit(0.6, 0.8)])
    assert stability_of_identity(g, [r0, r1]) == (pytest.approx(0.6), "ok")
    ips, _ = identity_preservation(g, r0)
    assert stability_of_identity(g, [r0, r1])[0] <= ips
    assert stability_of_identity(g, [np.zeros((0, 2)), r1], own=0) == (0.0, NO_FACE_REFERENCE)


def test_sis_not_silently_zero_when_another_photo_has_no_face():
    """Issue 9.5: SIS was 0 with status ok when another photo of the subject had no face."""
    g = np.stack([unit(1, 0)])
    r0, r1 = np.stack([unit(1, 0)]), np.stack([unit(0.6, 0.8)])
    assert stability_of_identity(g, [r0, r1, np.zeros((0, 2))], own=0) == (pytest.approx(0.6), "no_face_reference_other")
    assert stability_of_identity(g, [r0, None], own=0) == (pytest.approx(1.0), "no_face_reference_other")
    assert stability_of_identity(g, [None, None]) == (0.0, NO_FACE_REFERENCE)
    assert stability_of_identity(np.zeros((0, 2)), [r0, None]) == (0.0, NO_FACE_GENERATED)


def test_aps_from_predictions_equals_the_probe_result():
    from stellar.metrics.identity import aps_from_predictions, attribute_preservation

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 6))
    labels = np.where(ref[:, :2] > 0, 1, -1)
    labels[3, 0] = 0
    gen = ref + rng.normal(scale=0.5, size=ref.shape)
    gen[5] = np.nan  # no face: a wrong prediction
    res = attribute_preservation(ref, labels, gen, ["A", "B"])
    score, per, skipped = aps_from_predictions(labels, res.predictions, ["A", "B"])
    assert score == pytest.approx(res.score) and per == pytest.approx(res.per_attribute) and not skipped


def test_exclusion_threshold_uses_ddof_1_and_strict_inequality():
    clip_n = np.array([0.20, 0.22, 0.24, 0.26])
    sigma = exclusion_threshold(clip_n)
    assert sigma == pytest.approx(np.sqrt(((clip_n - clip_n.mean()) ** 2).sum() / 3))
    assert sigma != pytest.approx(np.std(clip_n))  # not the population std
    clip_t = clip_n + 2 * sigma + np.array([0.01, 0.0, -0.01, 0.05])
    assert followed_prompt(clip_t, clip_n).tolist() == [True, False, False, True]


def test_exclusion_zeroes_ips_of_copies():
    ips = np.array([0.9, 0.5, 0.7])
    followed = np.array([False, True, True])
    assert apply_exclusion(ips, followed).tolist() == [0.0, 0.5, 0.7]
    assert apply_exclusion(ips, None).tolist() == ips.tolist()  # rule not applied: unchanged


def _probe_data(n_photos=12, jobs_per_photo=3, dim=2, seed=0):
    rng = np.random.default_rng(seed)
    # attribute 0 is encoded by the sign of feature 0; attribute 1 by feature 1; |features| >= 0.5
    feats = rng.normal(size=(n_photos, dim))
    feats = np.sign(feats) * (0.5 + np.abs(feats))
    labels = np.stack([np.where(feats[:, 0] > 0, 1, -1), np.where(feats[:, 1] > 0, 1, -1)], axis=1)
    labels[0, 0], labels[1, 0] = 1, -1  # both classes present
    feats[0, 0], feats[1, 0] = abs(feats[0, 0]), -abs(feats[1, 0])
    ref = np.repeat(feats, jobs_per_photo, axis=0)
    y = np.repeat(labels, jobs_per_photo, axis=0)
    ids = np.repeat(np.arange(n_photos), jobs_per_photo)
    return ref, y, ids


def test_aps_copy_is_perfect_and_flipped_is_zero():
    ref, y, ids = _probe_data()
    res = attribute_preservation(ref, y, ref.copy(), ["A", "B"], photo_ids=ids)
    assert res.per_attribute == {"A": pytest.approx(1.0), "B": pytest.approx(1.0)} and res.score == pytest.approx(1.0)
    assert np.allclose(res.per_image, 1.0)
    flipped = ref.copy()
    flipped[:, :2] *= -1  # the opposite attributes
    res = attribute_preservation(ref, y, flipped, ["A", "B"], photo_ids=ids)
    assert res.score == pytest.approx(0.0)


def test_aps_auc_of_hard_predictions_known_answer():
    # 4 jobs, 1 attribute, the probe separates perfectly on feature 0
    ref = np.array([[2.0, 0], [1.5, 0], [-2.0, 0], [-1.0, 0]])
    y = np.array([[1], [1], [-1], [-1]])
    gen = np.array([[2.0, 0], [-2.0, 0], [-2.0, 0], [-1.0, 0]])  # second job predicted wrong
    res = attribute_preservation(ref, y, gen, ["A"])
    # hard predictions (+1, -1, -1, -1) vs labels (+1, +1, -1, -1): TPR 0.5, FPR 0 -> AUC 0.75
    assert res.per_attribute["A"] == pytest.approx(0.75)
    assert res.per_image.tolist() == [1.0, 0.0, 1.0, 1.0]


def test_aps_no_face_counts_wrong_even_when_excluded():
    ref = np.array([[2.0, 0], [1.5, 0], [-2.0, 0], [-1.0, 0]])
    y = np.array([[1], [1], [-1], [-1]])
    gen = ref.copy()
    gen[2] = np.nan  # no face in the generated image of job 2
    followed = np.array([True, False, False, True])  # job 1 and 2 excluded
    res = attribute_preservation(ref, y, gen, ["A"], followed=followed)
    assert res.predictions[:, 0].tolist() == [1, -1, 1, -1]  # 1 and 2 flipped to the wrong class
    assert res.per_image.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert res.per_attribute["A"] == pytest.approx(0.5)


def test_aps_reference_without_face_does_not_crash_and_is_not_trained_on():
    ref, y, ids = _probe_data()
    ref[:3] = np.nan  # photo 0 has no face: its 3 jobs are left out of training
    res = attribute_preservation(ref, y, np.nan_to_num(ref, nan=0.0) + 0, ["A", "B"], photo_ids=ids)
    assert set(res.per_attribute) == {"A", "B"} and np.isfinite(res.score)


def test_aps_single_class_attribute_is_skipped_and_reported():
    ref, y, ids = _probe_data()
    y[:, 1] = 1
    res = attribute_preservation(ref, y, ref, ["A", "B"], photo_ids=ids)
    assert "B" in res.skipped and "single class" in res.skipped["B"]
    assert set(res.per_attribute) == {"A"} and res.score == res.per_attribute["A"]


def test_aps_weighted_unique_photos_equals_duplicated_rows():
    """The probe trained on unique photos weighted by job count equals training on one row per job."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    feats = rng.normal(size=(10, 5))
    labels = np.where(feats[:, 0] + 0.5 * rng.normal(size=10) > 0, 1, -1)
    counts = rng.integers(1, 5, size=10)
    ref = np.repeat(feats, counts, axis=0)
    y = np.repeat(labels, counts)[:, None]
    gen = rng.normal(size=ref.shape)
    ids = np.repeat(np.arange(10), counts)
    res = attribute_preservation(ref, y, gen, ["A"], photo_ids=ids)
    dup = LogisticRegression().fit(ref, y[:, 0])
    assert res.predictions[:, 0].tolist() == dup.predict(gen).tolist()


def test_hard_prediction_auc_closed_form_equals_sklearn():
    """APS uses (TPR + TNR) / 2 for ±1 predictions; it must equal sklearn's ROC-AUC exactly."""
    from sklearn.metrics import roc_auc_score

    from stellar.metrics.identity import _roc_auc_hard

    rng = np.random.default_rng(3)
    for n in (2, 5, 17, 400):
        labels = rng.choice([-1, 1], n)
        labels[:2] = [-1, 1]
        for predictions in (rng.choice([-1, 1], n), labels.copy(), -labels, np.ones(n, int)):
            assert _roc_auc_hard(labels, predictions) == pytest.approx(roc_auc_score(labels, predictions), abs=1e-12)
