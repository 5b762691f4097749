"""Linear logistic-regression calibration of scores to log-likelihood ratios, Cllr and actDCF.

The calibrated LLR is ``a * score + w . q + b`` where ``q`` are optional quality measures of the
trial (QMF-style: the smaller and the larger log duration of its two sides). ``a, w, b`` minimise
the prior-weighted cross-entropy (Brümmer's objective)::

    P/N_tar * sum_tar log(1 + exp(-(llr + logit P))) + (1-P)/N_non * sum_non log(1 + exp(llr + logit P))

so the result is an LLR that is well calibrated around the operating prior ``P`` (``prior``).
Parameters are saved as a small JSON file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import FormatError, atomic_write

QUALITY_FEATURES = ("min_log_dur", "max_log_dur")


def _softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow."""
    return np.logaddexp(0.0, x)


def cllr(llr: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost (bits): 0.5/ln2 * (mean softplus(-llr_tar) + mean softplus(llr_non))."""
    llr = np.asarray(llr, dtype=np.float64)
    lab = np.asarray(labels).astype(bool)
    if lab.all() or not lab.any():
        raise InputError("Cllr needs both target and nontarget trials")
    return float(0.5 / math.log(2) * (_softplus(-llr[lab]).mean() + _softplus(llr[~lab]).mean()))


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The LLR threshold of the Bayes decision at ``p_target``: ``log(c_fa (1-P) / (c_miss P))``."""
    return math.log(c_fa * (1.0 - p_target) / (c_miss * p_target))


def act_dcf(llr: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
    """Normalised actual DCF: accept ``llr >= bayes_threshold(p_target)``."""
    if not 0.0 < p_target < 1.0:
        raise InputError(f"p_target must be in (0, 1), got {p_target}")
    llr = np.asarray(llr, dtype=np.float64)
    lab = np.asarray(labels).astype(bool)
    accept = llr >= bayes_threshold(p_target, c_miss, c_fa)
    p_miss = float((~accept[lab]).mean())
    p_fa = float(accept[~lab].mean())
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return dcf / min(c_miss * p_target, c_fa * (1.0 - p_target))


def quality_features(enroll: Sequence[str], test: Sequence[str], utt2dur: Mapping[str, float]) -> np.ndarray:
    """``[N, 2]`` QMF features: min and max over the two sides of ``log(duration)``."""
    missing = sorted({u for u in (*enroll, *test) if u not in utt2dur})
    if missing:
        raise MissingIdError(f"{len(missing)} trial id(s) have no duration in utt2dur: {', '.join(missing[:5])}"
                       + (" ..." if len(missing) > 5 else ""))
    e = np.log(np.maximum([float(utt2dur[u]) for u in enroll], 1e-3))
    t = np.log(np.maximum([float(utt2dur[u]) for u in test], 1e-3))
    return np.stack([np.minimum(e, t), np.maximum(e, t)], axis=1)


def read_durations(paths: Sequence[str | os.PathLike]) -> dict[str, float]:
    """``{utt: seconds}`` from one or more ``utt2dur`` files; errors name the file and line."""
    from sslspk.utils.fileio import iter_lines

    durs: dict[str, float] = {}
    for path in paths:
        for n, line in iter_lines(path):
            f = line.split()
            try:
                if len(f) != 2:
                    raise ValueError
                durs[f[0]] = float(f[1])
            except ValueError:
                raise FormatError(path, n, f"expected '<utt> <seconds>', got {line!r}") from None
    return durs


@dataclass
class Calibration:
    """``llr = a * score + sum(weights * quality) + b``; ``prior`` is the training operating point."""

    a: float
    b: float
    prior: float
    weights: list[float] = field(default_factory=list)
    features: list[str] = field(default_factory=list)

    def apply(self, scores: np.ndarray, quality: np.ndarray | None = None) -> np.ndarray:
        """LLRs of ``scores`` (``quality`` [N, len(weights)] required when the model has weights)."""
        llr = self.a * np.asarray(scores, dtype=np.float64) + self.b
        if self.weights:
            if quality is None:
                raise InputError(f"this calibration uses quality measures ({', '.join(self.features)}): "
                                 "give the utt2dur file(s)")
            q = np.asarray(quality, dtype=np.float64)
            if q.shape != (len(llr), len(self.weights)):
                raise ValueError(f"quality features shape {q.shape}, expected {(len(llr), len(self.weights))}")
            llr = llr + q @ np.asarray(self.weights)
        return llr

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters as JSON (atomically)."""
        with atomic_write(path) as f:
            json.dump({"a": self.a, "b": self.b, "prior": self.prior, "weights": self.weights,
                       "features": self.features}, f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        """Read a calibration JSON written by :meth:`save`; errors name the file."""
        try:
            d = json.loads(open(path, encoding="utf-8").read())
            cal = cls(float(d["a"]), float(d["b"]), float(d["prior"]),
                      [float(w) for w in d.get("weights", [])], [str(f) for f in d.get("features", [])])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FormatError(path, None, f"not a calibration file (need a, b, prior): {e}") from e
        if len(cal.weights) != len(cal.features):
            raise FormatError(path, None, f"{len(cal.weights)} weights but {len(cal.features)} feature names")
        return cal


def train_calibration(scores: np.ndarray, labels: np.ndarray, prior: float = 0.5,
                      quality: np.ndarray | None = None, features: Sequence[str] = QUALITY_FEATURES,
                      l2: float = 1e-6) -> Calibration:
    """Fit a :class:`Calibration` by prior-weighted logistic regression (convex; L-BFGS)."""
    from scipy.optimize import minimize

    if not 0.0 < prior < 1.0:
        raise InputError(f"prior must be in (0, 1), got {prior}")
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels).astype(bool)
    if lab.all() or not lab.any():
        raise InputError(f"calibration needs target and nontarget trials (got {int(lab.sum())} target, "
                         f"{int((~lab).sum())} nontarget)")
    x = s[:, None] if quality is None else np.c_[s, np.asarray(quality, dtype=np.float64)]
    # Standardise features for conditioning; map the solution back afterwards.
    mu, sd = x.mean(0), np.maximum(x.std(0), 1e-12)
    z = (x - mu) / sd
    y = np.where(lab, 1.0, -1.0)  # target: penalise softplus(-(llr+off)), nontarget: softplus(llr+off)
    wt = np.where(lab, prior / lab.sum(), (1.0 - prior) / (~lab).sum())
    off = math.log(prior / (1.0 - prior))

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        m = z @ theta[:-1] + theta[-1] + off
        loss = float(wt @ _softplus(-y * m)) + l2 * float(theta[:-1] @ theta[:-1])
        g_m = -y * wt / (1.0 + np.exp(np.clip(y * m, -700, 700)))  # d softplus(-y m)/dm
        grad = np.r_[z.T @ g_m + 2 * l2 * theta[:-1], g_m.sum()]
        return loss, grad

    res = minimize(f, np.r_[np.ones(z.shape[1]), 0.0], jac=True, method="L-BFGS-B")
    w = res.x[:-1] / sd
    b = float(res.x[-1] - w @ mu)
    return Calibration(a=float(w[0]), b=b, prior=prior, weights=[float(v) for v in w[1:]],
                       features=list(features) if quality is not None else [])


def apply_calibration(cal_path: str, scores: np.ndarray, enroll: Sequence[str], test: Sequence[str],
                      utt2dur: Sequence[str]) -> np.ndarray:
    """LLRs of ``scores`` with the calibration JSON ``cal_path`` (durations from ``utt2dur`` files)."""
    cal = Calibration.load(cal_path)
    quality = quality_features(enroll, test, read_durations(utt2dur)) if cal.weights else None
    return cal.apply(scores, quality)


def train_calibration_file(scores_file: str, cal_json: str, *, p_target: float = 0.01, trials: str | None = None,
                           utt2dur: Sequence[str] = (), drop_bad_trials: bool = False) -> None:
    """``calibrate.py train``: fit a :class:`Calibration` at prior ``p_target`` on the labelled score file
    ``scores_file`` (labels from ``trials`` when it has none; quality measures from ``utt2dur`` files) and
    write it to ``cal_json``."""
    from sslspk.scoring.report import read_score_file, read_scores
    from sslspk.utils.fileio import check_outputs_are_not_inputs

    check_outputs_are_not_inputs([scores_file, trials, *utt2dur], [cal_json])
    scores, labels = read_scores(scores_file, trials, drop_bad_trials)
    quality = None
    if utt2dur:
        pairs = read_score_file(scores_file, drop_bad_trials)[0]
        quality = quality_features([e for e, _ in pairs], [t for _, t in pairs], read_durations(utt2dur))
    cal = train_calibration(scores, labels, prior=p_target, quality=quality)
    cal.save(cal_json)
    after = cllr(cal.apply(scores, quality), labels)
    print(f"calibration a={cal.a:.4g} b={cal.b:.4g}" + (f" w={cal.weights}" if cal.weights else "")
          + f" (prior {cal.prior:g}); dev Cllr {after:.4f} -> {cal_json}")


def calibrate_score_file(cal_json: str, scores_file: str, out: str, *, utt2dur: Sequence[str] = (),
                         drop_bad_trials: bool = False) -> None:
    """``calibrate.py apply``: write the score file ``scores_file`` to ``out`` with each score replaced by
    its LLR under the calibration ``cal_json`` (labels kept)."""
    from sslspk.scoring.report import read_score_file
    from sslspk.utils.fileio import check_outputs_are_not_inputs

    check_outputs_are_not_inputs([cal_json, scores_file, *utt2dur], [out])
    pairs, scores, labels = read_score_file(scores_file, drop_bad_trials)
    llr = apply_calibration(cal_json, scores, [e for e, _ in pairs], [t for _, t in pairs], utt2dur)
    with atomic_write(out) as f:
        for (e, t), s, lab in zip(pairs, llr, labels):
            f.write(f"{e} {t} {s:.6f}" + (f" {lab}" if lab else "") + "\n")
    print(f"calibrated {len(llr)} scores -> {out}")
