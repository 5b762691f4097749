"""EER/minDCF against independent computations (sklearn ROC + brentq; brute-force DCF)."""

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from sslspk.scoring.metrics import compute_metrics, det_points


def reference_eer(scores, labels):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def reference_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Brute force: every candidate threshold (each score, and +inf), counted by a Python loop."""
    tar = scores[labels == 1]
    non = scores[labels == 0]
    best = np.inf
    for thr in list(np.unique(scores)) + [np.inf]:
        p_miss = np.mean(tar < thr)
        p_fa = np.mean(non >= thr)
        best = min(best, c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa)
    return best / min(c_miss * p_target, c_fa * (1 - p_target))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 0])  # 1 and 0 decimals give many tied scores
def test_eer_and_min_dcf_match_independent_computation(seed, decimals):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + labels * rng.uniform(0.0, 3.0)
    if decimals is not None:
        scores = np.round(scores, decimals)
    m = compute_metrics(scores, labels, p_targets=(0.01, 0.05), c_miss=1.0, c_fa=1.0)
    assert m.eer == pytest.approx(reference_eer(scores, labels), abs=1e-9)
    for p in (0.01, 0.05):
        assert m.min_dcf[p] == pytest.approx(reference_min_dcf(scores, labels, p), abs=1e-12)
    m2 = compute_metrics(scores, labels, p_targets=(0.01,), c_miss=10.0, c_fa=1.0)
    assert m2.min_dcf[0.01] == pytest.approx(reference_min_dcf(scores, labels, 0.01, 10.0, 1.0), abs=1e-12)
    assert (m.num_target, m.num_nontarget) == (labels.sum(), n - labels.sum())


def test_known_values():
    # Perfect separation: EER 0, minDCF 0.
    m = compute_metrics(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert m.eer == 0.0 and m.min_dcf[0.01] == 0.0
    # Inverted: EER 1. All scores tied: EER 0.5 (the diagonal).
    assert compute_metrics(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1])).eer == pytest.approx(1.0)
    assert compute_metrics(np.zeros(10), np.array([0, 1] * 5)).eer == pytest.approx(0.5)
    # Targets {3, 1}, nontargets {2, 0}: accepting >= 2 misses 1/2 and falsely accepts 1/2.
    assert compute_metrics(np.array([3.0, 1.0, 2.0, 0.0]), np.array([1, 1, 0, 0])).eer == pytest.approx(0.5)


def test_det_points_are_monotone_and_bounded():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=500), 1)
    lab = rng.random(500) < 0.3
    p_miss, p_fa, thr = det_points(s, lab)
    assert p_miss[0] == 1 and p_fa[0] == 0 and p_miss[-1] == 0 and p_fa[-1] == 1
    assert (np.diff(p_miss) <= 0).all() and (np.diff(p_fa) >= 0).all() and (np.diff(thr) < 0).all()


def test_bad_input():
    with pytest.raises(ValueError, match="both target and nontarget"):
        compute_metrics(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(np.array([0.0, np.nan]), np.array([0, 1]))
