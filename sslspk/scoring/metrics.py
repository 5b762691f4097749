"""Verification metrics: DET points, EER and normalised minimum detection cost (NIST minDCF)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sslspk.utils.errors import InputError


def det_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every distinct threshold, ties handled exactly.

    A trial is accepted when ``score >= threshold``. Returns ``(p_miss, p_fa, thresholds)``
    ordered by decreasing threshold: the first point (``+inf``) accepts nothing
    (``p_miss=1, p_fa=0``), the last (the lowest score) accepts everything. O(N log N).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D and equal in length")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} score(s) are NaN or infinite")
    n_tar, n_non = int(labels.sum()), int((~labels).sum())
    if n_tar == 0 or n_non == 0:
        raise InputError(f"need both target and nontarget trials (got {n_tar} target, {n_non} nontarget)")
    order = np.argsort(-scores, kind="stable")
    s, lab = scores[order], labels[order]
    last_of_group = np.r_[s[1:] != s[:-1], True]  # accept a whole group of tied scores at once
    tp = np.cumsum(lab)[last_of_group]
    fp = np.cumsum(~lab)[last_of_group]
    p_miss = np.r_[1.0, 1.0 - tp / n_tar]
    p_fa = np.r_[0.0, fp / n_non]
    thresholds = np.r_[np.inf, s[last_of_group]]
    return p_miss, p_fa, thresholds


def eer_from_det(p_miss: np.ndarray, p_fa: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """EER where the piecewise-linear DET curve crosses ``p_miss == p_fa``, and a threshold there."""
    d = p_miss - p_fa  # non-increasing from +1 to -1
    i = int(np.argmax(d <= 0))
    if d[i] == 0:
        return float(p_miss[i]), float(thresholds[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    eer = p_miss[i - 1] + t * (p_miss[i] - p_miss[i - 1])
    return float(eer), float(thresholds[i])


def min_dcf_from_det(p_miss: np.ndarray, p_fa: np.ndarray, thresholds: np.ndarray, p_target: float,
                     c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE) and the threshold reaching it."""
    if not 0.0 < p_target < 1.0:
        raise InputError(f"p_target must be in (0, 1), got {p_target}")
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    i = int(np.argmin(dcf))
    return float(dcf[i] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[i])


@dataclass
class Metrics:
    """EER (fraction, not %), minDCF per p_target, and trial counts."""

    eer: float
    eer_threshold: float
    min_dcf: dict[float, float]
    num_target: int
    num_nontarget: int
    cllr: float | None = None  # only when the scores are LLRs (calibrated)
    act_dcf: dict[float, float] | None = None

    def as_dict(self) -> dict:
        d = {"eer": self.eer, "eer_threshold": self.eer_threshold,
             "min_dcf": {str(p): v for p, v in self.min_dcf.items()},
             "num_target": self.num_target, "num_nontarget": self.num_nontarget}
        if self.cllr is not None:
            d["cllr"] = self.cllr
        if self.act_dcf is not None:
            d["act_dcf"] = {str(p): v for p, v in self.act_dcf.items()}
        return d


def compute_metrics(scores: np.ndarray, labels: np.ndarray, p_targets: tuple[float, ...] = (0.01, 0.05),
                    c_miss: float = 1.0, c_fa: float = 1.0, llr: bool = False) -> Metrics:
    """EER and minDCF at each ``p_target`` from one sort of the scores.

    With ``llr`` (the scores are log-likelihood ratios, e.g. calibrated), also Cllr and the
    actual DCF at the Bayes threshold of each ``p_target``.
    """
    p_miss, p_fa, thr = det_points(scores, labels)
    eer, eer_thr = eer_from_det(p_miss, p_fa, thr)
    dcf = {p: min_dcf_from_det(p_miss, p_fa, thr, p, c_miss, c_fa)[0] for p in p_targets}
    n_tar = int(np.asarray(labels).astype(bool).sum())
    m = Metrics(eer, eer_thr, dcf, n_tar, len(labels) - n_tar)
    if llr:
        from sslspk.scoring.calibration import act_dcf, cllr

        m.cllr = cllr(scores, labels)
        m.act_dcf = {p: act_dcf(scores, labels, p, c_miss, c_fa) for p in p_targets}
    return m
