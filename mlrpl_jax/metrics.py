"""Multi-label evaluation metrics on the host: per-class AP, mAP and threshold metrics.

Plain numpy on gathered host arrays (scores (N, C), full ground truth (N, C) in {0, 1}), fully
vectorised: one per-class sort of the whole matrix plus cumulative sums, no Python loop over classes
or examples (40,000 x 80 takes a fraction of a second on one CPU core).

Two AP definitions (`average_precision(mode=...)`):
  * "sklearn": identical to `sklearn.metrics.average_precision_score` per class, ties included
    (tied scores form one threshold, so the result does not depend on the order of tied examples).
  * "voc": the reference's headline `Compute_mAP_VOC2012` (HCP-MLR-PL `utils/metrics.py`), the
    all-point interpolated VOC AP. The reference sorts with numpy's unstable default sort, so its
    value for tied scores is unspecified; we rank tied scores by ascending example index (a stable
    sort), which makes the result deterministic.

All values returned by `compute_metrics` are in percent (0-100); the reference returns mAP as a
fraction. A class without any positive example has an undefined AP (NaN) and is left out of mAP.

Label arguments are checked (`checks.full_labels`, `checks.partial_labels`): targets outside {0, 1}
(partial targets of `partial_label_metrics` outside {-1, 0, 1}) raise `errors.InputError`, a
`ValueError`, with a message that states the convention.
"""

import numpy as np
from numpy.typing import ArrayLike

from mlrpl_jax import checks

AP_MODES = ("sklearn", "voc")
TOP_K = 3  # The reference's `overall_topk(3)`.


def _check_inputs(
    scores: ArrayLike, targets: ArrayLike, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validates (scores, targets) of the public function `where`; returns them as float64 (N, C)
    and bool (N, C)."""
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2 or targets.ndim != 2:
        raise ValueError(
            f"scores and targets must be 2-D (N, C); got scores.shape={scores.shape}, "
            f"targets.shape={targets.shape}."
        )
    if scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must have the same shape; got scores.shape={scores.shape}, "
            f"targets.shape={targets.shape}."
        )
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores and targets must be non-empty; got shape {scores.shape}.")
    is_real = np.issubdtype(scores.dtype, np.integer) or np.issubdtype(scores.dtype, np.floating)
    if not (is_real or scores.dtype == np.bool_):
        raise ValueError(f"scores must be real numbers; got dtype {scores.dtype}.")
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        row, col = np.argwhere(np.isnan(scores))[0]
        raise ValueError(f"scores contain NaN (first at row {row}, class {col}).")
    return scores, checks.full_labels(targets, where=where)


def average_precision(
    scores: ArrayLike, targets: ArrayLike, *, mode: str = "sklearn"
) -> np.ndarray:
    """Per-class average precision.

    Args:
      scores: (N, C) real scores (logits or probabilities; only the ranking within a class matters).
      targets: (N, C) full ground truth in {0, 1} (or bool).
      mode: "sklearn" for `sklearn.metrics.average_precision_score` (AP = sum_n (R_n - R_{n-1}) P_n
        over the distinct score values, tied scores grouped into one threshold), or "voc" for the
        reference's `Compute_mAP_VOC2012` all-point interpolated AP (descending sort with tied
        scores ranked by ascending example index; precision made non-increasing from the right).

    Returns:
      (C,) float64 AP per class as a fraction in [0, 1]; NaN for a class without any positive.

    Raises:
      ValueError: for an unknown mode, non-2-D, empty or mismatched shapes or NaN scores;
        errors.InputError (a ValueError) for targets outside {0, 1}.
    """
    if mode not in AP_MODES:
        raise ValueError(f"mode must be one of {AP_MODES}; got {mode!r}.")
    scores, targets = _check_inputs(scores, targets, "average_precision")
    return _average_precision(scores, targets, mode)


def _stabilise_ties(order: np.ndarray, tied: np.ndarray) -> None:
    """Sorts `order` (C, N) in place inside every run of tied scores, as a stable sort would.

    Only tied entries are touched: each gets the key (flat index of its run's first entry) * N +
    example index; sorting these unique keys keeps every run in place, ordered by example index.

    Args:
      order: (C, N) int64 contiguous argsort of the negated scores, modified in place.
      tied: (C, N - 1) bool, True where sorted entry k ties with sorted entry k + 1.
    """
    n = order.shape[1]
    in_run = np.zeros(order.shape, dtype=bool)
    in_run[:, :-1] = tied
    in_run[:, 1:] |= tied
    is_start = in_run.copy()
    is_start[:, 1:] &= ~tied
    flat_order = order.reshape(-1)  # A view: argsort output is contiguous.
    pos = np.flatnonzero(in_run)
    run_start = np.maximum.accumulate(np.where(is_start.reshape(-1)[pos], pos, 0))
    keys = run_start * n + flat_order[pos]
    keys.sort()
    flat_order[pos] = keys % n


def _average_precision(scores: np.ndarray, targets: np.ndarray, mode: str) -> np.ndarray:
    """`average_precision` on validated float64 / bool (N, C) arrays; returns (C,)."""
    n = scores.shape[0]
    # Class-major (C, N): every sort and cumulative sum runs over contiguous memory.
    neg_s = -np.ascontiguousarray(scores.T)
    order = np.argsort(neg_s, axis=1)  # Descending; fast unstable sort, ties fixed below.
    s_sorted = np.take_along_axis(neg_s, order, axis=1)
    tied = s_sorted[:, 1:] == s_sorted[:, :-1]  # (C, N - 1): entry k ties with entry k + 1.
    has_ties = bool(tied.any())
    if mode == "voc" and has_ties:
        _stabilise_ties(order, tied)
    t_sorted = np.take_along_axis(np.ascontiguousarray(targets.T), order, axis=1)
    tp = np.cumsum(t_sorted, axis=1, dtype=np.float64)  # (C, N) true positives in the top k + 1.
    precision = tp / np.arange(1, n + 1, dtype=np.float64)  # tp + fp = k + 1, never 0.
    if mode == "sklearn" and has_ties:
        # Tied scores form one threshold: each example of a run of equal scores gets the precision
        # at the last index of its run (the only point sklearn evaluates for that threshold). Only
        # entries tied with their successor change; in flat (C * N) indexing their run ends at the
        # next entry that is not (the last column never is, so runs never cross classes).
        not_last = np.zeros(s_sorted.shape, dtype=bool)
        not_last[:, :-1] = tied
        not_last = not_last.reshape(-1)
        pos = np.flatnonzero(not_last)
        ends = np.flatnonzero(~not_last)
        run_end = ends[np.searchsorted(ends, pos)]
        flat_precision = precision.reshape(-1)  # A view of the fresh contiguous array.
        flat_precision[pos] = flat_precision[run_end]
    elif mode == "voc":
        # Precision envelope: running max from the right (the trailing 0 pad never wins).
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    # Recall rises by 1/P exactly at each positive: sum_n (R_n - R_{n-1}) P_n = sum_pos P_n / P.
    num_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.sum(precision, axis=1, where=t_sorted) / num_pos
    ap[num_pos == 0] = np.nan
    return ap


def _safe_f1(p: float, r: float) -> float:
    """Harmonic mean 2pr / (p + r): 0 when p + r == 0, NaN when either is NaN."""
    if np.isnan(p) or np.isnan(r):
        return float("nan")
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def _threshold_metrics(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """OP, OR, OF1, CP, CR, CF1 in percent from bool (N, C) predictions and targets (notes §5.3)."""
    n_g = targets.sum(axis=0).astype(np.float64)
    n_c = (pred & targets).sum(axis=0).astype(np.float64)
    # As the reference: Np = 1 for classes without predicted positives, also inside sum(Np).
    n_p = np.maximum(pred.sum(axis=0), 1).astype(np.float64)
    op = n_c.sum() / n_p.sum()
    o_r = n_c.sum() / n_g.sum() if n_g.sum() > 0 else np.nan
    cp = np.mean(n_c / n_p)
    # The reference divides by Ng = 0 (CR becomes NaN); we average over classes with positives.
    has_pos = n_g > 0
    cr = np.mean(n_c[has_pos] / n_g[has_pos]) if has_pos.any() else np.nan
    op, o_r, cp, cr = (100.0 * float(x) for x in (op, o_r, cp, cr))
    return {
        "OP": op,
        "OR": o_r,
        "OF1": _safe_f1(op, o_r),
        "CP": cp,
        "CR": cr,
        "CF1": _safe_f1(cp, cr),
    }


def _top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Bool (N, C): the k highest scores per row (all if C <= k); ties go to the lower class."""
    n, c = scores.shape
    if c <= k:
        return np.ones((n, c), dtype=bool)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # (N, 1) k-th largest score.
    above = scores > kth
    at_kth = scores == kth
    # Fill the remaining slots with the lowest-index entries equal to the k-th largest score.
    room = k - above.sum(axis=1, keepdims=True)
    return above | (at_kth & (np.cumsum(at_kth, axis=1) <= room))


def compute_metrics(
    scores: ArrayLike,
    targets: ArrayLike,
    *,
    from_logits: bool = True,
    ap_mode: str = "sklearn",
) -> dict[str, float]:
    """mAP plus the threshold and top-3 metrics of the reference `Validate()`, all in percent.

    Threshold metrics (notes §5.3): a prediction is positive iff its probability is >= 0.5 (logit
    >= 0 when `from_logits`). Per class Ng = #positives, Np = #predicted positives (set to 1 when 0,
    as the reference does), Nc = #correct positives. OP = sum Nc / sum Np, OR = sum Nc / sum Ng,
    CP = mean_c Nc / Np, CR = mean_c Nc / Ng over the classes with Ng > 0 only (the reference
    returns NaN as soon as one class has no positive), OF1 and CF1 = harmonic means of (OP, OR) and
    (CP, CR), 0 when both are 0. OR and CR (and their F1) are NaN when no class has a positive.

    Top-3 variants (`*_top3`): per example only the 3 highest scores (all if C <= 3; ties go to
    the lower class index) can be positive, and only if they also pass the threshold.

    Args:
      scores: (N, C) logits (`from_logits=True`) or probabilities (`from_logits=False`).
      targets: (N, C) full ground truth in {0, 1} (or bool).
      from_logits: whether `scores` are logits (threshold 0) or probabilities (threshold 0.5).
      ap_mode: AP definition used for mAP, "sklearn" or "voc" (see `average_precision`).

    Returns:
      {"mAP", "OP", "OR", "OF1", "CP", "CR", "CF1", "OP_top3", ..., "CF1_top3"}: Python floats in
      percent (0-100). mAP is the mean AP over the classes with at least one positive (NaN if none).

    Raises:
      ValueError: for an unknown ap_mode, non-2-D, empty or mismatched shapes or NaN scores;
        errors.InputError (a ValueError) for targets outside {0, 1}.
    """
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode must be one of {AP_MODES}; got {ap_mode!r}.")
    scores, targets = _check_inputs(scores, targets, "compute_metrics")
    ap = _average_precision(scores, targets, ap_mode)
    valid = ~np.isnan(ap)
    metrics = {"mAP": 100.0 * float(ap[valid].mean()) if valid.any() else float("nan")}

    pred = scores >= (0.0 if from_logits else 0.5)
    metrics.update(_threshold_metrics(pred, targets))
    top = _threshold_metrics(pred & _top_k_mask(scores, TOP_K), targets)
    metrics.update({f"{name}_top{TOP_K}": value for name, value in top.items()})
    return metrics


def partial_label_metrics(
    scores: ArrayLike, partial_targets: ArrayLike, *, ap_mode: str = "sklearn"
) -> dict[str, float]:
    """mAP over the known entries only, for selecting models on partially labelled data.

    Per class, AP is computed over the examples whose label is known (+1 or -1); unknown entries
    (0) are left out (ranked below every known entry with a 0 target, which is exactly leaving
    them out: they follow every positive). Classes without a known positive are left out of the
    mean. Threshold metrics are not defined here (they would count unknowns as negatives).

    Args:
      scores: (N, C) real scores.
      partial_targets: (N, C) in {-1, 0, 1}.
      ap_mode: as in `compute_metrics`.

    Returns:
      {"mAP": percent, "known_fraction": percent of known entries}.

    Raises:
      ValueError: as `compute_metrics`; errors.InputError (a ValueError) for partial targets
        outside {-1, 0, 1}.
    """
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode must be one of {AP_MODES}; got {ap_mode!r}.")
    checks.partial_labels(partial_targets, where="partial_label_metrics", name="partial_targets")
    t = np.asarray(partial_targets)
    scores, positive = _check_inputs(scores, t == 1, "partial_label_metrics")
    scores = np.where(t == 0, -np.inf, scores)
    ap = _average_precision(scores, positive, ap_mode)
    valid = ~np.isnan(ap)
    return {
        "mAP": 100.0 * float(ap[valid].mean()) if valid.any() else float("nan"),
        "known_fraction": 100.0 * float(np.mean(t != 0)),
    }
