"""Streaming load of an embeddings scp into one preallocated float32 matrix.

:func:`sslspk.data.embeddings.load_embeddings` stacks a list of vectors (twice the memory
at its peak); this reader counts the scp lines first, allocates ``[N, D]`` float32 once and
fills it row by row, keeping the ark files open between reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sslspk.utils.fileio import FormatError, iter_lines


def count_lines(path: str | os.PathLike) -> int:
    """Number of lines of a text file (read in binary blocks)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def load_embedding_matrix(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(keys, matrix [N, D] float32)`` of an scp, read into a preallocated matrix.

    Errors (:class:`FormatError`) name the scp line: missing file, malformed line, unreadable
    entry, a vector whose dimension differs from the first, duplicate keys, an empty scp.
    """
    import kaldiio

    scp = Path(scp)
    if not scp.is_file():
        raise FileNotFoundError(f"{scp}: embeddings scp not found")
    n = count_lines(scp)
    if n == 0:
        raise FormatError(scp, None, "no embeddings")
    keys: list[str] = []
    seen: dict[str, int] = {}
    mat: np.ndarray | None = None
    fds: dict = {}
    try:
        for lineno, line in iter_lines(scp):
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise FormatError(scp, lineno, f"expected '<key> <ark>:<offset>', got {line!r}")
            key, entry = parts[0], parts[1].strip()
            if key in seen:
                raise FormatError(scp, lineno, f"duplicate key {key!r} (first on line {seen[key]})")
            try:
                vec = np.asarray(kaldiio.load_mat(entry, fd_dict=fds), dtype=np.float32).reshape(-1)
            except Exception as e:
                raise FormatError(scp, lineno, f"cannot read embedding {key!r} from {entry!r}: {e}") from e
            if mat is None:
                if vec.size == 0:
                    raise FormatError(scp, lineno, f"embedding {key!r} is empty")
                mat = np.empty((n, vec.size), dtype=np.float32)
            elif vec.size != mat.shape[1]:
                raise FormatError(scp, lineno, f"embedding {key!r} has dim {vec.size}, expected {mat.shape[1]}")
            mat[len(keys)] = vec
            seen[key] = lineno
            keys.append(key)
    finally:
        for fd in fds.values():
            fd.close()
    assert mat is not None and len(keys) == n
    return keys, mat


def l2_normalize_(mat: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Scale each row of ``mat`` to unit L2 norm in place (in batches; zero rows stay zero); returns ``mat``."""
    for b in range(0, mat.shape[0], batch):
        rows = mat[b:b + batch]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        rows /= norms
    return mat
