"""Dynamic loss-gate with label correction (DLG-LC; Han, Chen and Qian, Interspeech 2022,
"Self-supervised speaker verification using dynamic loss-gate and label correction").

Once per epoch, :func:`gate_and_correct` takes, for every training sample, its loss, the
model's prediction and that prediction's softmax posterior recorded during the previous
epoch (the training task records them per utterance), and the pseudo-labels the losses were measured
against:

1. *Dynamic loss-gate*: a 2-component 1-D GMM (``sklearn.mixture.GaussianMixture``, fixed
   ``random_state``) is fitted to the log-losses; a sample is *reliable* when its posterior of
   the low-mean component exceeds ``min_posterior`` (0.5), or when its log-loss is at most that
   component's mean (so that a wide high-loss component cannot claim the far left tail). The
   log, as in the training code of Miara et al. (2024, wavlm_ssl_sv): per-sample losses span
   orders of magnitude once samples are learnt (1e-2 beside 10), and on the raw losses a narrow
   component of learnt samples leaves every other sample to the noisy one (on egs/mini the raw
   fit kept 22% of the samples, the log fit 38-65%, for a lower EER: docs/results.md).
2. *Label correction*: an unreliable sample whose prediction posterior exceeds ``threshold``
   is relabelled with the prediction: ``corrected`` when that changes its label, ``confirmed``
   when the prediction is its own label (it keeps it); the other unreliable samples are
   excluded for the epoch (label -1, ``dropped``). A model that has fitted every label (a
   log-loss GMM then splits learnt samples from learnt ones) confirms, it does not correct.

Samples without a loss (NaN: never seen in the previous epoch) keep their label. Samples
labelled -1 on input are never reliable: they are corrected when the prediction is confident,
otherwise stay excluded. With fewer than ``min_samples`` finite losses, or (near) equal losses,
the GMM is not fitted and every labelled sample is reliable.

The losses should be measured against ``labels`` (the clustering pseudo-labels), also for
samples dropped in that epoch (compute their loss without back-propagating it), otherwise
they come back as NaN and are kept unconditionally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Default confidence needed to replace an unreliable label by the model's prediction.
#: NOTE: the value used by Han et al. (2022) could not be checked here (paper text not
#: available offline); 0.9 is a conservative choice — treat it as a tunable hyperparameter.
DEFAULT_THRESHOLD = 0.9


@dataclass
class GateResult:
    """Outcome of :func:`gate_and_correct` (boolean masks over samples; ``labels`` -1 = excluded)."""

    labels: np.ndarray
    old_labels: np.ndarray
    reliable: np.ndarray
    corrected: np.ndarray                # unreliable, confidently predicted as another label: relabelled
    confirmed: np.ndarray                # unreliable, confidently predicted as its own label: kept
    dropped: np.ndarray
    unseen: np.ndarray
    clean_posterior: np.ndarray          # posterior of the low-loss component (1 where not fitted)
    gmm_means: tuple[float, float] | None = None   # (clean, noisy) component means, as losses (geometric)
    gmm_stds: tuple[float, float] | None = None    # their standard deviations, of the log-losses
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        """Fraction of samples with a label (>= 0) for the coming epoch."""
        return float(np.mean(self.labels >= 0)) if self.labels.size else 0.0

    @property
    def corrected_fraction(self) -> float:
        return float(np.mean(self.corrected)) if self.labels.size else 0.0

    @property
    def confirmed_fraction(self) -> float:
        return float(np.mean(self.confirmed)) if self.labels.size else 0.0

    @property
    def dropped_fraction(self) -> float:
        return float(np.mean(self.dropped)) if self.labels.size else 0.0

    @property
    def reliable_fraction(self) -> float:
        return float(np.mean(self.reliable)) if self.labels.size else 0.0

    def logs(self) -> dict[str, float]:
        """Scalars for the training log."""
        out = {"dlg_kept": self.kept_fraction, "dlg_reliable": self.reliable_fraction,
               "dlg_corrected": self.corrected_fraction, "dlg_confirmed": self.confirmed_fraction,
               "dlg_dropped": self.dropped_fraction}
        if self.gmm_means is not None:
            out["dlg_mean_clean"], out["dlg_mean_noisy"] = self.gmm_means
        return out

    def diagnostics(self, true_labels: np.ndarray) -> dict[str, float]:
        """How good the gate and the corrections were, given the true speakers (see :func:`correction_diagnostics`)."""
        return correction_diagnostics(self, true_labels)


def majority_speaker(labels: np.ndarray, true_labels: np.ndarray) -> dict[int, Any]:
    """For each pseudo-label >= 0: the most frequent true speaker among its samples (ties: smallest)."""
    out: dict[int, Any] = {}
    labels = np.asarray(labels)
    true_labels = np.asarray(true_labels)
    for c in np.unique(labels[labels >= 0]):
        spk, counts = np.unique(true_labels[labels == c], return_counts=True)
        out[int(c)] = spk[int(np.argmax(counts))]
    return out


def correction_diagnostics(result: GateResult, true_labels: np.ndarray) -> dict[str, float]:
    """Gate and correction quality against the true speakers.

    A pseudo-label ``c`` *stands for* the majority true speaker of the samples labelled ``c``
    in ``result.old_labels`` (the clustering before this gate). A sample's label is *right*
    when the label stands for the sample's true speaker (-1 and labels with no sample are
    never right). A correction (label changed to the prediction) is *right* when the old
    label was wrong and the new one is right, *wrong* when the new label is wrong; changing
    one right label into another right one counts as neither. Also reported: the gate's
    precision/recall at finding wrong labels (unreliable ∩ wrong / unreliable, / wrong;
    seen samples with an old label only) and label accuracy before/after.
    """
    true_labels = np.asarray(true_labels)
    if true_labels.shape != result.old_labels.shape:
        raise ValueError("true_labels must have one entry per sample")
    stands_for = majority_speaker(result.old_labels, true_labels)

    def right(labels: np.ndarray) -> np.ndarray:
        return np.array([int(c) in stands_for and stands_for[int(c)] == t for c, t in zip(labels, true_labels)],
                        dtype=bool)

    right_before = right(result.old_labels)
    right_after = right(result.labels)
    changed = result.corrected
    n_right = int(np.sum(changed & ~right_before & right_after))
    n_wrong = int(np.sum(changed & ~right_after))
    gated = ~result.unseen & (result.old_labels >= 0)
    wrong = gated & ~right_before
    unreliable = gated & ~result.reliable
    labelled_before = result.old_labels >= 0
    kept = result.labels >= 0
    return {
        "corrections": int(changed.sum()),
        "corrections_right": n_right,
        "corrections_wrong": n_wrong,
        "correction_precision": n_right / changed.sum() if changed.any() else float("nan"),
        "gate_precision": float(np.sum(unreliable & wrong) / unreliable.sum()) if unreliable.any() else float("nan"),
        "gate_recall": float(np.sum(unreliable & wrong) / wrong.sum()) if wrong.any() else float("nan"),
        "accuracy_before": float(right_before[labelled_before].mean()) if labelled_before.any() else float("nan"),
        "accuracy_after": float(right_after[kept].mean()) if kept.any() else float("nan"),
    }


def gate_and_correct(losses: np.ndarray, predictions: np.ndarray, confidences: np.ndarray, labels: np.ndarray,
                     threshold: float = DEFAULT_THRESHOLD, min_posterior: float = 0.5, min_samples: int = 10,
                     random_state: int = 0) -> GateResult:
    """Gate the samples by a 2-component GMM on ``losses`` and correct unreliable labels (module doc)."""
    losses = np.asarray(losses, dtype=np.float64)
    predictions = np.asarray(predictions).astype(np.int64)
    confidences = np.asarray(confidences, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    n = labels.shape[0]
    if labels.ndim != 1 or losses.shape != (n,) or predictions.shape != (n,) or confidences.shape != (n,):
        raise ValueError("losses, predictions, confidences and labels must be 1-D arrays of equal length")
    if not 0.0 <= threshold <= 1.0 or not 0.0 < min_posterior < 1.0:
        raise ValueError("threshold must be in [0, 1] and min_posterior in (0, 1)")

    unseen = ~np.isfinite(losses)
    has_label = labels >= 0
    fit = ~unseen & has_label
    posterior = np.ones(n)
    means = stds = None
    info: dict[str, Any] = {"fitted": False}
    x = np.log(np.maximum(losses[fit], 1e-12))
    if x.size >= max(min_samples, 2) and np.ptp(x) > 1e-8 * max(1.0, float(np.abs(x).max())):
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=random_state,
                              max_iter=200, tol=1e-4, reg_covar=1e-6)
        gmm.fit(x[:, None])
        mu = gmm.means_[:, 0]
        clean = int(np.argmin(mu))
        posterior[fit] = gmm.predict_proba(x[:, None])[:, clean]
        low = np.zeros(n, dtype=bool)
        low[fit] = x <= mu[clean]
        posterior[low] = 1.0
        sd = np.sqrt(gmm.covariances_.reshape(2))
        means = (float(np.exp(mu[clean])), float(np.exp(mu[1 - clean])))   # geometric means of the losses
        stds = (float(sd[clean]), float(sd[1 - clean]))                    # of the log-losses
        info = {"fitted": True, "converged": bool(gmm.converged_), "weight_clean": float(gmm.weights_[clean])}

    reliable = has_label & (unseen | (posterior > min_posterior))
    candidates = ~reliable & ~(unseen & ~has_label)
    confident = candidates & (confidences > threshold) & (predictions >= 0)
    corrected = confident & (predictions != labels)
    new = labels.copy()
    new[corrected] = predictions[corrected]
    dropped = candidates & ~confident
    new[dropped] = -1
    return GateResult(labels=new, old_labels=labels, reliable=reliable, corrected=corrected,
                      confirmed=confident & ~corrected, dropped=dropped,
                      unseen=unseen, clean_posterior=posterior, gmm_means=means, gmm_stds=stds, info=info)
