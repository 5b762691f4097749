"""Audio sources for augmentation (noise, music, babble speech, RIRs) named by a data dir or a list file.

A source is either a Kaldi-style data dir (``wav.scp``, optionally ``segments``) or a plain
text file with one audio path (or ``cmd |`` pipe) per line (``#`` comments and blank lines
ignored). Relative paths, of the source and of entries in a list file, are relative to the
current directory (the recipe dir), as in Kaldi. Audio is decoded lazily on first use and
cached in memory up to ``cache_mb`` (least recently used dropped first); the cache may be used by
several threads at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sslspk.data.audio import AudioError, load_audio
from sslspk.utils.config import ConfigError

_CACHE_LOCK = threading.Lock()   # guards every source's cache bookkeeping (not the decoding)


class SourceError(ConfigError):
    """A missing, empty or unreadable augmentation source; the message names the source."""


class AudioSource:
    """A list of audio recordings ``(id, entry, start, end)`` with a lazily filled decode cache."""

    def __init__(self, path: str | Path, sample_rate: int, name: str = "source", cache_mb: float = 512.0):
        self.path = str(path)
        self.name = name
        self.sample_rate = sample_rate
        self.cache_bytes = int(cache_mb * 2 ** 20)
        self.items = self._list(Path(path))
        if not self.items:
            raise SourceError(f"augment.{name}: source {self.path!r} lists no audio")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached = 0

    def _list(self, p: Path) -> list[tuple[str, str, float, float | None]]:
        where = f"augment.{self.name}: source {self.path!r}"
        if p.is_dir():
            if not (p / "wav.scp").is_file():
                raise SourceError(f"{where}: directory without wav.scp (expected a Kaldi data dir or a list file)")
            from sslspk.data.tables import TO_THE_END
            from sslspk.utils.fileio import FormatError, read_kv

            try:
                wav = read_kv(p / "wav.scp")
                if not (p / "segments").is_file():
                    return [(k, v, 0.0, None) for k, v in sorted(wav.items())]
                out = []
                for k, v in sorted(read_kv(p / "segments").items()):
                    rec, start, end = v.split()
                    out.append((k, wav[rec], float(start), None if float(end) == TO_THE_END else float(end)))
                return out
            except (FormatError, ValueError, KeyError, OSError) as e:
                raise SourceError(f"{where}: {e}") from e
        if p.is_file():
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
            entries = [ln for ln in lines if ln and not ln.startswith("#")]
            return [(f"{i:06d}", e, 0.0, None) for i, e in enumerate(entries)]
        raise SourceError(f"{where} not found (expected a Kaldi data dir with wav.scp or a list file of "
                          f"audio paths; relative paths are relative to {Path.cwd()})")

    def __len__(self) -> int:
        return len(self.items)

    def id(self, index: int) -> str:
        """Id of recording ``index`` (its ``wav.scp`` key, or the list line number)."""
        return self.items[index][0]

    def load(self, index: int) -> np.ndarray:
        """Samples (float32, mono, ``sample_rate``) of recording ``index``, decoded once and cached."""
        with _CACHE_LOCK:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
        key, entry, start, end = self.items[index]
        try:
            wav = load_audio(entry, self.sample_rate, start, end).astype(np.float32, copy=False)
        except AudioError as e:
            raise SourceError(f"augment.{self.name}: source {self.path!r}, {key!r}: {e}") from e
        with _CACHE_LOCK:
            if index not in self._cache:   # another thread may have decoded it meanwhile
                self._cache[index] = wav
                self._cached += wav.nbytes
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
        return wav

    def segment(self, index: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``length``-sample crop of recording ``index``, looped (from a random offset) if shorter."""
        wav = self.load(index)
        n = len(wav)
        if n >= length:
            start = int(rng.integers(0, n - length + 1))
            return wav[start:start + length]
        start = int(rng.integers(0, n))
        reps = -(-(start + length) // n)
        return np.tile(wav, reps)[start:start + length]
