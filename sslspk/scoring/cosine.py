"""Vectorised cosine scoring of trial lists."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def lookup(keys: Sequence[str], index: dict[str, int], what: str, source: str) -> np.ndarray:
    """Row indices of ``keys`` in ``index``; a clear error lists the first missing ids."""
    rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    if (rows < 0).any():
        missing = sorted({k for k, r in zip(keys, rows) if r < 0})
        raise KeyError(f"{len(missing)} {what} id(s) of the trial list have no embedding in {source}: "
                       + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return rows


def score_trials(emb: tuple[list[str], np.ndarray], enroll_ids: Sequence[str], test_ids: Sequence[str],
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None,
                 test_emb: tuple[list[str], np.ndarray] | None = None,
                 source: str = "the embeddings", block: int = 1 << 18) -> np.ndarray:
    """Cosine score of each trial ``(enroll_ids[i], test_ids[i])``.

    ``emb`` is ``(keys, matrix)``; ``test_emb`` optionally holds the test side separately.
    ``mean`` (e.g. the training-set mean) is subtracted and ``scale`` (e.g. its per-dimension
    standard deviation) divides each dimension before length normalisation.
    Each embedding is normalised once; trials are scored ``block`` rows at a time so memory
    stays bounded for million-trial lists (no Python loop per trial).
    """
    keys, mat = emb
    index = {k: i for i, k in enumerate(keys)}
    e_rows = lookup(enroll_ids, index, "enrollment", source)
    if test_emb is None:
        t_keys, t_mat, t_index = keys, mat, index
    else:
        t_keys, t_mat = test_emb
        t_index = {k: i for i, k in enumerate(t_keys)}
    t_rows = lookup(test_ids, t_index, "test", source)
    # Normalise each embedding once, then gather per trial.
    def normalise(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        if mean is not None:
            x = x - mean
        if scale is not None:
            x = x / np.maximum(scale, 1e-12)
        return l2_normalize(x)

    e_all, t_all = normalise(mat), normalise(t_mat)
    out = np.empty(len(e_rows), dtype=np.float64)
    for b in range(0, len(e_rows), block):
        out[b:b + block] = np.einsum("ij,ij->i", e_all[e_rows[b:b + block]], t_all[t_rows[b:b + block]])
    return out
