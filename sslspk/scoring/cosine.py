"""Vectorised cosine scoring of trial lists."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sslspk.data.embeddings import l2_normalize
from sslspk.utils.errors import MissingIdError

#: Trials scored at a time: two ``[block, dim]`` float64 gathers (32 MiB each at 256-d). Larger
#: blocks are slower, not faster: with 2**18, scoring 580k trials took 1.2x as long and 0.7 GiB
#: more memory (bench/bench_scoring.py, docs/benchmarks.md).
PAIR_BLOCK = 1 << 14


def lookup(keys: Sequence[str], index: dict[str, int], what: str, source: str) -> np.ndarray:
    """Row indices of ``keys`` in ``index``; a clear error lists the first missing ids."""
    rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    if (rows < 0).any():
        missing = sorted({k for k, r in zip(keys, rows) if r < 0})
        raise MissingIdError(f"{len(missing)} {what} id(s) of the trial list have no embedding in {source}: "
                       + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return rows


def present_trials(enroll_ids: Sequence[str], test_ids: Sequence[str], enroll_keys: Sequence[str],
                   test_keys: Sequence[str] | None = None) -> np.ndarray:
    """Boolean mask of the trials whose enrollment and test ids both have an embedding."""
    e_set = set(enroll_keys)
    t_set = e_set if test_keys is None else set(test_keys)
    return np.fromiter((e in e_set and t in t_set for e, t in zip(enroll_ids, test_ids)),
                       dtype=bool, count=len(enroll_ids))


def normalise_embeddings(x: np.ndarray, mean: np.ndarray | None = None,
                         scale: np.ndarray | None = None) -> np.ndarray:
    """float64 copy of ``x`` minus ``mean``, divided by ``scale``, then length-normalised."""
    x = np.asarray(x, dtype=np.float64)
    if mean is not None:
        x = x - mean
    if scale is not None:
        x = x / np.maximum(scale, 1e-12)
    return l2_normalize(x)


def trial_rows(emb: tuple[list[str], np.ndarray], enroll_ids: Sequence[str], test_ids: Sequence[str],
               test_emb: tuple[list[str], np.ndarray] | None = None,
               source: str = "the embeddings") -> tuple[np.ndarray, np.ndarray]:
    """Row indices of each trial's enrollment (in ``emb``) and test (in ``test_emb`` or ``emb``) side."""
    keys = emb[0]
    index = {k: i for i, k in enumerate(keys)}
    e_rows = lookup(enroll_ids, index, "enrollment", source)
    t_index = index if test_emb is None else {k: i for i, k in enumerate(test_emb[0])}
    t_rows = lookup(test_ids, t_index, "test", source)
    return e_rows, t_rows


def paired_dot(a: np.ndarray, b: np.ndarray, a_rows: np.ndarray, b_rows: np.ndarray,
               block: int = PAIR_BLOCK) -> np.ndarray:
    """``a[a_rows[i]] . b[b_rows[i]]`` for every i, ``block`` pairs at a time."""
    out = np.empty(len(a_rows), dtype=np.float64)
    for s in range(0, len(a_rows), block):
        out[s:s + block] = np.einsum("ij,ij->i", a[a_rows[s:s + block]], b[b_rows[s:s + block]])
    return out


def score_trials(emb: tuple[list[str], np.ndarray], enroll_ids: Sequence[str], test_ids: Sequence[str],
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None,
                 test_emb: tuple[list[str], np.ndarray] | None = None,
                 source: str = "the embeddings", block: int = PAIR_BLOCK) -> np.ndarray:
    """Cosine score of each trial ``(enroll_ids[i], test_ids[i])``.

    ``emb`` is ``(keys, matrix)``; ``test_emb`` optionally holds the test side separately.
    ``mean`` (e.g. the training-set mean) is subtracted and ``scale`` (e.g. its per-dimension
    standard deviation) divides each dimension before length normalisation.
    Each embedding is normalised once; trials are scored ``block`` rows at a time so memory
    stays bounded for million-trial lists (no Python loop per trial).
    """
    e_rows, t_rows = trial_rows(emb, enroll_ids, test_ids, test_emb, source)
    e_all = normalise_embeddings(emb[1], mean, scale)
    t_all = e_all if test_emb is None else normalise_embeddings(test_emb[1], mean, scale)
    return paired_dot(e_all, t_all, e_rows, t_rows, block)
