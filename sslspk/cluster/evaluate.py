"""Clustering quality against reference speakers and cluster-size summaries.

Purity is the fraction of items whose cluster's majority reference class is their own
class, ``sum_k max_j n_kj / N``; inverse purity swaps the roles, ``sum_j max_k n_kj / N``
(a class split over many clusters lowers it). Both come from a sparse contingency matrix,
so large numbers of clusters and classes cost ``O(N)`` memory.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def encode(labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int64 [N], unique values)`` of any label sequence (strings or ints)."""
    uniq, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.reshape(-1).astype(np.int64), uniq


def contingency(pred: np.ndarray, ref: np.ndarray):
    """Sparse CSR ``[clusters, classes]`` matrix of co-occurrence counts of integer codes."""
    from scipy import sparse

    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape or pred.ndim != 1:
        raise ValueError(f"label arrays differ in shape: {pred.shape} vs {ref.shape}")
    if pred.size == 0:
        raise ValueError("no labels to compare")
    m = sparse.coo_matrix((np.ones(pred.size, dtype=np.int64), (pred, ref)),
                          shape=(int(pred.max()) + 1, int(ref.max()) + 1))
    return m.tocsr()  # duplicates are summed


def purity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Purity of clusters ``pred`` w.r.t. classes ``ref`` (integer codes)."""
    c = contingency(pred, ref)
    return float(c.max(axis=1).sum() / pred.size)


def inverse_purity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Inverse purity: purity of the classes w.r.t. the clusters."""
    c = contingency(pred, ref)
    return float(c.max(axis=0).sum() / pred.size)


def clustering_scores(pred: Sequence, ref: Sequence) -> dict[str, float]:
    """NMI (arithmetic normalisation), ARI (scikit-learn), purity and inverse purity of ``pred`` vs ``ref``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    p, _ = encode(pred)
    r, _ = encode(ref)
    return {
        "nmi": float(normalized_mutual_info_score(r, p)),
        "ari": float(adjusted_rand_score(r, p)),
        "purity": purity(p, r),
        "inverse_purity": inverse_purity(p, r),
    }


def size_summary(sizes: np.ndarray) -> dict:
    """Count, mean, percentiles and a power-of-two histogram (``"1"``, ``"2-3"``, ``"4-7"``, ...) of cluster sizes."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return {"num_clusters": 0}
    pct = {f"p{q}": float(np.percentile(sizes, q)) for q in (0, 5, 25, 50, 75, 95, 100)}
    bins = np.floor(np.log2(np.maximum(sizes, 1))).astype(np.int64)
    hist = {}
    for b, count in zip(*np.unique(bins, return_counts=True)):
        lo, hi = 1 << int(b), (1 << (int(b) + 1)) - 1
        hist[str(lo) if lo == hi else f"{lo}-{hi}"] = int(count)
    return {"num_clusters": int(sizes.size), "num_items": int(sizes.sum()), "mean": float(sizes.mean()),
            "min": int(sizes.min()), "max": int(sizes.max()), "percentiles": pct, "histogram": hist}
