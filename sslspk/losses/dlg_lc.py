"""Dynamic loss-gate with label correction (DLG-LC; Han, Chen and Qian, Interspeech 2022,
"Self-supervised speaker verification using dynamic loss-gate and label correction"), two modes.

**online** (the default; as the training code of Miara et al. 2024 applies it,
theolepage/wavlm_ssl_sv:trainSpeakerNet.py and loss/aamsoftmax.py):

- :func:`gmm_threshold`, once per epoch: a 2-component GMM on the log of every per-sample loss of
  the previous epoch (loss against the given pseudo-label, augmented crop, with margin); the
  threshold is where the two weighted component densities cross between the components' modes.
- :func:`online_gate_step`, at each step: a sample is kept when ``log(loss) <= threshold``;
  from the correction epoch on, a gated-out sample whose *clean* crop's sharpened softmax
  ``softmax(x_clean·W / temperature)`` (raw embedding and class weights: no normalisation, no
  margin, no scale) peaks above ``threshold`` (strictly) is trained on that argmax, in the
  same step.

**epoch** (sslspk's earlier reading, kept for the recipes that tuned it):
once per epoch, :func:`gate_and_correct` takes, for every training sample, its loss, the
model's prediction and that prediction's softmax posterior recorded during the previous
epoch (the training task records them per utterance), and the pseudo-labels the losses were measured
against:

1. *Dynamic loss-gate*: a 2-component 1-D GMM (``sklearn.mixture.GaussianMixture``, fixed
   ``random_state``) is fitted to the log-losses ``x``. With ``mu_clean < mu_noisy`` the component
   means, a sample is *reliable* when ``x <= mu_clean``, or when ``x <= mu_noisy`` and its
   posterior of the clean component exceeds ``min_posterior`` (0.5); ``x > mu_noisy`` is never
   reliable. (The posterior alone is not enough: the wider component wins both tails, so a wide
   clean component would claim the highest losses, and a wide noisy one the lowest.) The
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
import torch
import torch.nn.functional as F

#: Epoch mode: confidence (softmax of the margin-free scaled cosines of the augmented crop) needed
#: to replace an unreliable label by the model's prediction; sslspk's own value. Online mode uses
#: the authors' rule instead (:data:`ONLINE_TEMPERATURE`, :data:`ONLINE_THRESHOLD`).
DEFAULT_THRESHOLD = 0.9
#: theolepage/wavlm_ssl_sv:loss/aamsoftmax.py (``_forward_softmax_sharpened(x, e=0.1)``).
ONLINE_TEMPERATURE = 0.1
#: theolepage/wavlm_ssl_sv:loss/aamsoftmax.py (``lc_threshold = 0.5``, ``max_vals > lc_threshold``).
ONLINE_THRESHOLD = 0.5
#: theolepage/wavlm_ssl_sv:trainSpeakerNet.py (``LGL_threshold_update_gmm``): the densities are compared
#: on this many evenly spaced points from the smallest to the largest log-loss.
GMM_GRID_POINTS = 1000


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
    clean_posterior: np.ndarray          # posterior of the low-loss component (1 where not fitted; 1 at or
                                         # below the clean mean, 0 above the noisy mean)
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
        high = np.zeros(n, dtype=bool)
        high[fit] = x > mu[1 - clean]
        posterior[high] = 0.0
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


def gmm_threshold(log_losses: np.ndarray, random_state: int = 0) -> float | None:
    """The online gate's threshold on the log-losses of an epoch, or None when there is none.

    As theolepage/wavlm_ssl_sv:trainSpeakerNet.py (``LGL_threshold_update_gmm``): a 2-component
    ``GaussianMixture`` (full covariance, ``random_state`` 0, ``tol`` 1e-5, ``max_iter`` 1000) is
    fitted to the log-losses; the weighted densities ``w_k N(x; mu_k, s_k)`` are evaluated on
    :data:`GMM_GRID_POINTS` evenly spaced points from the smallest to the largest log-loss; the
    threshold is the grid point just before a sign change of their difference that lies strictly
    between the two densities' grid maxima, when there is exactly one such point. None: fewer
    than two distinct finite values, or not exactly one crossing (the authors' code stops there
    with an assertion; the caller keeps its previous threshold instead).
    """
    from scipy.stats import norm
    from sklearn.mixture import GaussianMixture

    x = np.asarray(log_losses, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2 or np.ptp(x) <= 1e-8 * max(1.0, float(np.abs(x).max())):
        return None
    gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=random_state, tol=1e-5,
                          max_iter=1000).fit(x[:, None])
    grid = np.linspace(x.min(), x.max(), GMM_GRID_POINTS)
    dens = [gmm.weights_[k] * norm.pdf(grid, gmm.means_[k, 0], np.sqrt(gmm.covariances_[k, 0, 0])) for k in (0, 1)]
    crossings = grid[np.flatnonzero(np.diff(np.sign(dens[0] - dens[1])))]
    lo, hi = sorted((grid[np.argmax(dens[0])], grid[np.argmax(dens[1])]))
    inside = crossings[(crossings > lo) & (crossings < hi)]
    return float(inside[0]) if inside.size == 1 else None


@dataclass
class OnlineStep:
    """One step of the online gate: the loss to back-propagate and, per sample, what it trained on."""

    loss: torch.Tensor
    kept: torch.Tensor        # the gate kept the sample with its given label
    labels: torch.Tensor      # label trained on: given (kept), the clean prediction (relabelled), -1 (neither)
    relabelled: torch.Tensor  # gated out and confidently predicted on the clean crop (that label may be its own)


def online_gate_step(loss: torch.Tensor, margin_logits: torch.Tensor, labels: torch.Tensor, log_threshold: float,
                     clean_logits: torch.Tensor | None = None, temperature: float = ONLINE_TEMPERATURE,
                     threshold: float = ONLINE_THRESHOLD) -> OnlineStep:
    """The online loss-gate (and, given ``clean_logits``, label correction) of one batch.

    ``loss``: per-sample AAM loss against ``labels`` (the given pseudo-labels; -1: none, never kept);
    ``margin_logits``: the AAM logits behind it (margin at the given label, scaled);
    ``clean_logits``: raw ``x_clean·W`` of the un-augmented crops. As theolepage/wavlm_ssl_sv:
    loss/aamsoftmax.py (``forward``): kept ⇔ ``log(loss) <= log_threshold``. Without
    correction the loss is the mean over the kept samples (``sum / max(1, #kept)``). With it, a
    gated-out sample whose ``softmax(clean_logits / temperature)`` peaks above ``threshold`` adds
    the cross-entropy of ``margin_logits`` (margin still at the given label) against that peak,
    and the loss is the sum over the batch divided by the batch size.
    """
    kept = ((labels >= 0) & (torch.log(loss) <= log_threshold)).detach()
    if clean_logits is None:
        relabelled = torch.zeros_like(kept)
        out = torch.where(kept, labels, torch.full_like(labels, -1))
        return OnlineStep((loss * kept).sum() / kept.sum().clamp_min(1), kept, out, relabelled)
    with torch.no_grad():
        conf, predicted = torch.softmax(clean_logits.float() / temperature, dim=1).max(dim=1)
    relabelled = ~kept & (conf > threshold)
    corrected_loss = F.cross_entropy(margin_logits.float(), predicted, reduction="none")
    total = torch.where(kept, loss, torch.zeros_like(loss)) + torch.where(relabelled, corrected_loss,
                                                                          torch.zeros_like(corrected_loss))
    out = torch.where(kept, labels, torch.where(relabelled, predicted, torch.full_like(labels, -1)))
    return OnlineStep(total.sum() / loss.numel(), kept, out, relabelled)
