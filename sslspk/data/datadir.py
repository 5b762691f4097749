"""Kaldi data directories: the in-memory :class:`DataDir` (load/save, subsets, audio of an utt).

A data directory holds ``wav.scp`` (``<rec-id> <path>`` or ``<rec-id> <cmd ... |>``),
``utt2spk``, a derived ``spk2utt`` and optionally ``segments``
(``<utt> <rec-id> <start> <end>``, seconds; ``wav.scp`` is then keyed by recording),
``utt2dur``, ``utt2num_samples`` and a ``trials`` list. Tables are sorted by key in C-locale byte order (Python's
``str`` order, which equals UTF-8 byte order) and have unique keys.

Validation: :mod:`sslspk.data.validate`; fix, split, combine and subset: :mod:`sslspk.data.ops`;
utt2dur: :mod:`sslspk.data.durations`; table parsing: :mod:`sslspk.data.tables`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

import numpy as np

from sslspk.data import audio
from sslspk.data.tables import TABLE_PARSERS, TO_THE_END, Segment, fmt_float, read_table, trial_ids, write_core_tables
from sslspk.data.trials import TRIAL_FORMATS
from sslspk.utils.errors import InputError
from sslspk.utils.fileio import atomic_write, iter_lines, write_kv

MAX_LISTED = 10  # problems of one kind listed individually before summarising
T = TypeVar("T")


class DataDirError(InputError):
    """An inconsistent or unusable data directory (or a request it cannot satisfy)."""


def listed(items: Sequence[str], limit: int = MAX_LISTED) -> list[str]:
    """The first ``limit`` items plus a summary line for the rest."""
    more = [f"... and {len(items) - limit} more like the above"] if len(items) > limit else []
    return list(items[:limit]) + more


@dataclass
class DataDir:
    """An in-memory Kaldi data directory; tables are ``{key: value}`` dicts (saved sorted)."""

    utt2spk: dict[str, str]
    wav_scp: dict[str, str]
    segments: dict[str, Segment] | None = None
    utt2dur: dict[str, float] | None = None
    utt2num_samples: dict[str, int] | None = None
    trials: list[str] | None = None

    @classmethod
    def load(cls, path: str | Path, check_sorted: bool = True) -> DataDir:
        """Read a data dir; FormatError (naming file:line) on malformed, duplicate or (if checked) unsorted lines.

        ``spk2utt`` is not read (it is derived from ``utt2spk``); consistency between files
        is not checked here (see :func:`validate`).
        """
        d = Path(path)
        if not d.is_dir():
            raise DataDirError(f"{d}: not a directory")
        for name in ("utt2spk", "wav.scp"):
            if not (d / name).is_file():
                raise DataDirError(f"{d / name}: missing (required file)")
        tables = {name: read_table(d / name, check_sorted)[0] for name in TABLE_PARSERS if (d / name).is_file()}
        trials = [line for _, line in iter_lines(d / "trials")] if (d / "trials").is_file() else None
        return cls(
            utt2spk=tables["utt2spk"],
            wav_scp=tables["wav.scp"],
            segments=tables.get("segments"),
            utt2dur=tables.get("utt2dur"),
            utt2num_samples=tables.get("utt2num_samples"),
            trials=trials,
        )

    def save(self, path: str | Path) -> None:
        """Write every table sorted (each file atomically) plus ``spk2utt``; remove stale optional files."""
        d = Path(path)
        write_core_tables(d, self.wav_scp, self.utt2spk)
        tables: dict[str, dict[str, str] | None] = {
            "segments": None if self.segments is None else {
                u: f"{s.recording} {fmt_float(s.start)} {fmt_float(TO_THE_END if s.end is None else s.end)}"
                for u, s in self.segments.items()},
            "utt2dur": None if self.utt2dur is None else {u: fmt_float(v) for u, v in self.utt2dur.items()},
            "utt2num_samples": None if self.utt2num_samples is None else {
                u: str(v) for u, v in self.utt2num_samples.items()},
        }
        for name, table in tables.items():
            if table is not None:
                write_kv(d / name, table)
            else:
                (d / name).unlink(missing_ok=True)
        if self.trials is not None:
            with atomic_write(d / "trials") as f:
                f.writelines(line + "\n" for line in self.trials)
        else:
            (d / "trials").unlink(missing_ok=True)

    @property
    def utts(self) -> list[str]:
        """Utterance ids (keys of ``utt2spk``), sorted."""
        return sorted(self.utt2spk)

    @property
    def spks(self) -> list[str]:
        """Speaker ids, sorted."""
        return sorted(set(self.utt2spk.values()))

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """``{speaker: sorted utts}`` in sorted speaker order, derived from ``utt2spk``."""
        out: dict[str, list[str]] = {}
        for utt in self.utts:
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return dict(sorted(out.items()))

    def recording_of(self, utt: str) -> str:
        """The ``wav.scp`` key of ``utt`` (its recording with ``segments``, else the utt itself)."""
        if self.segments is None:
            return utt
        try:
            return self.segments[utt].recording
        except KeyError:
            raise DataDirError(f"utt {utt!r} has no entry in segments") from None

    def audio_entry(self, utt: str) -> tuple[str, float, float | None]:
        """``(wav.scp entry, start, end)`` of ``utt``; whole recordings give ``(entry, 0.0, None)``."""
        rec = self.recording_of(utt)
        try:
            entry = self.wav_scp[rec]
        except KeyError:
            raise DataDirError(f"utt {utt!r}: recording {rec!r} has no entry in wav.scp") from None
        if self.segments is None:
            return entry, 0.0, None
        seg = self.segments[utt]
        return entry, seg.start, seg.end

    def load_audio(self, utt: str, sample_rate: int | None = None, channel: str = "mix") -> np.ndarray:
        """Mono float32 samples of ``utt`` at ``sample_rate`` (native rate if None); AudioError names the utt,
        also for audio with no speech (:func:`sslspk.data.audio.check_speech`)."""
        entry, start, end = self.audio_entry(utt)
        try:
            wav, sr = audio.read_audio(entry, start, end, channel)
            audio.check_speech(wav, sr, repr(entry) + (f" [{start}, {end})" if start or end else ""))
            return wav if sample_rate is None else audio.resample(wav, sr, sample_rate)
        except audio.AudioError as e:
            raise audio.AudioError(f"utt {utt!r}: {e}") from e

    def subset(self, utts: Iterable[str], keep_trials: bool = True) -> DataDir:
        """A copy restricted to ``utts`` and the recordings they use.

        With ``keep_trials``, trial lines whose two ids are both kept utts are kept.
        """
        keep = set(utts)
        unknown = keep.difference(self.utt2spk)
        if unknown:
            raise DataDirError(f"{len(unknown)} utts not in utt2spk, e.g. {sorted(unknown)[:5]}")

        def pick(table: dict[str, T] | None) -> dict[str, T] | None:
            return None if table is None else {k: v for k, v in sorted(table.items()) if k in keep}

        segments = pick(self.segments)
        recs = keep if segments is None else {s.recording for s in segments.values()}
        trials = None
        if keep_trials and self.trials is not None:
            trials = []
            for i, line in enumerate(self.trials, 1):
                ids = trial_ids(line)
                if ids is None:
                    raise DataDirError(f"trials line {i}: expected {TRIAL_FORMATS}, got {line!r}")
                if set(ids) <= keep:
                    trials.append(line)
        return DataDir(
            utt2spk=pick(self.utt2spk) or {},
            wav_scp={r: e for r, e in sorted(self.wav_scp.items()) if r in recs},
            segments=segments,
            utt2dur=pick(self.utt2dur),
            utt2num_samples=pick(self.utt2num_samples),
            trials=trials,
        )

    def _used_recordings(self) -> dict[str, str]:
        """``wav.scp`` entries referenced by some utt (all of them without segments)."""
        if self.segments is None:
            return {r: self.wav_scp[r] for r in self.utt2spk if r in self.wav_scp}
        recs = {s.recording for s in self.segments.values()}
        return {r: e for r, e in self.wav_scp.items() if r in recs}
