"""Embeddings as Kaldi ``ark``/``scp`` (float vectors, written with kaldiio).

Writes are atomic: the ark goes to a temp name and the scp (which points into the final
ark path) is written only after the ark is complete and renamed, so an existing scp
always means a finished ark.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from sslspk.utils.fileio import FormatError, atomic_write, iter_lines


def write_embeddings(ark: str | os.PathLike, scp: str | os.PathLike,
                     items: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write ``(key, vector)`` pairs to ``ark`` and an index ``scp``; returns the count written."""
    import kaldiio

    ark, scp = Path(ark), Path(scp)
    ark.parent.mkdir(parents=True, exist_ok=True)
    tmp = ark.with_name(f".{ark.name}.tmp")
    lines: list[str] = []
    with open(tmp, "wb") as f:
        for key, vec in items:
            if any(c.isspace() for c in key) or not key:
                raise ValueError(f"embedding key {key!r} is empty or contains whitespace")
            pos = f.tell()
            kaldiio.save_ark(f, {key: np.asarray(vec, dtype=np.float32)})
            lines.append(f"{key} {ark}:{pos + len(key.encode()) + 1}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, ark)
    with atomic_write(scp) as f:
        f.writelines(lines)
    return len(lines)


def iter_scp(scp: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(key, vector)`` from an scp, in file order; errors name the scp line."""
    import kaldiio

    for n, line in iter_lines(scp):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise FormatError(scp, n, f"expected '<key> <ark>:<offset>', got {line!r}")
        try:
            vec = kaldiio.load_mat(parts[1])
        except Exception as e:
            raise FormatError(scp, n, f"cannot read embedding {parts[0]!r} from {parts[1]!r}: {e}") from e
        yield parts[0], np.asarray(vec, dtype=np.float32).reshape(-1)


def load_embeddings(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """All embeddings of an scp as ``(keys, matrix [N, D])``."""
    keys: list[str] = []
    vecs: list[np.ndarray] = []
    for k, v in iter_scp(scp):
        if vecs and v.shape != vecs[0].shape:
            raise FormatError(scp, len(keys) + 1, f"embedding {k!r} has dim {v.size}, expected {vecs[0].size}")
        keys.append(k)
        vecs.append(v)
    if not keys:
        raise FormatError(scp, None, "no embeddings")
    return keys, np.stack(vecs)




def speaker_means(keys: list[str], mat: np.ndarray, utt2spk: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """Mean of the length-normalised embeddings of each speaker (Kaldi ``spk_xvector`` style)."""
    missing = [k for k in keys if k not in utt2spk]
    if missing:
        raise KeyError(f"{len(missing)} utterance(s) have no speaker in utt2spk: {', '.join(missing[:5])}")
    spks = sorted({utt2spk[k] for k in keys})
    index = {s: i for i, s in enumerate(spks)}
    rows = np.array([index[utt2spk[k]] for k in keys])
    normed = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    sums = np.zeros((len(spks), mat.shape[1]), dtype=np.float64)
    np.add.at(sums, rows, normed)
    return spks, (sums / np.bincount(rows)[:, None]).astype(np.float32)
