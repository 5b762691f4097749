"""The authors' test protocol: whole-utterance and segment embeddings, scored together.

theolepage/wavlm_ssl_sv:SpeakerNet.py ``evaluateFromList``: each utterance has a whole-utterance
embedding and the embeddings of evenly spaced windows (``segments.scp`` of
``steps/extract_embeddings.sh --segments N``); every embedding is length-normalised, with no mean
subtracted (``ref_feat_list_mean = 0``), and a trial's score is the mean of the whole-utterance
cosine and of the mean cosine over all enrollment x test window pairs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sslspk.data.embeddings import MIN_NORM, iter_scp_arrays, l2_normalize, zero_norm_rows
from sslspk.scoring.cosine import paired_dot, trial_rows
from sslspk.utils.fileio import FormatError


def load_segment_means(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(keys, [N, D] float64)``: per utterance of ``scp`` (``[num_segments, D]`` matrices), the mean of
    its length-normalised segment embeddings (the mean cosine over segment pairs is the dot product of
    two such means). Errors name the scp line: unreadable entry, a matrix whose shape differs from the
    first, NaN/inf values, a segment embedding of zero norm, duplicate keys, no entries."""
    scp = Path(scp)
    if not scp.is_file():
        raise FileNotFoundError(f"{scp}: segment embeddings scp not found")
    keys: list[str] = []
    rows: list[np.ndarray] = []
    shape: tuple[int, ...] | None = None
    for lineno, key, mat in iter_scp_arrays(scp, "segment embeddings", np.float64):
        if mat.ndim != 2 or mat.size == 0 or (shape is not None and mat.shape != shape):
            want = "a non-empty [segments, dim] matrix" if shape is None else f"shape {shape}"
            raise FormatError(scp, lineno, f"segment embeddings {key!r} have shape {mat.shape}, expected {want}")
        if not np.isfinite(mat).all():
            raise FormatError(scp, lineno, f"segment embeddings {key!r} have NaN/inf values")
        zero = zero_norm_rows(mat)
        if zero.size:
            raise FormatError(scp, lineno, f"segment embeddings {key!r}: segment {int(zero[0])} has zero norm "
                                           f"(below {MIN_NORM:g}): no direction to score")
        shape = mat.shape
        keys.append(key)
        rows.append(l2_normalize(mat).mean(axis=0))
    if not keys:
        raise FormatError(scp, None, "no segment embeddings")
    return keys, np.stack(rows)


def full_and_segments_scores(full: tuple[list[str], np.ndarray], segment_means: tuple[list[str], np.ndarray],
                             enroll_ids: Sequence[str], test_ids: Sequence[str],
                             source: str = "the embeddings") -> np.ndarray:
    """Score of each trial ``(enroll_ids[i], test_ids[i])``: the mean of the cosine of the
    whole-utterance embeddings ``full`` (``(keys, [N, D])``) and of the mean cosine over all pairs of
    segment embeddings, given as ``segment_means`` from :func:`load_segment_means`. No mean subtraction."""
    e_rows, t_rows = trial_rows(full, enroll_ids, test_ids, source=source)
    unit = l2_normalize(np.asarray(full[1], dtype=np.float64))
    full_scores = paired_dot(unit, unit, e_rows, t_rows)
    e_rows, t_rows = trial_rows(segment_means, enroll_ids, test_ids, source=f"{source} (segments)")
    return (full_scores + paired_dot(segment_means[1], segment_means[1], e_rows, t_rows)) / 2
