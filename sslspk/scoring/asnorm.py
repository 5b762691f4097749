"""Adaptive symmetric score normalisation (AS-norm, "S-norm with top-N cohort").

For a trial (e, t) with cosine score s, let ``mu_e, sd_e`` be the mean and standard
deviation of the ``top_n`` highest cosine scores of e against a cohort (e.g. training speaker
means), and ``mu_t, sd_t`` the same for t. The normalised score is
``0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``. Standard deviations are population
ones (``ddof=0``).

The cohort statistics of each distinct embedding are computed once, ``block`` embeddings at
a time, so at most a ``block x cohort`` score matrix exists at any moment.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sslspk.data.embeddings import group_means, l2_normalize
from sslspk.scoring.cosine import normalise_embeddings, paired_dot, trial_rows
from sslspk.utils.errors import InputError


def cohort_stats(x: np.ndarray, cohort: np.ndarray, top_n: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the ``top_n`` largest rows of ``x @ cohort.T`` (both inputs unit-norm).

    ``top_n`` is clipped to the cohort size. Returns two float64 vectors of length ``len(x)``.
    """
    if top_n < 1:
        raise InputError(f"AS-norm top_n must be >= 1, got {top_n}")
    if block < 1:
        raise InputError(f"AS-norm block must be >= 1, got {block}")
    n = min(top_n, cohort.shape[0])
    mu = np.empty(len(x), dtype=np.float64)
    sd = np.empty(len(x), dtype=np.float64)
    ct = np.ascontiguousarray(cohort.T)
    for s in range(0, len(x), block):
        sims = x[s:s + block] @ ct  # [block, cohort]
        if n < sims.shape[1]:
            sims = np.partition(sims, sims.shape[1] - n, axis=1)[:, -n:]
        mu[s:s + block] = sims.mean(axis=1)
        sd[s:s + block] = sims.std(axis=1)
    return mu, sd


def asnorm_trials(emb: tuple[list[str], np.ndarray], enroll_ids: Sequence[str], test_ids: Sequence[str],
                  cohort: np.ndarray, top_n: int = 300, mean: np.ndarray | None = None,
                  scale: np.ndarray | None = None, test_emb: tuple[list[str], np.ndarray] | None = None,
                  source: str = "the embeddings", block: int = 4096, eps: float = 1e-10,
                  cohort_groups: np.ndarray | None = None) -> np.ndarray:
    """AS-norm score of each trial (see the module doc).

    ``mean``/``scale`` are applied to the trial embeddings and to the cohort alike before
    length normalisation, as in :func:`sslspk.scoring.cosine.score_trials`. With
    ``cohort_groups`` (an integer label per cohort row, e.g. its speaker), the cohort is the
    length-normalised mean of each group, taken after that normalisation. Only the
    embeddings that occur in the trial list get cohort statistics.
    """
    cohort = np.asarray(cohort)
    if cohort.ndim != 2 or cohort.shape[0] == 0:
        raise InputError(f"AS-norm cohort must be a non-empty [N, D] matrix, got shape {cohort.shape}")
    if cohort.shape[1] != emb[1].shape[1]:
        raise InputError(f"cohort dim {cohort.shape[1]} != embedding dim {emb[1].shape[1]}")
    e_rows, t_rows = trial_rows(emb, enroll_ids, test_ids, test_emb, source)
    coh = normalise_embeddings(cohort, mean, scale)
    if cohort_groups is not None:
        coh = l2_normalize(group_means(coh, cohort_groups))
    e_keep, e_inv = np.unique(e_rows, return_inverse=True)
    e_all = normalise_embeddings(emb[1][e_keep], mean, scale)
    if test_emb is None:  # one table: stats of each distinct embedding once for both sides
        t_keep, t_inv = np.unique(t_rows, return_inverse=True)
        both, inv = np.unique(np.r_[e_keep, t_keep], return_inverse=True)
        mat = normalise_embeddings(emb[1][both], mean, scale)
        mu, sd = cohort_stats(mat, coh, top_n, block)
        e_pos, t_pos = inv[:len(e_keep)], inv[len(e_keep):]
        e_mu, e_sd, t_mu, t_sd = mu[e_pos], sd[e_pos], mu[t_pos], sd[t_pos]
        t_all = mat[t_pos]
    else:
        t_keep, t_inv = np.unique(t_rows, return_inverse=True)
        t_all = normalise_embeddings(test_emb[1][t_keep], mean, scale)
        e_mu, e_sd = cohort_stats(e_all, coh, top_n, block)
        t_mu, t_sd = cohort_stats(t_all, coh, top_n, block)
    raw = paired_dot(e_all, t_all, e_inv, t_inv)
    return 0.5 * ((raw - e_mu[e_inv]) / np.maximum(e_sd[e_inv], eps)
                  + (raw - t_mu[t_inv]) / np.maximum(t_sd[t_inv], eps))
