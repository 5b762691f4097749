"""faiss k-means (Euclidean, or spherical on L2-normalised embeddings) and batched nearest-centroid assignment.

``init="kmeans++"`` is faiss's own k-means++ seeding (``ClusteringInitMethod::KMEANS_PLUS_PLUS``,
in the faiss of requirements.txt: each centroid drawn with probability proportional to the squared distance to the
nearest one already drawn, Arthur & Vassilvitskii 2007), seeded by ``seed``. cuML's default
``scalable-k-means++`` (k-means||, Bahmani et al. 2012), which theolepage/wavlm_ssl_sv:pseudo_labeling.py
uses, is the parallel approximation of that same D² sampling; with k = 50,000 of ~1.1M rows its
2k-per-round oversampling draws a candidate set of the order of the data itself, so the exact
sequential seeding is the same distribution at the same order of cost.

Memory: faiss trains on at most ``k * max_points_per_centroid`` rows (a subsample it
copies); assignment searches the centroid index in batches, so nothing of size ``n * k``
is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sslspk.cluster.config import INIT_METHODS
from sslspk.utils.config import ConfigError


@dataclass
class KMeansResult:
    """Centroids ``[k, d]`` float32, the label of each row, its distance to its centroid and the final objective."""

    centroids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    objective: float
    iterations: int
    gpu: bool


def use_gpu(request: str) -> bool:
    """Resolve ``--gpu auto|yes|no`` against the GPUs faiss sees (``yes`` without one is an error)."""
    import faiss

    if request not in ("auto", "yes", "no"):
        raise ConfigError(f"gpu must be auto, yes or no, got {request!r}")
    n = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if request == "yes" and n == 0:
        raise ConfigError("--gpu yes: this faiss build sees no GPU (install faiss-gpu, or use --gpu auto|no)")
    return request != "no" and n > 0


def faiss_kmeans(x: np.ndarray, k: int, *, niter: int = 20, seed: int = 1234, spherical: bool = True,
                 nredo: int = 1, max_points_per_centroid: int = 256, init: str = "random", gpu: bool = False,
                 verbose: bool = False, batch: int = 65536) -> KMeansResult:
    """Train ``faiss.Kmeans`` with ``k`` centroids on ``x`` [n, d] float32 and assign every row.

    ``spherical`` normalises the centroids after each iteration (cosine k-means for unit-norm
    ``x``); without it this is Euclidean k-means (Lloyd) on ``x`` as given. faiss runs up to
    ``niter`` iterations: it stops once an iteration leaves the objective unchanged (converged;
    ``KMeansResult.iterations`` says how many ran). Rows are assigned to the nearest centroid of the
    trained index in batches of ``batch``.
    """
    import faiss

    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"k-means input must be a 2-D float32 matrix, got {x.dtype} {x.shape}")
    n, d = x.shape
    if not 1 <= k <= n:
        raise ConfigError(f"k-means: k={k} must be between 1 and the number of embeddings ({n})")
    if niter < 1 or nredo < 1 or max_points_per_centroid < 1:
        raise ConfigError("k-means: niter, nredo and max_points_per_centroid must be >= 1")
    if init not in INIT_METHODS:
        raise ConfigError(f"k-means: init must be one of {', '.join(INIT_METHODS)}, got {init!r}")
    x = np.ascontiguousarray(x)
    kwargs: dict = dict(niter=niter, seed=seed, spherical=spherical, nredo=nredo, verbose=verbose,
                        max_points_per_centroid=max_points_per_centroid, gpu=bool(gpu))
    if hasattr(faiss, INIT_METHODS[init]):
        kwargs["init_method"] = getattr(faiss, INIT_METHODS[init])
    elif init != "random":
        raise ConfigError(f"k-means: this faiss version has no {init} initialisation")
    km = faiss.Kmeans(d, k, **kwargs)
    km.train(x)
    labels, dist = assign(x, km.index, batch)
    obj = float(km.obj[-1]) if len(km.obj) else float("nan")
    return KMeansResult(np.ascontiguousarray(km.centroids, dtype=np.float32), labels, dist, obj,
                        len(km.obj), bool(gpu))


def assign(x: np.ndarray, index, batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Nearest entry of a faiss ``index`` for every row of ``x``, searched ``batch`` rows at a time.

    Returns ``(labels int64 [n], scores float32 [n])`` where scores are the index's metric
    (squared L2 distance, or inner product for an IP index).
    """
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float32)
    for b in range(0, n, batch):
        dist, idx = index.search(np.ascontiguousarray(x[b:b + batch]), 1)
        labels[b:b + batch] = idx[:, 0]
        scores[b:b + batch] = dist[:, 0]
    if n and labels.min() < 0:
        raise RuntimeError("faiss search returned no neighbour for some rows (NaN embeddings?)")
    return labels, scores
