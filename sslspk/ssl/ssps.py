"""SSPS: self-supervised positive sampling.

Instead of a second crop of the same utterance, the positive of an anchor is a crop of
*another* utterance lying near it in embedding space. A memory holds one reference embedding
per training utterance (updated every step). From ``start_epoch`` on, at each epoch start the
memory (at most ``queue_size`` random entries) is clustered into ``num_prototypes`` k-means
prototypes; every utterance then draws its positive among the utterances of its own
prototype (``neighbourhood: 1``) or of its ``neighbourhood`` nearest prototypes, itself
excluded. Utterances without a candidate fall back to a crop of themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sslspk.train.distributed import all_gather_cat


@dataclass
class SSPSConfig:
    """The ``ssl.ssps:`` block."""

    start_epoch: int = 1           # first epoch (0-based) using sampled positives
    num_prototypes: int = 50       # k-means prototypes over the memory
    neighbourhood: int = 1         # sample among the utterances of the n nearest prototypes
    queue_size: int | None = None  # memory entries used to fit the prototypes (None: all)
    kmeans_iters: int = 20


def sample_positives(assign: np.ndarray, centroids: np.ndarray, neighbourhood: int,
                     rng: np.random.Generator) -> np.ndarray:
    """For each item, a random other item assigned to one of its ``neighbourhood`` nearest prototypes.

    ``assign[i]`` is the prototype of item ``i`` (``-1``: no embedding yet → itself). Items
    with no candidate get themselves. Vectorised: no loop over items.
    """
    n, k = len(assign), len(centroids)
    pos = np.arange(n)
    valid = np.flatnonzero(assign >= 0)
    if len(valid) < 2:
        return pos
    # Prototype chosen for each item: its own, or one of its nearest ones weighted by size.
    proto = assign[valid].copy()
    sizes = np.bincount(assign[valid], minlength=k)
    if neighbourhood > 1:
        sim = centroids @ centroids.T
        near = np.argsort(-sim, axis=1)[:, :neighbourhood]  # includes the prototype itself
        w = sizes[near].astype(np.float64)
        w /= np.maximum(w.sum(1, keepdims=True), 1)
        u = rng.random(len(valid))
        choice = (np.cumsum(w[proto], axis=1) < u[:, None]).sum(1).clip(max=neighbourhood - 1)
        proto = near[proto, choice]
    order = valid[np.argsort(assign[valid], kind="stable")]  # members grouped by prototype
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    own = assign[valid]
    # Position of each item in its own prototype's block, to skip itself when drawing there.
    rank_in_block = np.empty(n, dtype=np.int64)
    rank_in_block[order] = np.arange(len(order)) - starts[assign[order]]
    same = proto == own
    n_cand = sizes[proto] - same.astype(np.int64)
    has = n_cand > 0
    r = (rng.random(len(valid)) * np.maximum(n_cand, 1)).astype(np.int64)
    r = np.where(same & (r >= rank_in_block[valid]), r + 1, r)
    pos[valid[has]] = order[starts[proto[has]] + r[has]]
    return pos


class SSPS(nn.Module):
    """Memory of reference embeddings + per-epoch positive sampling (see module doc)."""

    def __init__(self, cfg: SSPSConfig, num_utts: int, dim: int, positive_views: tuple[int, ...],
                 speakers: np.ndarray | None = None, recordings: np.ndarray | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.positive_views = positive_views
        self.speakers = speakers
        self.recordings = recordings
        self.seed = seed
        self.register_buffer("memory", torch.zeros(num_utts, dim))
        self.register_buffer("filled", torch.zeros(num_utts, dtype=torch.bool))

    @torch.no_grad()
    def update(self, index: torch.Tensor, emb: torch.Tensor) -> None:
        """Store the (normalised, detached) reference embeddings of a batch, from every process."""
        index, emb = all_gather_cat(index), all_gather_cat(F.normalize(emb.detach().float(), dim=1))
        self.memory[index] = emb
        self.filled[index] = True

    def on_epoch_start(self, epoch: int, dataset: Any) -> dict[str, float]:
        """Draw this epoch's positives into the dataset; returns diagnostics."""
        if epoch < self.cfg.start_epoch or int(self.filled.sum()) < 2 * self.cfg.num_prototypes:
            dataset.set_positives(None, ())
            return {}
        import faiss

        rng = np.random.default_rng([self.seed, epoch])
        filled = self.filled.cpu().numpy()
        mem = self.memory.cpu().numpy().astype(np.float32)
        idx = np.flatnonzero(filled)
        fit = idx if not self.cfg.queue_size or len(idx) <= self.cfg.queue_size else \
            rng.choice(idx, self.cfg.queue_size, replace=False)
        km = faiss.Kmeans(mem.shape[1], self.cfg.num_prototypes, niter=self.cfg.kmeans_iters,
                          seed=int(rng.integers(2**31)), spherical=True, verbose=False)
        km.train(np.ascontiguousarray(mem[fit]))
        assign = np.full(len(mem), -1, dtype=np.int64)
        assign[idx] = km.index.search(np.ascontiguousarray(mem[idx]), 1)[1][:, 0]
        pos = sample_positives(assign, km.centroids, self.cfg.neighbourhood, rng)
        dataset.set_positives(pos, self.positive_views)
        anchors = np.arange(len(pos))
        logs = {"ssps/self_fallback": float(np.mean(pos == anchors))}
        if self.recordings is not None:
            logs["ssps/same_recording"] = float(np.mean(self.recordings[pos] == self.recordings))
        if self.speakers is not None:
            other = pos != anchors
            logs["ssps/same_speaker"] = float(np.mean(self.speakers[pos[other]] == self.speakers[other])) if other.any() else 0.0
        return logs
