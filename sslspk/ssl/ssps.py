"""SSPS: self-supervised positive sampling.

Instead of a second crop of the same utterance, the positive of an anchor comes from *another*
utterance lying near it in embedding space. ``positive`` picks how:

- ``embedding`` (default; sslsv's SSPS, theolepage/sslsv:sslsv/methods/_SSPS): a memory holds one
  *reference* embedding per utterance, from a clean crop (data view group 2, ``augment: false``)
  encoded in eval mode without gradient; a FIFO queue holds the ``pos_queue_size`` latest positive
  embeddings (the second view's loss vectors, detached) with their utterances. Both are filled from
  epoch ``start_epoch - 1`` on. At each epoch start from ``start_epoch`` on, the memory is clustered
  into ``num_prototypes`` spherical k-means prototypes (``kmeans_iters`` iterations). At each step,
  for each anchor, a prototype is drawn uniformly among the ``inter_sampling_size`` prototypes nearest
  to the anchor's own, itself excluded (``0``: its own), then a queue entry uniformly among those whose
  utterance belongs to it; that stored embedding replaces the anchor's second-view vector in the loss.
  Anchors without one (no prototype yet, no entry of the drawn prototype in the queue) keep their own.
- ``audio``: the per-epoch variant of sslspk's small recipes (one draw per utterance and epoch, then the
  second view is cropped from the drawn utterance's audio, so the positive gets a gradient and fresh
  augmentation). The memory holds the anchors' (augmented, train-mode) embeddings, updated every step,
  and ``sampling`` picks the rule:

  - ``kmeans``: the memory (at most ``queue_size`` random entries) is clustered into
    ``num_prototypes`` k-means prototypes; the positive is a random utterance of the anchor's own
    prototype (``neighbourhood: 1``) or of one of its ``neighbourhood`` nearest prototypes.
  - ``knn``: the positive is one of the anchor's ``neighbourhood`` nearest utterances (cosine),
    searched among at most ``queue_size`` random memory entries (exact search: n x queue_size).

  Utterances without a candidate fall back to a crop of themselves.

The memory and queue are buffers (saved in checkpoints, so a resumed run continues with them) that
every process fills with the same gathered values; DDP is told not to broadcast them
(:class:`~sslspk.ssl.base.SSLTask`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sslspk.train.distributed import all_gather_cat, is_distributed
from sslspk.utils.config import ConfigError, check_ranges

log = logging.getLogger("sslspk.train")


@dataclass
class SSPSConfig:
    """The ``ssl.ssps:`` block (see the module doc for the two ``positive`` modes)."""

    positive: str = "embedding"    # embedding: stored embedding of a nearby utterance (sslsv); audio: its crop
    start_epoch: int = 1           # first epoch (0-based) using sampled positives
    num_prototypes: int = 50       # k-means prototypes over the memory
    kmeans_iters: int = 20
    inter_sampling_size: int = 0   # embedding: draw among the n nearest other prototypes (0: the own one)
    pos_queue_size: int = 50000    # embedding: positive queue length (rounded down to a multiple of the
                                   # global batch), sslsv's default
    sampling: str = "kmeans"       # audio: kmeans (within nearby prototypes) or knn (the nearest utterances)
    neighbourhood: int = 1         # audio: the n nearest prototypes (kmeans) or utterances (knn), itself included
    queue_size: int | None = None  # audio: memory entries used to fit the prototypes / searched (None: all)

    def __post_init__(self) -> None:
        check_ranges(self, start_epoch=">=0", queue_size=">=1", kmeans_iters=">=1", num_prototypes=">=1",
                     neighbourhood=">=1", pos_queue_size=">=1", inter_sampling_size=">=0")
        if self.positive not in ("embedding", "audio"):
            raise ConfigError(f"ssps.positive must be embedding or audio, got {self.positive!r}")
        if self.sampling not in ("kmeans", "knn"):
            raise ConfigError(f"ssps.sampling must be kmeans or knn, got {self.sampling!r}")
        if self.positive == "embedding" and self.sampling != "kmeans":
            raise ConfigError("ssps.sampling: knn exists with positive: audio only (positive: embedding "
                              "samples among k-means prototypes)")
        if self.inter_sampling_size >= self.num_prototypes:
            raise ConfigError(f"ssps.inter_sampling_size must be below ssps.num_prototypes ({self.num_prototypes}), "
                              f"got {self.inter_sampling_size}")


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


@torch.no_grad()
def spherical_kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator,
                     chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """``(centroids [k, D], assignment [N])`` of unit rows ``x`` (as sslsv's KMeans): centroids start
    at ``k`` distinct random rows; each iteration assigns every row to its most similar centroid (inner
    product), then moves the centroids holding rows to their rows' mean, all renormalised; a last
    assignment follows the ``iters`` updates. Similarities are computed ``chunk`` rows at a time."""
    n = len(x)
    if n < k:
        raise ValueError(f"k-means with {k} prototypes needs at least {k} embeddings, got {n}")
    centroids = x[torch.randperm(n, generator=generator)[:k].to(x.device)].clone()
    for it in range(iters + 1):
        assign = torch.cat([(part @ centroids.T).argmax(1) for part in x.split(chunk)])
        if it == iters:
            return centroids, assign
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        held = counts > 0
        centroids[held] = sums[held] / counts[held, None].to(sums.dtype)
        centroids = F.normalize(centroids, dim=1)
    raise AssertionError("unreachable")


def nearby_prototypes(centroids: torch.Tensor, inter_sampling_size: int) -> torch.Tensor:
    """``[K, max(1, M)]``: per prototype, the ``M = inter_sampling_size`` most similar *other*
    prototypes (most similar first), or the prototype itself when ``M`` is 0."""
    top = (centroids @ centroids.T).topk(inter_sampling_size + 1, dim=1).indices
    return top[:, :1] if inter_sampling_size == 0 else top[:, 1:]


def sample_queue_positions(anchors: torch.Tensor, assign: torch.Tensor, nearby: torch.Tensor,
                           queue_index: torch.Tensor) -> torch.Tensor:
    """Per anchor utterance, a position of the positive queue, or -1 (vectorised, torch's RNG).

    A prototype is drawn uniformly in ``nearby[assign[anchor]]``, then an entry uniformly among the
    queue entries whose utterance (``queue_index``, -1: empty) is assigned to it; as in sslsv, the
    position returned is the last one holding that entry's utterance. -1 for anchors without a
    prototype (``assign`` -1) or without an entry of the drawn prototype.
    """
    dev = queue_index.device
    own = assign[anchors]
    m = nearby.shape[1]
    pick_proto = (torch.rand(len(anchors), device=dev) * m).long().clamp(max=m - 1)
    target = nearby[own.clamp(min=0), pick_proto]
    filled = queue_index >= 0
    entry_proto = torch.full_like(queue_index, -1)
    entry_proto[filled] = assign[queue_index[filled]]
    member = entry_proto >= 0
    out = torch.full_like(anchors, -1)
    if not member.any():
        return out
    positions = torch.arange(len(queue_index), device=dev)
    order = positions[member][torch.argsort(entry_proto[member], stable=True)]   # entries grouped by prototype
    counts = torch.bincount(entry_proto[member], minlength=len(nearby))
    starts = torch.cumsum(counts, 0) - counts
    n_cand = counts[target]
    has = (own >= 0) & (n_cand > 0)
    pick = torch.minimum((torch.rand(len(anchors), device=dev) * n_cand).long(), (n_cand - 1).clamp(min=0))
    drawn = order[(starts[target] + pick).clamp(max=len(order) - 1)]
    last = torch.full((len(assign),), -1, dtype=torch.long, device=dev)
    last.scatter_reduce_(0, queue_index[filled], positions[filled], reduce="amax")
    out[has] = last[queue_index[drawn[has]]]
    return out


class SSPS(nn.Module):
    """Reference memory (+ positive queue with ``positive: embedding``) and positive sampling (module doc).

    ``positive_views``: (audio) the view groups cropped from the drawn utterance; ``positive_dim``:
    (embedding) the dimension of the vectors the loss compares, stored in the queue.
    """

    def __init__(self, cfg: SSPSConfig, num_utts: int, dim: int, positive_views: tuple[int, ...] = (),
                 speakers: np.ndarray | None = None, recordings: np.ndarray | None = None, seed: int = 0,
                 positive_dim: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.positive_views = positive_views
        self.speakers = speakers
        self.recordings = recordings
        self.seed = seed
        self.register_buffer("memory", torch.zeros(num_utts, dim))
        self.register_buffer("filled", torch.zeros(num_utts, dtype=torch.bool))
        if cfg.positive == "embedding":
            self.register_buffer("queue_index", torch.full((cfg.pos_queue_size,), -1, dtype=torch.long))
            self.register_buffer("queue_emb", torch.zeros(cfg.pos_queue_size, positive_dim or dim))
        self.assign: torch.Tensor | None = None   # embedding: prototype of each utterance this epoch
        self.nearby: torch.Tensor | None = None   # embedding: prototypes to draw from, per prototype
        self._step = 0                             # embedding: steps of this epoch (queue position)

    @torch.no_grad()
    def update(self, index: torch.Tensor, emb: torch.Tensor) -> None:
        """Store the (normalised, detached) reference embeddings of a batch, from every process."""
        index, emb = all_gather_cat(index), all_gather_cat(F.normalize(emb.detach().float(), dim=1))
        self.memory[index] = emb
        self.filled[index] = True

    def fills(self, epoch: int) -> bool:
        """(embedding) Whether this epoch fills the memory and queue: from ``start_epoch - 1`` on."""
        return epoch >= self.cfg.start_epoch - 1

    def exchange(self, index: torch.Tensor, ref: torch.Tensor, positive: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """(embedding) ``positive`` with the rows of sampled anchors replaced by stored queue embeddings
        (when this epoch samples), then the batch's references and (detached) positives stored."""
        logs: dict[str, float] = {}
        out = positive
        if self.assign is not None:
            pos = sample_queue_positions(index, self.assign, self.nearby, self.queue_index)
            has = pos >= 0
            out = torch.where(has[:, None], self.queue_emb[pos.clamp(min=0)].to(positive.dtype), positive)
            logs["ssps/coverage"] = float(has.float().mean())
            logs.update(self._agreement(index[has].cpu().numpy(), self.queue_index[pos[has]].cpu().numpy()))
        self.update(index, ref)
        self._enqueue(all_gather_cat(index), all_gather_cat(positive.detach().float()))
        return out, logs

    @torch.no_grad()
    def _enqueue(self, index: torch.Tensor, emb: torch.Tensor) -> None:
        """Write a (gathered) batch at position ``step * B`` of the queue, its length rounded down to a
        multiple of ``B`` (sslsv's indexing: the queue restarts at 0 each epoch)."""
        b = len(index)
        size = self.cfg.pos_queue_size - self.cfg.pos_queue_size % b
        if size == 0:
            raise ConfigError(f"ssl.ssps.pos_queue_size ({self.cfg.pos_queue_size}) is smaller than the batch "
                              f"over all processes ({b})")
        start = (self._step * b) % size
        self.queue_index[start:start + b] = index
        self.queue_emb[start:start + b] = emb
        self._step += 1

    def _agreement(self, anchors: np.ndarray, positives: np.ndarray) -> dict[str, float]:
        """Share of sampled positives from the anchor's speaker / recording (where known)."""
        if len(anchors) == 0:
            return {}
        logs = {}
        if self.speakers is not None:
            logs["ssps/same_speaker"] = float(np.mean(self.speakers[anchors] == self.speakers[positives]))
        if self.recordings is not None:
            logs["ssps/same_recording"] = float(np.mean(self.recordings[anchors] == self.recordings[positives]))
        return logs

    def _prototypes(self, epoch: int) -> dict[str, float]:
        """(embedding) Cluster the filled memory; sets ``assign`` and ``nearby`` (same on every process)."""
        idx = torch.nonzero(self.filled).view(-1)
        if len(idx) < self.cfg.num_prototypes:
            log.warning("ssps: %d reference embeddings for %d prototypes at epoch %d: no sampling this epoch",
                        len(idx), self.cfg.num_prototypes, epoch + 1)
            return {}
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        centroids, assign = spherical_kmeans(self.memory[idx], self.cfg.num_prototypes, self.cfg.kmeans_iters, gen)
        if is_distributed():   # identical inputs on every process; rank 0's result is the one used
            torch.distributed.broadcast(centroids, 0)
            torch.distributed.broadcast(assign, 0)
        self.assign = torch.full((len(self.memory),), -1, dtype=torch.long, device=self.memory.device)
        self.assign[idx] = assign
        self.nearby = nearby_prototypes(centroids, self.cfg.inter_sampling_size)
        return {"ssps/prototypes_used": float(len(torch.unique(assign)))}

    def on_epoch_start(self, epoch: int, dataset: Any) -> dict[str, float]:
        """embedding: this epoch's prototypes; audio: this epoch's positives drawn into the dataset.
        Returns diagnostics."""
        if self.cfg.positive == "embedding":
            dataset.set_positives(None, ())
            self.assign, self.nearby, self._step = None, None, 0
            return self._prototypes(epoch) if epoch >= self.cfg.start_epoch else {}
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
