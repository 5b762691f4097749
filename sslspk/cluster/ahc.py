"""Agglomerative (hierarchical) clustering of k-means centroids (fastcluster linkage).

The paper's recipe over-clusters with k-means (e.g. 50k clusters) and merges the
centroids with AHC down to the expected number of speakers (e.g. 7.5k). Only the
centroids are clustered: memory is the condensed distance matrix, ``8 * k * (k - 1) / 2``
bytes (float64; 1.5 GiB at k = 20k, 9.3 GiB at k = 50k), computed here in blocks with BLAS
instead of ``pdist``. fastcluster's linkage (the algorithms scipy's ``linkage`` also uses, with the
same output: identical merges in ``tests/test_cluster.py``) works in that matrix itself
(:func:`linkage_in_place`), where scipy's would copy it: the peak is one matrix, not two.
:func:`ahc_centroids` refuses, with the figures, a matrix that does not fit in the available memory.
"""

from __future__ import annotations

import numpy as np

from sslspk.cluster.config import LINKAGES
from sslspk.utils.config import ConfigError
from sslspk.utils.errors import InputError


def condensed_distances(c: np.ndarray, metric: str, block: int = 256) -> np.ndarray:
    """Condensed (``pdist``-order) float64 distances between the rows of ``c``: ``cosine`` or ``euclidean``."""
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be cosine or euclidean, got {metric!r}")
    k = c.shape[0]
    c = np.asarray(c, dtype=np.float64)
    if metric == "cosine":
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    sq = np.einsum("ij,ij->i", c, c)
    out = np.empty(k * (k - 1) // 2, dtype=np.float64)
    for a in range(0, k, block):
        b = min(k, a + block)
        dots = c[a:b] @ c[a:].T  # rows a..b against columns a..k
        if metric == "cosine":
            dist = 1.0 - dots
        else:
            dist = np.sqrt(np.maximum(sq[a:b, None] + sq[None, a:] - 2.0 * dots, 0.0))
        for i in range(a, b):
            off = i * k - i * (i + 1) // 2
            out[off:off + k - i - 1] = dist[i - a, i - a + 1:]
    np.maximum(out, 0.0, out=out)
    return out


def linkage_in_place(dist: np.ndarray, k: int, method: str) -> np.ndarray:
    """Linkage matrix (scipy's format) of the condensed float64 distances ``dist`` between ``k`` rows,
    computed by fastcluster with ``dist`` as its working memory: ``dist`` is overwritten.

    ``fastcluster.linkage(dist, preserve_input=False)`` would still copy ``dist`` (fastcluster 1.3.0
    starts with ``array(X, subok=True)``), so its C routine is called here as ``linkage`` calls it.
    """
    import fastcluster

    if dist.dtype != np.float64 or not dist.flags.c_contiguous or dist.shape != (k * (k - 1) // 2,):
        raise ValueError(f"linkage: expected a C-contiguous float64 condensed matrix of {k} rows, "
                         f"got {dist.dtype} {dist.shape}")
    z = np.empty((k - 1, 4))
    fastcluster.linkage_wrap(k, dist, z, fastcluster.mthidx[method])
    return z


def cut_linkage(z: np.ndarray, num_leaves: int, num_clusters: int | None = None,
                threshold: float | None = None) -> np.ndarray:
    """Flat labels ``0..m-1`` of the leaves after the first merges of a (monotonic) linkage matrix ``z``.

    Exactly ``num_clusters`` clusters, or every merge at a distance ``<= threshold``.
    Labels are numbered in order of each cluster's first leaf.
    """
    if (num_clusters is None) == (threshold is None):
        raise ConfigError("give exactly one of num_clusters and threshold")
    if num_clusters is not None:
        if not 1 <= num_clusters <= num_leaves:
            raise ConfigError(f"AHC: cannot cut {num_leaves} centroids into {num_clusters} clusters")
        merges = num_leaves - num_clusters
    else:
        merges = int(np.searchsorted(z[:, 2], threshold, side="right"))
    parent = np.arange(2 * num_leaves - 1)
    for i in range(merges):
        parent[int(z[i, 0])] = parent[int(z[i, 1])] = num_leaves + i
    root = parent.copy()
    for node in range(2 * num_leaves - 2, -1, -1):  # parents have larger ids: resolve top-down
        root[node] = root[parent[node]]
    _, first, labels = np.unique(root[:num_leaves], return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber by first leaf
    return order[labels].astype(np.int64)


def ahc_peak_bytes(k: int) -> int:
    """Peak memory of AHC on ``k`` rows: one float64 condensed distance matrix (the linkage works in it)."""
    return 8 * (k * (k - 1) // 2)


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_ahc_memory(k: int, available: int | None = None) -> None:
    """Raise ``ValueError`` with the figures when AHC of ``k`` rows needs more than the available memory."""
    need = ahc_peak_bytes(k)
    available = available_memory_bytes() if available is None else available
    if available is not None and need > available:
        fits = int((2 * available / 8) ** 0.5)
        raise InputError(f"AHC of {k} rows needs about {need / 2**30:.1f} GiB (the condensed distance matrix), "
                         f"more than the {available / 2**30:.1f} GiB available (about {fits} rows fit): "
                         "run k-means first (--k) and merge its centroids with AHC")


def ahc_centroids(c: np.ndarray, num_clusters: int | None = None, threshold: float | None = None,
                  linkage: str = "average", normalize: bool = True) -> np.ndarray:
    """Cluster the rows of ``c`` (k-means centroids) with AHC; returns each row's flat label.

    ``average``/``complete``/``single`` use cosine distance, ``ward`` euclidean distance between
    the unit-normalised centroids, or between the raw ones with ``normalize=False`` (sklearn's
    ``AgglomerativeClustering()`` defaults, as theolepage/wavlm_ssl_sv:pseudo_labeling.py).
    Give ``num_clusters`` or a distance ``threshold``.
    """
    if linkage not in LINKAGES:
        raise ConfigError(f"AHC linkage must be one of {', '.join(LINKAGES)}, got {linkage!r}")
    k = c.shape[0]
    if num_clusters is not None and not 1 <= num_clusters <= k:
        raise ConfigError(f"AHC: cannot cut {k} k-means centroids into {num_clusters} clusters")
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    check_ahc_memory(k)
    c = np.asarray(c, dtype=np.float64)
    if normalize:
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    dist = condensed_distances(c, "euclidean" if linkage == "ward" else "cosine")
    z = linkage_in_place(dist, k, linkage)
    del dist  # overwritten by the linkage
    return cut_linkage(z, k, num_clusters, threshold)
