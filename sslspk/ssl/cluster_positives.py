"""Cluster-aware positives (CA-DINO): after a first clustering, the crops of some view groups come from
another utterance of the anchor's cluster instead of the anchor itself.

The clusters are the ``utt2spk`` of the training data dir (a pseudo-label data dir, e.g.
``exp/<corpus>/pl_iter1/data``). Each epoch, utterance ``i`` gets, with probability ``prob``, a positive
drawn uniformly among the other utterances of its cluster (itself when its cluster has no other
member, or with probability ``1 - prob``); the dataset then crops ``views`` from that positive
(:meth:`sslspk.train.dataset.CropDataset.set_positives`, the mechanism SSPS uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sslspk.utils.config import ConfigError


@dataclass
class ClusterPositivesConfig:
    """``ssl.cluster_positives`` block."""

    views: list[int] = field(default_factory=lambda: [0])   # view groups cropped from the positive
    prob: float = 1.0                                       # probability that an utterance's positive is another

    def __post_init__(self) -> None:
        if not self.views or any(v < 0 for v in self.views):
            raise ConfigError(f"ssl.cluster_positives.views must list view groups (>= 0), got {self.views}")
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(f"ssl.cluster_positives.prob must be in [0, 1], got {self.prob}")


def sample_cluster_positives(clusters: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """For each item, another item of the same cluster with probability ``prob`` (uniformly), else itself;
    an item alone in its cluster is its own positive."""
    n = len(clusters)
    pos = np.arange(n)
    order = np.argsort(clusters, kind="stable")
    bounds = np.flatnonzero(np.diff(clusters[order])) + 1
    draw = rng.random(n) < prob
    for members in np.split(order, bounds):
        m = len(members)
        if m < 2:
            continue
        # offset in 1..m-1 from the item's own rank in its cluster: uniform over the others
        offset = rng.integers(1, m, size=m)
        other = members[(np.arange(m) + offset) % m]
        pos[members] = np.where(draw[members], other, members)
    return pos


class ClusterPositives:
    """Draws each epoch's cluster positives into the dataset (see module doc)."""

    def __init__(self, cfg: ClusterPositivesConfig, clusters: np.ndarray, n_views: int, seed: int = 0):
        bad = [v for v in cfg.views if v >= n_views]
        if bad:
            raise ConfigError(f"ssl.cluster_positives.views {bad}: data.views has {n_views} group(s)")
        self.cfg = cfg
        self.clusters = clusters
        self.seed = seed

    def on_epoch_start(self, epoch: int, dataset: Any) -> dict[str, float]:
        pos = sample_cluster_positives(self.clusters, self.cfg.prob, np.random.default_rng([self.seed, epoch]))
        dataset.set_positives(pos, tuple(self.cfg.views))
        return {"cluster_positives/self_fallback": float(np.mean(pos == np.arange(len(pos))))}
