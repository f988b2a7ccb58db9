"""Tests for mlrpl_jax.metrics: against scikit-learn and independent per-class loops."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score

from mlrpl_jax import metrics


def _random_problem(seed: int, n: int = 300, c: int = 7, pos_rate: float = 0.2, decimals=None):
    """Random (scores, targets) with at least one positive per class; scores optionally rounded."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < pos_rate).astype(np.int64)
    targets[0] = 1  # Every class has a positive.
    scores = rng.normal(size=(n, c)) + 1.5 * targets  # Informative but imperfect ranking.
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, targets


def _voc_ap_loop(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Straightforward per-class transcription of the VOC2012 all-point AP (stable sort)."""
    aps = []
    for c in range(scores.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        gt = targets[order, c] > 0
        tp = np.cumsum(gt).astype(np.float64)
        fp = np.cumsum(~gt).astype(np.float64)
        num_pos = gt.sum()
        if num_pos == 0:
            aps.append(np.nan)
            continue
        rec = tp / num_pos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        ap = 0.0
        for i in range(len(mrec) - 1):
            if mrec[i + 1] != mrec[i]:
                ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
        aps.append(ap)
    return np.array(aps)


def _reference_overall_loop(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Hand loop of the reference threshold metrics (CR over classes with positives), in percent."""
    n_c, n_p, n_g = [], [], []
    for c in range(pred.shape[1]):
        n_g.append(sum(1 for i in range(pred.shape[0]) if targets[i, c] == 1))
        n_p.append(sum(1 for i in range(pred.shape[0]) if pred[i, c]))
        n_c.append(sum(1 for i in range(pred.shape[0]) if pred[i, c] and targets[i, c] == 1))
    n_p = [max(x, 1) for x in n_p]
    op = sum(n_c) / sum(n_p)
    o_r = sum(n_c) / sum(n_g)
    cp = sum(nc / npp for nc, npp in zip(n_c, n_p)) / len(n_c)
    per_class_r = [nc / ng for nc, ng in zip(n_c, n_g) if ng > 0]
    cr = sum(per_class_r) / len(per_class_r)
    out = {"OP": 100 * op, "OR": 100 * o_r, "CP": 100 * cp, "CR": 100 * cr}
    for name, (p, r) in {"OF1": ("OP", "OR"), "CF1": ("CP", "CR")}.items():
        p, r = out[p], out[r]
        out[name] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return out


def _top3_loop(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Positive iff among the row's 3 highest scores (lower index wins ties) and >= threshold."""
    pred = np.zeros(scores.shape, dtype=bool)
    for i in range(scores.shape[0]):
        ranked = sorted(range(scores.shape[1]), key=lambda c: (-scores[i, c], c))
        for c in ranked[:3]:
            pred[i, c] = scores[i, c] >= threshold
    return pred


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", [0, 1])
def test_average_precision_matches_sklearn(seed, decimals):
    scores, targets = _random_problem(seed, decimals=decimals)
    got = metrics.average_precision(scores, targets)
    want = [average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1])]
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_average_precision_sklearn_independent_of_tie_order():
    scores, targets = _random_problem(3, decimals=0)
    perm = np.random.default_rng(0).permutation(len(scores))
    np.testing.assert_allclose(
        metrics.average_precision(scores, targets),
        metrics.average_precision(scores[perm], targets[perm]),
        atol=1e-12,
    )


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", [0, 1])
def test_average_precision_voc_matches_loop(seed, decimals):
    scores, targets = _random_problem(seed, decimals=decimals)
    got = metrics.average_precision(scores, targets, mode="voc")
    np.testing.assert_allclose(got, _voc_ap_loop(scores, targets), atol=1e-6, rtol=0)


def test_voc_ap_is_at_least_sklearn_ap_without_ties():
    # Interpolated precision >= raw precision, so VOC AP >= sklearn AP when no score is tied.
    scores, targets = _random_problem(5)
    assert np.all(
        metrics.average_precision(scores, targets, mode="voc")
        >= metrics.average_precision(scores, targets) - 1e-12
    )


def test_average_precision_perfect_and_constant_scores():
    targets = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    perfect = np.where(targets == 1, 1.0, 0.0)
    np.testing.assert_allclose(metrics.average_precision(perfect, targets), [1.0, 1.0])
    np.testing.assert_allclose(metrics.average_precision(perfect, targets, mode="voc"), [1.0, 1.0])
    constant = np.zeros((4, 2))  # One threshold: AP = prevalence.
    np.testing.assert_allclose(metrics.average_precision(constant, targets), [0.5, 0.5])


@pytest.mark.parametrize("mode", ["sklearn", "voc"])
def test_class_without_positives_is_nan(mode):
    scores, targets = _random_problem(0, n=50, c=4)
    targets[:, 2] = 0
    ap = metrics.average_precision(scores, targets, mode=mode)
    assert np.isnan(ap[2])
    assert not np.isnan(ap[[0, 1, 3]]).any()
    result = metrics.compute_metrics(scores, targets, ap_mode=mode)
    np.testing.assert_allclose(result["mAP"], 100 * np.mean(ap[[0, 1, 3]]))


def test_mean_ap_is_nan_when_no_class_has_positives():
    result = metrics.compute_metrics(np.zeros((5, 3)), np.zeros((5, 3), dtype=int))
    assert np.isnan(result["mAP"])
    assert np.isnan(result["OR"]) and np.isnan(result["CR"]) and np.isnan(result["OF1"])


def test_compute_metrics_keys_and_percent_scale():
    scores, targets = _random_problem(0)
    result = metrics.compute_metrics(scores, targets)
    base = ["OP", "OR", "OF1", "CP", "CR", "CF1"]
    assert set(result) == {"mAP", *base, *(f"{k}_top3" for k in base)}
    assert all(isinstance(v, float) for v in result.values())
    assert all(0.0 <= v <= 100.0 for v in result.values())
    ap = metrics.average_precision(scores, targets)
    np.testing.assert_allclose(result["mAP"], 100 * ap.mean())
    voc = metrics.compute_metrics(scores, targets, ap_mode="voc")
    np.testing.assert_allclose(voc["mAP"], 100 * _voc_ap_loop(scores, targets).mean())


def test_threshold_metrics_match_sklearn_when_formulas_coincide():
    # Every class has predicted positives and positives, so the reference formulas are exactly
    # micro / macro precision and recall.
    scores, targets = _random_problem(1, n=400, c=6)
    pred = scores >= 0
    assert pred.sum(axis=0).min() > 0
    result = metrics.compute_metrics(scores, targets)
    assert result["OP"] == pytest.approx(100 * precision_score(targets, pred, average="micro"))
    assert result["OR"] == pytest.approx(100 * recall_score(targets, pred, average="micro"))
    assert result["CP"] == pytest.approx(100 * precision_score(targets, pred, average="macro"))
    assert result["CR"] == pytest.approx(100 * recall_score(targets, pred, average="macro"))
    op, o_r, cp, cr = (result[k] for k in ("OP", "OR", "CP", "CR"))
    assert result["OF1"] == pytest.approx(2 * op * o_r / (op + o_r))
    assert result["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))


def test_threshold_metrics_match_reference_loop_with_empty_classes():
    scores, targets = _random_problem(2, n=120, c=6)
    scores[:, 1] = -5.0  # No predicted positive: Np is set to 1.
    targets[:, 4] = 0  # No positive: excluded from CR.
    result = metrics.compute_metrics(scores, targets)
    want = _reference_overall_loop(scores >= 0, targets)
    for key, value in want.items():
        assert result[key] == pytest.approx(value), key


def test_f1_is_zero_when_nothing_correct():
    targets = np.array([[1, 0], [0, 1]])
    scores = np.array([[-1.0, 1.0], [1.0, -1.0]])
    result = metrics.compute_metrics(scores, targets)
    assert result["OP"] == 0.0 and result["OR"] == 0.0 and result["OF1"] == 0.0
    assert result["CF1"] == 0.0


@pytest.mark.parametrize("decimals", [None, 0])
def test_top3_metrics_match_loop(decimals):
    scores, targets = _random_problem(4, n=150, c=8, pos_rate=0.4, decimals=decimals)
    result = metrics.compute_metrics(scores, targets)
    want = _reference_overall_loop(_top3_loop(scores, 0.0), targets)
    for key, value in want.items():
        assert result[f"{key}_top3"] == pytest.approx(value), key


def test_top3_with_fewer_than_three_classes_uses_all_classes():
    scores, targets = _random_problem(6, n=40, c=2)
    result = metrics.compute_metrics(scores, targets)
    for key in ("OP", "OR", "OF1", "CP", "CR", "CF1"):
        assert result[f"{key}_top3"] == result[key]


def test_probabilities_give_same_metrics_as_logits():
    scores, targets = _random_problem(7)
    probs = 1.0 / (1.0 + np.exp(-scores))
    from_logits = metrics.compute_metrics(scores, targets)
    from_probs = metrics.compute_metrics(probs, targets, from_logits=False)
    for key, value in from_logits.items():
        assert from_probs[key] == pytest.approx(value), key


def test_bool_and_float32_inputs():
    scores, targets = _random_problem(8)
    a = metrics.compute_metrics(scores.astype(np.float32), targets.astype(bool))
    b = metrics.compute_metrics(scores.astype(np.float32).astype(np.float64), targets)
    assert a == b


@pytest.mark.parametrize(
    "scores, targets, match",
    [
        (np.zeros(5), np.zeros(5), r"2-D"),
        (np.zeros((5, 3)), np.zeros((5, 4)), r"same shape"),
        (np.zeros((0, 3)), np.zeros((0, 3)), r"non-empty"),
        (np.zeros((2, 2)), np.array([[0, 1], [-1, 1]]), r"only 0 and 1.*targets\[1, 0\] = -1"),
        (np.zeros((2, 2)), np.array([[0, 1], [1, 0.5]]), r"targets\[1, 1\] = 0.5"),
        (np.array([[0.0, np.nan], [0.0, 1.0]]), np.zeros((2, 2)), r"NaN.*row 0, class 1"),
        (np.array([["a", "b"]]), np.zeros((1, 2)), r"real numbers"),
    ],
)
def test_validation_errors(scores, targets, match):
    with pytest.raises(ValueError, match=match):
        metrics.compute_metrics(scores, targets)
    with pytest.raises(ValueError, match=match):
        metrics.average_precision(scores, targets)


def test_unknown_mode_raises():
    scores, targets = _random_problem(0, n=10, c=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        metrics.average_precision(scores, targets, mode="trapezoid")
    with pytest.raises(ValueError, match="ap_mode must be one of"):
        metrics.compute_metrics(scores, targets, ap_mode="trapezoid")


def test_threshold_metrics_without_any_positive_or_with_a_single_one():
    """No positive at all: recalls and F1s are NaN (0 / 0), precisions still defined; one positive
    in the whole split: OR is 100 or 0, never NaN. The F1 of a NaN is NaN, of p = r their value."""
    scores = np.array([[1.0, -1.0], [1.0, -1.0], [-1.0, -1.0]])
    none = metrics.compute_metrics(scores, np.zeros((3, 2), int))
    assert np.isnan(none["OR"]) and np.isnan(none["CR"])
    assert np.isnan(none["OF1"]) and np.isnan(none["CF1"])
    assert none["OP"] == 0.0 and none["CP"] == 0.0
    one = metrics.compute_metrics(scores, np.array([[1, 0], [0, 0], [0, 0]]))
    assert one["OR"] == 100.0 and one["CR"] == 100.0
    assert one["OP"] == pytest.approx(100 * 1 / 3) and one["CP"] == pytest.approx(100 * 0.5 / 2)
    assert metrics._safe_f1(50.0, 50.0) == 50.0 and metrics._safe_f1(0.0, 0.0) == 0.0
    assert np.isnan(metrics._safe_f1(np.nan, 50.0)) and np.isnan(metrics._safe_f1(50.0, np.nan))


def test_voc_ties_at_the_top_are_ordered_by_example_index():
    """A run of tied scores that starts at the top of the ranking (flat position 0 of the sort) is
    ordered by example index, as a stable sort orders it, whatever order argsort left it in."""
    rng = np.random.default_rng(3)
    for n in (20, 50, 100):
        scores = rng.integers(0, 3, size=(n, 3)).astype(float)  # three levels: long tied runs
        targets = (rng.random((n, 3)) < 0.4).astype(int)
        targets[0] = 1
        np.testing.assert_allclose(metrics.average_precision(scores, targets, mode="voc"),
                                   _voc_ap_loop(scores, targets))  # fmt: skip


@pytest.mark.parametrize("mode", ["sklearn", "voc"])
def test_partial_label_map_leaves_unknown_entries_out(mode):
    """Per class, AP over the known entries only (sklearn's, or the VOC loop's), classes without a
    known positive left out of the mean; known_fraction in percent."""
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(60, 5)), 1)  # ties as well
    partial = rng.integers(-1, 2, size=(60, 5))
    partial[:, 4] = np.where(partial[:, 4] == 1, 0, partial[:, 4])  # no known positive
    got = metrics.partial_label_metrics(scores, partial, ap_mode=mode)
    assert set(got) == {"mAP", "known_fraction"}
    per_class = []
    for c in range(4):
        known = partial[:, c] != 0
        y, s = partial[known, c] == 1, scores[known, c]
        if mode == "sklearn":
            per_class.append(average_precision_score(y, s))
        else:
            per_class.append(_voc_ap_loop(s[:, None], y[:, None].astype(int))[0])
    assert got["mAP"] == pytest.approx(100 * np.mean(per_class), abs=1e-9)
    assert got["known_fraction"] == pytest.approx(100 * np.mean(partial != 0), abs=1e-12)
    # Unknown entries neither help nor hurt: changing their scores changes nothing.
    moved = np.where(partial == 0, rng.normal(size=scores.shape) * 10, scores)
    assert metrics.partial_label_metrics(moved, partial, ap_mode=mode) == got


def test_partial_label_metrics_without_known_positives_and_errors():
    none = metrics.partial_label_metrics(np.zeros((3, 2)), np.array([[-1, 0], [0, 0], [-1, -1]]))
    assert np.isnan(none["mAP"]) and none["known_fraction"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match=r"^ap_mode must be one of \('sklearn', 'voc'\); got 'x'"):
        metrics.partial_label_metrics(np.zeros((2, 2)), np.ones((2, 2)), ap_mode="x")
    with pytest.raises(ValueError, match=r"same shape"):
        metrics.partial_label_metrics(np.zeros((2, 3)), np.ones((2, 2)))


@pytest.mark.parametrize("mode", ["sklearn", "voc"])
def test_a_class_with_a_single_positive(mode):
    """AP of one positive ranked r-th is 1 / r in both definitions."""
    scores = np.array([[0.9], [0.8], [0.7], [0.1]])
    for rank in (1, 2, 3):
        targets = np.zeros((4, 1), int)
        targets[rank - 1] = 1
        np.testing.assert_allclose(metrics.average_precision(scores, targets, mode=mode),
                                   [1.0 / rank])  # fmt: skip


def test_degenerate_inputs_raise_no_numpy_warnings():
    """A class without positives, or a split without any, gives NaN quietly (no 0 / 0 warning)."""
    scores, targets = _random_problem(0, n=20, c=4)
    targets[:, 2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in metrics.AP_MODES:
            assert np.isnan(metrics.average_precision(scores, targets, mode=mode)[2])
        out = metrics.compute_metrics(scores, np.zeros_like(targets))
        assert np.isnan(out["mAP"]) and np.isnan(out["OR"]) and np.isnan(out["CR_top3"])
        assert np.isnan(metrics.partial_label_metrics(scores, -np.ones_like(targets))["mAP"])


def test_integer_scores_single_class_and_mismatched_dimensions():
    scores, targets = _random_problem(4, n=40, c=3, decimals=0)
    as_int = metrics.compute_metrics(scores.astype(np.int64), targets)
    assert as_int == metrics.compute_metrics(scores, targets)
    one = metrics.average_precision(scores[:, :1], targets[:, :1])
    assert one == pytest.approx(average_precision_score(targets[:, 0], scores[:, 0]))
    with pytest.raises(ValueError, match=r"2-D"):
        metrics.compute_metrics(np.zeros(4), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"2-D"):
        metrics.compute_metrics(np.zeros((4, 1)), np.zeros(4))


def test_top3_among_many_classes_matches_loop():
    """The k-th largest score by partition, over rows of 40 classes with ties (against a loop)."""
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=(30, 40)), 1)
    np.testing.assert_array_equal(metrics._top_k_mask(scores, 3) & (scores >= 0),
                                  _top3_loop(scores, 0.0))  # fmt: skip


def test_stabilise_ties_orders_each_tied_run_by_example_index():
    """By hand: a run at flat position 0 ([2, 0, 1] all tied) and a later run; then against a
    stable argsort of random tied scores."""
    order = np.array([[2, 0, 1, 4, 3]])
    tied = np.array([[True, True, False, True]])
    metrics._stabilise_ties(order, tied)
    np.testing.assert_array_equal(order, [[0, 1, 2, 3, 4]])
    rng = np.random.default_rng(0)
    neg = -rng.integers(0, 4, size=(6, 200)).astype(float)
    order = np.argsort(neg, axis=1)
    s = np.take_along_axis(neg, order, axis=1)
    metrics._stabilise_ties(order, s[:, 1:] == s[:, :-1])
    np.testing.assert_array_equal(order, np.argsort(neg, axis=1, kind="stable"))
