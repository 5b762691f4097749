"""Atomic writes and Kaldi-style ``key value`` table I/O with errors that name file and line."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from sslspk.utils.errors import InputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class FormatError(InputError):
    """A malformed input file; the message names the file and (1-based) line."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[TextIO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    A killed process therefore never leaves a half-written ``path``: either the old
    file (or none) or the complete new one. A failed write (e.g. a full disk, a read-only folder)
    removes the temp file and raises an ``OSError`` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:   # e.g. a read-only folder: name the file, not the temp file
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):   # e.g. a full disk: name the file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block.

    While another process holds it (e.g. a job of an earlier, killed run that is still going), say
    which one and wait for it; with ``wait`` false, raise :class:`~sslspk.utils.errors.BusyError`
    naming it instead. The lock goes with the process that holds it, ``kill -9`` included.
    """
    import fcntl
    import socket
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                from sslspk.utils.errors import BusyError

                raise BusyError(f"{what}: {holder} holds its lock {path}: wait for it to finish or stop it")
            print(f"{what}: waiting for {holder} (a job of an earlier run still going?) to finish", file=sys.stderr,
                  flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.truncate(0)
        f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same path once symlinks and ``..`` are resolved,
    or hard links of one existing file."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:   # one of them does not exist (yet): not the same file
        return False


def check_outputs_are_not_inputs(inputs: Iterable[str | os.PathLike | None],
                                 outputs: Iterable[str | os.PathLike | None]) -> None:
    """InputError naming both paths when an output is also an input (the same path after symlinks,
    or a hard link of it) or two outputs are one file: writing it would destroy what is read.

    Every command that reads and writes files calls this before any work; ``None`` entries (options
    not given) are ignored. A directory is compared as a path (pass the files read inside it too).
    """
    ins = [str(p) for p in inputs if p is not None]
    outs = [str(p) for p in outputs if p is not None]
    for k, out in enumerate(outs):
        for inp in ins:
            if _same_file(out, inp):
                same = "" if out == inp else f" ({inp} as an input)"
                raise InputError(f"output {out} is also an input{same}: writing it would destroy what is read; "
                                 "choose another output path")
        for other in outs[:k]:
            if _same_file(out, other):
                raise InputError(f"outputs {other} and {out} are the same file: choose two different paths")


def dir_and_files(d: str | os.PathLike | None, names: Iterable[str]) -> list[str]:
    """``d`` and the files ``names`` in it (for :func:`check_outputs_are_not_inputs`); empty when ``d`` is None."""
    return [] if d is None else [str(d), *(os.path.join(d, n) for n in names)]


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the newline (``\\r\\n`` tolerated).

    A blank line, bytes that are not UTF-8 and a byte-order mark (which would become part of the
    first key) are a :class:`FormatError` naming the file and line.
    """
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as e:
                raise FormatError(path, n, f"not UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1} "
                                           "(convert the file, e.g. iconv -f latin1 -t utf-8)") from None
            if n == 1 and line.startswith("\ufeff"):
                raise FormatError(path, n, "starts with a byte-order mark (U+FEFF, as some Windows editors "
                                           "write); remove it, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE")
            if not line.strip():
                raise FormatError(path, n, "empty line")
            yield n, line


def read_table(path: str | os.PathLike, min_fields: int = 2, max_fields: int | None = None,
               unique: bool = True) -> dict[str, list[str]]:
    """Read a Kaldi table ``key field1 field2 ...`` into ``{key: [fields]}``.

    Raises :class:`FormatError` naming the file and line on a blank line, a wrong
    number of fields or (with ``unique``) a duplicate key.
    """
    table: dict[str, list[str]] = {}
    for n, line in iter_lines(path):
        fields = line.split()
        if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
            want = (f"{min_fields}" if max_fields == min_fields else f"at least {min_fields}" if max_fields is None
                    else f"{min_fields}-{max_fields}")
            raise FormatError(path, n, f"expected {want} fields, got {len(fields)}: {line!r}")
        key = fields[0]
        if unique and key in table:
            raise FormatError(path, n, f"duplicate key {key!r}")
        table[key] = fields[1:]
    return table


def read_kv(path: str | os.PathLike) -> dict[str, str]:
    """Read ``key value`` lines where the value is the rest of the line (e.g. ``wav.scp`` pipes)."""
    table: dict[str, str] = {}
    for n, line in iter_lines(path):
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise FormatError(path, n, f"expected '<key> <value>', got {line!r}")
        if parts[0] in table:
            raise FormatError(path, n, f"duplicate key {parts[0]!r}")
        table[parts[0]] = parts[1]
    return table


def files_digest(paths: Iterable[str | os.PathLike]) -> str:
    """SHA-256 naming the contents of some files: one line per file, its SHA-256 or ``-`` when it is
    absent, hashed again (``sha256sum`` of each file gives the same lines to shell tools)."""
    import hashlib

    lines = []
    for path in map(Path, paths):
        if not path.is_file():
            lines.append("-")
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        lines.append(h.hexdigest())
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def write_kv(path: str | os.PathLike, items: Iterable[tuple[str, str]] | dict[str, str], sort: bool = True) -> None:
    """Atomically write ``key value`` lines (sorted by key unless ``sort=False``)."""
    pairs = list(items.items()) if isinstance(items, dict) else list(items)
    if sort:
        pairs.sort(key=lambda kv: kv[0])
    with atomic_write(path) as f:
        for k, v in pairs:
            f.write(f"{k} {v}\n")
