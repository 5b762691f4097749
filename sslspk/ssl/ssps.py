"""SSPS: self-supervised positive sampling.

Instead of a second crop of the same utterance, the positive of an anchor is a crop of
*another* utterance lying near it in embedding space. A memory holds one reference embedding
per training utterance (updated every step). From ``start_epoch`` on, at each epoch start,
every utterance draws its positive (itself excluded) with one of two ``sampling`` methods:

- ``kmeans`` (default): the memory (at most ``queue_size`` random entries) is clustered into
  ``num_prototypes`` k-means prototypes; the positive is a random utterance of the anchor's own
  prototype (``neighbourhood: 1``) or of one of its ``neighbourhood`` nearest prototypes.
- ``knn``: the positive is one of the anchor's ``neighbourhood`` nearest utterances (cosine),
  searched among at most ``queue_size`` random memory entries (exact search: n x queue_size).

Utterances without a candidate fall back to a crop of themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sslspk.train.distributed import all_gather_cat
from sslspk.utils.config import ConfigError, check_ranges


@dataclass
class SSPSConfig:
    """The ``ssl.ssps:`` block."""

    start_epoch: int = 1           # first epoch (0-based) using sampled positives
    sampling: str = "kmeans"       # kmeans: within nearby prototypes; knn: among the nearest utterances
    num_prototypes: int = 50       # k-means prototypes over the memory (kmeans)
    neighbourhood: int = 1         # sample within the n nearest prototypes (kmeans) or utterances (knn)
    queue_size: int | None = None  # memory entries used to fit the prototypes / searched (None: all)
    kmeans_iters: int = 20

    def __post_init__(self) -> None:
        if self.sampling not in ("kmeans", "knn"):
            raise ConfigError(f"ssps.sampling must be kmeans or knn, got {self.sampling!r}")
        if self.neighbourhood < 1 or self.num_prototypes < 1:
            raise ConfigError("ssps.neighbourhood and ssps.num_prototypes must be >= 1")
        check_ranges(self, start_epoch=">=0", queue_size=">=1", kmeans_iters=">=1")


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


def sample_knn_positives(mem: np.ndarray, valid: np.ndarray, pool: np.ndarray, neighbourhood: int,
                         rng: np.random.Generator) -> np.ndarray:
    """For each item, one of its ``neighbourhood`` nearest items (inner product of the rows of
    ``mem``) among the items ``pool``; itself excluded. Items not in ``valid`` (no embedding yet)
    and items without a candidate get themselves."""
    import faiss

    pos = np.arange(len(mem))
    if len(valid) == 0 or len(pool) < 2:
        return pos
    index = faiss.IndexFlatIP(mem.shape[1])
    index.add(np.ascontiguousarray(mem[pool]))
    k = min(neighbourhood + 1, len(pool))
    _, nn = index.search(np.ascontiguousarray(mem[valid]), k)
    cand = np.where(nn >= 0, pool[np.maximum(nn, 0)], -1)
    cand[cand == valid[:, None]] = -1                      # the item itself
    order = np.argsort(cand < 0, axis=1, kind="stable")     # candidates first, nearest first
    cand = np.take_along_axis(cand, order, axis=1)[:, :neighbourhood]
    n_cand = (cand >= 0).sum(1)
    has = n_cand > 0
    pick = (rng.random(len(valid)) * np.maximum(n_cand, 1)).astype(np.int64)
    pos[valid[has]] = cand[has, pick[has]]
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
        needed = 2 * self.cfg.num_prototypes if self.cfg.sampling == "kmeans" else 2
        if epoch < self.cfg.start_epoch or int(self.filled.sum()) < needed:
            dataset.set_positives(None, ())
            return {}
        rng = np.random.default_rng([self.seed, epoch])
        filled = self.filled.cpu().numpy()
        mem = self.memory.cpu().numpy().astype(np.float32)
        idx = np.flatnonzero(filled)
        fit = idx if not self.cfg.queue_size or len(idx) <= self.cfg.queue_size else \
            rng.choice(idx, self.cfg.queue_size, replace=False)
        if self.cfg.sampling == "knn":
            pos = sample_knn_positives(mem, idx, np.sort(fit), self.cfg.neighbourhood, rng)
        else:
            import faiss

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
            same = self.speakers[pos[other]] == self.speakers[other]
            logs["ssps/same_speaker"] = float(np.mean(same)) if other.any() else 0.0
        return logs
