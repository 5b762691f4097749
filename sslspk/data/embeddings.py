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

from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import FormatError, atomic_write, iter_lines

#: an embedding whose L2 norm is below this has no direction (:func:`l2_normalize` divides it by this):
#: its cosine with anything would be 0, a score that says nothing. Every reader rejects it.
MIN_NORM = 1e-12


def zero_norm_rows(mat: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``mat`` ``[N, D]`` whose L2 norm is below :data:`MIN_NORM`."""
    return np.flatnonzero(np.linalg.norm(np.asarray(mat, dtype=np.float64), axis=1) < MIN_NORM)


def check_same_dim(dims: dict[str, int]) -> None:
    """InputError when the embedding sets named by the keys of ``dims`` (their dimension) differ in
    dimension: embeddings of different models cannot be compared."""
    if len(set(dims.values())) > 1:
        raise InputError("embeddings of different dimensions cannot be compared (from different models?): "
                         + ", ".join(f"{name} has dim {d}" for name, d in dims.items()))


def write_embeddings(ark: str | os.PathLike, scp: str | os.PathLike,
                     items: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write ``(key, vector)`` pairs to ``ark`` and an index ``scp``; returns the count written."""
    import kaldiio

    ark, scp = Path(ark), Path(scp)
    ark.parent.mkdir(parents=True, exist_ok=True)
    tmp = ark.with_name(f".{ark.name}.tmp")
    lines: list[str] = []
    try:
        with open(tmp, "wb") as f:
            for key, vec in items:
                if any(c.isspace() for c in key) or not key:
                    raise ValueError(f"embedding key {key!r} is empty or contains whitespace")
                pos = f.tell()
                kaldiio.save_ark(f, {key: np.asarray(vec, dtype=np.float32)})
                lines.append(f"{key} {ark}:{pos + len(key.encode()) + 1}\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:   # nothing half-written is left; a full disk names the ark
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):
            raise OSError(e.errno, e.strerror, str(ark)) from e
        raise
    scp.unlink(missing_ok=True)   # killed between the two renames: no scp, so the job counts as unfinished
    os.replace(tmp, ark)
    with atomic_write(scp) as f:
        f.writelines(lines)
    return len(lines)


def count_lines(path: str | os.PathLike) -> int:
    """Number of lines of a text file (read in binary blocks)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def iter_scp_arrays(scp: Path, what: str, dtype: type = np.float32) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(line number, key, array)`` of each entry of an scp of Kaldi arrays, read with one open file per
    ark. :class:`FormatError` names the scp line of a malformed line, a duplicate key or an unreadable
    entry (``what``: the kind of array, for the messages)."""
    import kaldiio

    seen: dict[str, int] = {}
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
                arr = np.asarray(kaldiio.load_mat(entry, fd_dict=fds), dtype=dtype)
            except Exception as e:
                raise FormatError(scp, lineno, f"cannot read {what} {key!r} from {entry!r}: {e}") from e
            seen[key] = lineno
            yield lineno, key, arr
    finally:
        for fd in fds.values():
            fd.close()


def load_embeddings(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(keys, matrix [N, D] float32)`` of an scp, streamed into one preallocated matrix
    (no list of vectors: the peak memory is the matrix itself, also at 1M embeddings).

    Errors (:class:`FormatError`) name the scp line: missing file, malformed line, unreadable
    entry, a vector whose dimension differs from the first, with NaN/inf values or of zero norm,
    duplicate keys, an empty scp.
    """
    scp = Path(scp)
    if not scp.is_file():
        raise FileNotFoundError(f"{scp}: embeddings scp not found")
    n = count_lines(scp)
    if n == 0:
        raise FormatError(scp, None, "no embeddings")
    keys: list[str] = []
    mat: np.ndarray | None = None
    for lineno, key, vec in iter_scp_arrays(scp, "embedding"):
        vec = vec.reshape(-1)
        if mat is None:
            if vec.size == 0:
                raise FormatError(scp, lineno, f"embedding {key!r} is empty")
            mat = np.empty((n, vec.size), dtype=np.float32)
        elif vec.size != mat.shape[1]:
            raise FormatError(scp, lineno, f"embedding {key!r} has dim {vec.size}, expected {mat.shape[1]}")
        mat[len(keys)] = vec
        keys.append(key)
    assert mat is not None and len(keys) == n
    bad = np.flatnonzero(~np.isfinite(mat).all(axis=1))   # row i is line i + 1
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size - 1} more embedding(s) too)" if bad.size > 1 else ""
        raise FormatError(scp, i + 1, f"embedding {keys[i]!r} has {int((~np.isfinite(mat[i])).sum())} NaN/inf "
                                      f"value(s){more}")
    bad = zero_norm_rows(mat)
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size - 1} more embedding(s) too)" if bad.size > 1 else ""
        raise FormatError(scp, i + 1, f"embedding {keys[i]!r} has zero norm (below {MIN_NORM:g}): no direction to "
                                      f"score{more}")
    return keys, mat


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (a copy; rows of norm below ``eps`` are divided by ``eps``)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def l2_normalize_(mat: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Scale each row of ``mat`` to unit L2 norm in place (in batches; zero rows stay zero); returns ``mat``."""
    for b in range(0, mat.shape[0], batch):
        rows = mat[b:b + batch]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        rows /= norms
    return mat


def standardize_(mat: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Subtract each column's mean and divide by its standard deviation (over all rows) in place, in
    batches (float64 sums); constant columns become 0. Returns ``mat``."""
    n = mat.shape[0]
    s1 = np.zeros(mat.shape[1])
    s2 = np.zeros(mat.shape[1])
    for b in range(0, n, batch):
        rows = mat[b:b + batch].astype(np.float64)
        s1 += rows.sum(axis=0)
        s2 += np.square(rows).sum(axis=0)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - np.square(mean), 0.0))
    scale = np.where(std > 1e-12, 1.0 / np.maximum(std, 1e-12), 0.0)
    for b in range(0, n, batch):
        mat[b:b + batch] = (mat[b:b + batch] - mean) * scale
    return mat


def group_sums(x: np.ndarray, groups: np.ndarray, num_groups: int,
               batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the rows of ``x`` ``[N, D]`` in each group (``groups``: integers in ``[0, num_groups)``),
    float64 ``[num_groups, D]`` added in row order, ``batch`` rows at a time (also at 1M rows), and
    the group sizes (float64)."""
    from scipy import sparse

    groups = np.asarray(groups)
    if groups.shape != (len(x),):
        raise ValueError(f"{groups.size} group labels for {len(x)} rows")
    sums = np.zeros((num_groups, x.shape[1]), dtype=np.float64)
    for b in range(0, len(x), batch):
        g = groups[b:b + batch]
        onehot = sparse.csr_matrix((np.ones(g.size), (g, np.arange(g.size))), shape=(num_groups, g.size))
        sums += onehot @ x[b:b + batch].astype(np.float64)
    return sums, np.bincount(groups, minlength=num_groups).astype(np.float64)


def group_means(x: np.ndarray, groups: np.ndarray, num_groups: int | None = None, *,
                normalize_rows: bool = False, batch: int = 65536) -> np.ndarray:
    """Mean row of each group (float64 ``[num_groups, D]``, zeros for an empty group), of the
    length-normalised rows with ``normalize_rows``. ``groups``: integers in ``[0, num_groups)``,
    or any labels (``num_groups`` None): the groups are then the sorted distinct labels."""
    if num_groups is None:
        labels, groups = np.unique(np.asarray(groups), return_inverse=True)
        num_groups = len(labels)
    sums, counts = group_sums(l2_normalize(x) if normalize_rows else x, groups, num_groups, batch)
    return sums / np.maximum(counts, 1)[:, None]


def speaker_means(keys: list[str], mat: np.ndarray, utt2spk: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """Mean of the length-normalised embeddings of each speaker (Kaldi ``spk_xvector`` style)."""
    missing = [k for k in keys if k not in utt2spk]
    if missing:
        raise MissingIdError(f"{len(missing)} utterance(s) have no speaker in utt2spk: {', '.join(missing[:5])}")
    spks = sorted({utt2spk[k] for k in keys})
    index = {s: i for i, s in enumerate(spks)}
    rows = np.array([index[utt2spk[k]] for k in keys])
    return spks, group_means(mat, rows, len(spks), normalize_rows=True).astype(np.float32)


def speaker_mean_embeddings_file(data_dir: str | os.PathLike, emb_scp: str | os.PathLike, out_ark: str | os.PathLike,
                                 out_scp: str | os.PathLike) -> int:
    """``speaker_mean_embeddings.py``: :func:`speaker_means` of ``emb_scp`` by ``data_dir``'s ``utt2spk``
    written to ``out_ark``/``out_scp`` (keys: speaker ids); prints and returns the number of speakers."""
    from sslspk.utils.fileio import check_outputs_are_not_inputs, read_kv

    utt2spk = Path(data_dir) / "utt2spk"
    check_outputs_are_not_inputs([emb_scp, utt2spk], [out_ark, out_scp])
    keys, mat = load_embeddings(emb_scp)
    spks, means = speaker_means(keys, mat, read_kv(utt2spk))
    n = write_embeddings(out_ark, out_scp, zip(spks, means))
    print(f"wrote {n} speaker embeddings to {out_scp}")
    return n
