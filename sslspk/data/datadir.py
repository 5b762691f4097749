"""Kaldi data directories: load/save, validate, fix, split, combine, subset and utt2dur.

A data directory holds ``wav.scp`` (``<rec-id> <path>`` or ``<rec-id> <cmd ... |>``),
``utt2spk``, a derived ``spk2utt`` and optionally ``segments``
(``<utt> <rec-id> <start> <end>``, seconds; ``wav.scp`` is then keyed by recording),
``utt2dur``, ``utt2num_samples`` and a ``trials`` list. Tables are sorted by key in C-locale byte order (Python's
``str`` order, which equals UTF-8 byte order) and have unique keys.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random as _random
import shutil
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence, TypeVar

import numpy as np

from sslspk.data import audio
from sslspk.data.trials import TRIAL_FORMATS, parse_trial_line, read_trials
from sslspk.utils.errors import InputError
from sslspk.utils.fileio import (
    FormatError,
    atomic_write,
    check_outputs_are_not_inputs,
    dir_and_files,
    iter_lines,
    write_kv,
)

log = logging.getLogger(__name__)

#: Optional files written by :meth:`DataDir.save` (stale copies are removed from the target).
OPTIONAL_FILES: tuple[str, ...] = ("segments", "utt2dur", "utt2num_samples", "trials")
#: Every file a :class:`DataDir` manages (backed up by :func:`fix_data_dir`).
MANAGED_FILES: tuple[str, ...] = ("wav.scp", "utt2spk", "spk2utt", *OPTIONAL_FILES)
#: a ``segments`` end time meaning "to the end of the recording" (Kaldi's convention)
TO_THE_END = -1.0
_MAX_LISTED = 10  # problems of one kind listed individually before summarising

T = TypeVar("T")


class DataDirError(InputError):
    """An inconsistent or unusable data directory (or a request it cannot satisfy)."""


class Segment(NamedTuple):
    """One ``segments`` line: ``[start, end)`` seconds of ``recording``; ``end`` None (written ``-1``, as
    Kaldi does) runs to the end of the recording."""

    recording: str
    start: float
    end: float | None


# ----------------------------------------------------------------------------- reading

def _read_entries(path: Path, check_sorted: bool) -> dict[str, tuple[int, str]]:
    """``{key: (line_number, rest_of_line)}``; FormatError on blank, duplicate, unsorted or value-less lines."""
    entries: dict[str, tuple[int, str]] = {}
    prev: str | None = None
    for n, line in iter_lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise FormatError(path, n, f"expected '<id> <value...>', got {line!r}")
        key, rest = parts[0], parts[1].strip()
        if key in entries:
            raise FormatError(path, n, f"duplicate id {key!r} (first on line {entries[key][0]})")
        if check_sorted and prev is not None and key < prev:
            raise FormatError(path, n, f"not sorted: {key!r} comes after {prev!r} "
                                       "(C-locale byte order); run utils/fix_data_dir.sh")
        entries[key] = (n, rest)
        prev = key
    return entries


def _fields(path: Path, n: int, rest: str, count: int) -> list[str]:
    fields = rest.split()
    if len(fields) != count:
        raise FormatError(path, n, f"expected {count + 1} fields, got {len(fields) + 1}")
    return fields


def _number(path: Path, n: int, text: str, what: str, cast: Callable[[str], T]) -> T:
    try:
        value = cast(text)
    except ValueError:
        raise FormatError(path, n, f"{what} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:  # type: ignore[arg-type]
        raise FormatError(path, n, f"{what} must be a finite non-negative number, got {text!r}")
    return value


def _parse_single(path: Path, n: int, rest: str) -> str:
    return _fields(path, n, rest, 1)[0]


def _parse_dur(path: Path, n: int, rest: str) -> float:
    value = _number(path, n, _parse_single(path, n, rest), "duration", float)
    if value <= 0:
        raise FormatError(path, n, f"duration must be positive, got {value}")
    return value


def _parse_num_samples(path: Path, n: int, rest: str) -> int:
    value = _number(path, n, _parse_single(path, n, rest), "number of samples", int)
    if value <= 0:
        raise FormatError(path, n, f"number of samples must be positive, got {value}")
    return value


def _parse_segment(path: Path, n: int, rest: str) -> Segment:
    rec, start_s, end_s = _fields(path, n, rest, 3)
    start = _number(path, n, start_s, "start time", float)
    with contextlib.suppress(ValueError):
        if float(end_s) == TO_THE_END:
            return Segment(rec, start, None)
    end = _number(path, n, end_s, "end time", float)
    if end <= start:
        raise FormatError(path, n, f"end time {end_s} is not after start time {start_s}")
    return Segment(rec, start, end)


def _parse_wav(path: Path, n: int, rest: str) -> str:
    if not audio.is_pipe(rest) and len(rest.split()) > 1:
        raise FormatError(path, n, f"expected '<id> <path>' or '<id> <command> |', got a path with whitespace "
                                   f"{rest!r} (ids and paths cannot contain spaces; a pipe ends with '|')")
    return rest


_PARSERS: dict[str, Callable[[Path, int, str], object]] = {
    "wav.scp": _parse_wav,
    "utt2spk": _parse_single,
    "segments": _parse_segment,
    "utt2dur": _parse_dur,
    "utt2num_samples": _parse_num_samples,
}


def _read_file(path: Path, check_sorted: bool = True) -> tuple[dict, dict[str, int]]:
    """Parse one table named in ``_PARSERS``: ``({key: value}, {key: line_number})``."""
    parse = _PARSERS[path.name]
    entries = _read_entries(path, check_sorted)
    return ({k: parse(path, n, rest) for k, (n, rest) in entries.items()},
            {k: n for k, (n, _) in entries.items()})


def _read_id_list(path: str | Path) -> list[str]:
    """First field of every line (an utt or speaker list; further fields ignored)."""
    return [line.split()[0] for _, line in iter_lines(path)]


def _trial_ids(line: str) -> tuple[str, str] | None:
    """The two ids of a trial line (any format :func:`~sslspk.data.trials.parse_trial_line` reads); None if none."""
    try:
        return parse_trial_line(line)[:2]
    except ValueError:
        return None


def _fmt_float(x: float) -> str:
    return repr(float(x))


def _parts(n: int, nj: int) -> list[tuple[int, int]]:
    """``nj`` contiguous ``[begin, end)`` ranges over ``n`` items; the first ``n % nj`` get one extra."""
    base, extra = divmod(n, nj)
    bounds = [0]
    for k in range(nj):
        bounds.append(bounds[-1] + base + (1 if k < extra else 0))
    return list(zip(bounds[:-1], bounds[1:]))


def _listed(items: Sequence[str], limit: int = _MAX_LISTED) -> list[str]:
    """The first ``limit`` items plus a summary line for the rest."""
    more = [f"... and {len(items) - limit} more like the above"] if len(items) > limit else []
    return list(items[:limit]) + more


# ----------------------------------------------------------------------------- DataDir

def write_core_tables(out: str | Path, wav_scp: dict[str, str], utt2spk: dict[str, str]) -> None:
    """Write ``wav.scp``, ``utt2spk`` and the derived ``spk2utt`` of ``out`` (sorted, each atomically).

    Other files of ``out`` are left alone (corpus preparation scripts write their trials beside).
    """
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    write_kv(d / "wav.scp", wav_scp)


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
        tables = {name: _read_file(d / name, check_sorted)[0] for name in _PARSERS if (d / name).is_file()}
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
                u: f"{s.recording} {_fmt_float(s.start)} {_fmt_float(TO_THE_END if s.end is None else s.end)}"
                for u, s in self.segments.items()},
            "utt2dur": None if self.utt2dur is None else {u: _fmt_float(v) for u, v in self.utt2dur.items()},
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
                ids = _trial_ids(line)
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


# ----------------------------------------------------------------------------- audio probing

def _probe(entries: dict[str, str], nj: int, progress: bool, desc: str, decode: bool = False
           ) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """``num_samples`` of each entry (``decode``: fully decoded and checked) in ``nj`` threads:
    ``({key: (n, sr)}, {key: error message})``."""
    from tqdm import tqdm

    def one(key: str) -> tuple[str, tuple[int, int] | None, str | None]:
        try:
            n, sr = audio.num_samples(entries[key], decode)
        except audio.AudioError as e:
            return key, None, str(e)
        return (key, (n, sr), None) if n > 0 else (key, None, f"no samples in {entries[key]!r}")

    ok: dict[str, tuple[int, int]] = {}
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max(1, nj)) as pool, tqdm(
            total=len(entries), desc=desc, unit="rec", disable=not progress) as bar:
        for key, res, err in pool.map(one, sorted(entries)):
            if res is not None:
                ok[key] = res
            else:
                failed[key] = err or ""
            bar.update()
    return ok, failed


# ----------------------------------------------------------------------------- validate

def validate(path: str | Path, check_audio: bool = False, nj: int = 1, progress: bool = False) -> list[str]:
    """Problems found in the data dir at ``path`` (empty list = valid); each names its file and line or id.

    Checks every table's format (sorted, unique keys, field counts, numbers), that every
    utt has a speaker and audio (``wav.scp`` or ``segments`` whose recording exists),
    that ``spk2utt`` matches ``utt2spk``, that ``utt2dur``/``utt2num_samples``/... only
    name known utts and that ``trials`` lines have a known format (their ids are not checked).
    ``check_audio`` also decodes every used ``wav.scp`` entry (pipes are run) in ``nj`` threads, with
    the checks of extraction (see :func:`_check_audio`).
    """
    d = Path(path)
    if not d.is_dir():
        return [f"{d}: not a directory"]
    problems: list[str] = []
    tables: dict[str, dict] = {}
    lines: dict[str, dict[str, int]] = {}
    for name in ("utt2spk", "wav.scp"):
        if not (d / name).is_file():
            problems.append(f"{d / name}: missing (required file)")
    for name in _PARSERS:
        if (d / name).is_file():
            try:
                tables[name], lines[name] = _read_file(d / name)
            except FormatError as e:
                problems.append(str(e))
    if (d / "trials").is_file():
        try:
            bad = [f"{d / 'trials'}:{n}: expected {TRIAL_FORMATS}, got {line!r}"
                   for n, line in iter_lines(d / "trials") if _trial_ids(line) is None]
            problems.extend(_listed(bad))
            if not bad:
                read_trials(d / "trials")   # repeated trials, self-pairs, mixed formats
        except FormatError as e:
            problems.append(str(e))
    if "utt2spk" in tables and not tables["utt2spk"]:
        problems.append(f"{d / 'utt2spk'}: empty")

    def not_in(name: str, keys: Iterable[str], what: str, other: str) -> None:
        problems.extend(_listed([f"{d / name}:{lines[name][k]}: {what} {k!r} has no entry in {other}"
                                 for k in sorted(keys)]))

    u2s, wav, segs = tables.get("utt2spk"), tables.get("wav.scp"), tables.get("segments")
    if (d / "segments").is_file():
        if u2s is not None and segs is not None:
            not_in("utt2spk", u2s.keys() - segs.keys(), "utt", "segments")
            not_in("segments", segs.keys() - u2s.keys(), "utt", "utt2spk")
        if segs is not None and wav is not None:
            problems.extend(_listed([
                f"{d / 'segments'}:{lines['segments'][u]}: recording {s.recording!r} of utt {u!r} "
                "has no entry in wav.scp" for u, s in sorted(segs.items()) if s.recording not in wav]))
    elif u2s is not None and wav is not None:
        not_in("utt2spk", u2s.keys() - wav.keys(), "utt", "wav.scp")
        not_in("wav.scp", wav.keys() - u2s.keys(), "id", "utt2spk")
    if u2s is not None:
        for name in ("utt2dur", "utt2num_samples"):
            if name in tables:
                not_in(name, tables[name].keys() - u2s.keys(), "utt", "utt2spk")
        if (d / "spk2utt").is_file():
            problems.extend(_check_spk2utt(d / "spk2utt", u2s))
    if check_audio and wav is not None and (segs is not None or not (d / "segments").is_file()):
        problems.extend(_check_audio(d, DataDir(u2s or {}, wav, segs), lines["wav.scp"], nj, progress))
    return problems


def _check_spk2utt(path: Path, utt2spk: dict[str, str]) -> list[str]:
    """Differences between the ``spk2utt`` file and the one derived from ``utt2spk``."""
    try:
        entries = _read_entries(path, check_sorted=True)
    except FormatError as e:
        return [str(e)]
    derived: dict[str, set[str]] = {}
    for u, s in utt2spk.items():
        derived.setdefault(s, set()).add(u)
    problems = [f"{path}:{n}: speaker {s!r} does not match utt2spk (regenerate with utils/fix_data_dir.sh)"
                for s, (n, rest) in entries.items() if set(rest.split()) != derived.get(s)]
    problems += [f"{path}: speaker {s!r} of utt2spk is missing" for s in sorted(derived.keys() - entries.keys())]
    return _listed(problems)


def _check_audio(d: Path, dd: DataDir, wav_lines: dict[str, int], nj: int, progress: bool) -> list[str]:
    """Every used recording decodes completely (not truncated) to finite, non-silent samples, and every
    utterance (segment) lies inside its recording and is long enough to embed."""
    used = dd._used_recordings()
    ok, failed = _probe(used, nj, progress, "check audio", decode=True)
    users: dict[str, list[str]] = {}
    for u in dd.utts:
        if dd.segments is None or u in dd.segments:
            users.setdefault(dd.recording_of(u), []).append(u)
    problems = []
    for rec, msg in sorted(failed.items()):
        who = f"utt {rec!r}" if dd.segments is None else f"recording {rec!r} (utts {users.get(rec, [])[:3]})"
        problems.append(f"{d / 'wav.scp'}:{wav_lines[rec]}: {who}: {msg}")
    for rec, (n, sr) in sorted(ok.items()):
        for u in users.get(rec, []):
            where = f"{d / 'wav.scp'}:{wav_lines[rec]}: utt {u!r}"
            if dd.segments is not None:
                where = f"{d / 'segments'}: utt {u!r} of recording {rec!r}"
                problem = audio.segment_problem(dd.segments[u].start, dd.segments[u].end, n / sr)
                if problem:
                    problems.append(f"{where}: {problem}")
                    continue
            try:
                audio.check_length(_segment_samples(dd, u, n, sr), sr, where)
            except audio.AudioError as e:
                problems.append(str(e))
    return _listed(problems)


def _segment_samples(dd: DataDir, utt: str, n: int, sr: int) -> int:
    """Samples of ``utt`` in its recording of ``n`` samples at ``sr`` Hz, cut as read_audio cuts (clipped
    at the end; 0 or less when it starts after the end)."""
    if dd.segments is None:
        return n
    seg = dd.segments[utt]
    return (n if seg.end is None else min(int(round(seg.end * sr)), n)) - int(round(seg.start * sr))


# ----------------------------------------------------------------------------- fix

@dataclass
class FixReport:
    """What :func:`fix_data_dir` changed."""

    path: Path
    num_utts_before: int
    num_utts_after: int
    dropped: dict[str, list[str]]  # file name -> ids removed from it (sorted)
    resorted: list[str]  # files that were not sorted
    backup: Path

    def __str__(self) -> str:
        out = [f"fix_data_dir: {self.path}: kept {self.num_utts_after} of {self.num_utts_before} utts "
               f"(originals backed up in {self.backup})"]
        for name, ids in self.dropped.items():
            more = " ..." if len(ids) > 5 else ""
            out.append(f"  {name}: dropped {len(ids)} ids: {' '.join(ids[:5])}{more}")
        if self.resorted:
            out.append(f"  re-sorted: {' '.join(self.resorted)}")
        return "\n".join(out)


def fix_data_dir(path: str | Path) -> FixReport:
    """Sort every table, keep utts present in all per-utt files (and the recordings they use), regenerate spk2utt.

    Unsorted input is fine; duplicate keys are a FormatError naming file:line. Originals
    are copied to ``<dir>/.backup/`` first. ``trials`` is left as it is.
    """
    d = Path(path)
    dd = DataDir.load(d, check_sorted=False)
    tables: dict[str, dict | None] = {
        "utt2spk": dd.utt2spk, "wav.scp": dd.wav_scp, "segments": dd.segments,
        "utt2dur": dd.utt2dur, "utt2num_samples": dd.utt2num_samples}
    keep = set(dd.utt2spk)
    if dd.segments is None:
        keep &= dd.wav_scp.keys()
    else:
        keep &= {u for u, s in dd.segments.items() if s.recording in dd.wav_scp}
    for name in ("utt2dur", "utt2num_samples"):
        table = tables[name]
        if table is not None:
            keep &= table.keys()
    if not keep:
        raise DataDirError(f"{d}: no utterance is present in all of its files; nothing left (left unchanged)")
    fixed = replace(dd.subset(keep, keep_trials=False), trials=dd.trials)
    new_tables: dict[str, dict | None] = {
        "utt2spk": fixed.utt2spk, "wav.scp": fixed.wav_scp, "segments": fixed.segments,
        "utt2dur": fixed.utt2dur, "utt2num_samples": fixed.utt2num_samples}
    dropped = {}
    for name, table in tables.items():
        if table is not None:
            gone = sorted(table.keys() - (new_tables[name] or {}).keys())
            if gone:
                dropped[name] = gone
    resorted = [name for name, table in tables.items() if table is not None and list(table) != sorted(table)]
    backup = d / ".backup"
    backup.mkdir(exist_ok=True)
    for name in MANAGED_FILES:
        if (d / name).is_file():
            shutil.copy2(d / name, backup / name)
    fixed.save(d)
    return FixReport(d, len(dd.utt2spk), len(fixed.utt2spk), dropped, resorted, backup)


# ----------------------------------------------------------------------------- split

def _spk_bounds(counts: list[int], nj: int) -> list[tuple[int, int]]:
    """Split speakers (with ``counts`` utts each) into ``nj`` contiguous non-empty groups of near-equal utts."""
    cum = [0]
    for c in counts:
        cum.append(cum[-1] + c)
    total, n_spk = cum[-1], len(counts)
    bounds = [0]
    for k in range(1, nj):
        lo, hi = bounds[-1] + 1, n_spk - (nj - k)
        target = k * total / nj
        i = bisect_left(cum, target)
        best = min((j for j in (i - 1, i) if lo <= j <= hi), key=lambda j: abs(cum[j] - target), default=None)
        bounds.append(best if best is not None else min(max(i, lo), hi))
    bounds.append(n_spk)
    return list(zip(bounds[:-1], bounds[1:]))


def split_data(path: str | Path, nj: int, per_spk: bool = False) -> list[Path]:
    """Write ``<dir>/split<nj>/<1..nj>/`` sub-data-dirs; return their paths.

    Per utterance (default) the sorted utts are cut into ``nj`` contiguous near-equal
    parts; with ``per_spk`` whole speakers (in sorted order) are grouped so the parts
    have near-equal utts. An existing split made the same way after the source files
    last changed is reused.
    """
    d = Path(path)
    if nj < 1:
        raise DataDirError(f"split: number of parts must be >= 1, got {nj}")
    out = d / f"split{nj}"
    mode = "per-spk" if per_spk else "per-utt"
    marker = out / ".done"
    parts = [out / str(k) for k in range(1, nj + 1)]
    sources = [d / name for name in MANAGED_FILES if name not in ("spk2utt", "trials") and (d / name).is_file()]
    if (marker.is_file() and marker.read_text().strip() == mode and all(p.is_dir() for p in parts)
            and all(marker.stat().st_mtime > s.stat().st_mtime for s in sources)):
        return parts
    dd = DataDir.load(d)
    if per_spk:
        spk2utt = dd.spk2utt
        if nj > len(spk2utt):
            raise DataDirError(f"split: cannot split {len(spk2utt)} speakers of {d} into {nj} parts")
        spks = list(spk2utt)
        groups = [[u for s in spks[b:e] for u in spk2utt[s]]
                  for b, e in _spk_bounds([len(spk2utt[s]) for s in spks], nj)]
    else:
        utts = dd.utts
        if nj > len(utts):
            raise DataDirError(f"split: cannot split {len(utts)} utts of {d} into {nj} parts")
        groups = [utts[b:e] for b, e in _parts(len(utts), nj)]
    marker.unlink(missing_ok=True)
    for part, group in zip(parts, groups):
        dd.subset(group, keep_trials=False).save(part)
    with atomic_write(marker) as f:
        f.write(mode + "\n")
    return parts


def split_scp(in_scp: str | Path, out_scps: Sequence[str | Path]) -> None:
    """Split the lines of any table into ``len(out_scps)`` contiguous near-equal files."""
    check_outputs_are_not_inputs([in_scp], out_scps)
    lines = [line for _, line in iter_lines(in_scp)]
    if not out_scps:
        raise DataDirError("split_scp: no output files given")
    if len(out_scps) > len(lines):
        raise DataDirError(f"split_scp: cannot split {len(lines)} lines of {in_scp} into {len(out_scps)} files")
    for out, (b, e) in zip(out_scps, _parts(len(lines), len(out_scps))):
        with atomic_write(out) as f:
            f.writelines(line + "\n" for line in lines[b:e])


# ----------------------------------------------------------------------------- combine / subset

def _merge(name: str, tables: list[tuple[Path, dict[str, T]]], allow_same: bool = False) -> dict[str, T]:
    """Union of tables; a key in two sources is an error (unless identical and ``allow_same``)."""
    out: dict[str, T] = {}
    origin: dict[str, Path] = {}
    for src, table in tables:
        for k, v in table.items():
            if k in out and not (allow_same and out[k] == v):
                raise DataDirError(f"combine: {name} id {k!r} is in both {origin[k]} and {src}")
            out[k] = v
            origin.setdefault(k, src)
    return out


def combine_data(dest: str | Path, srcs: Sequence[str | Path]) -> DataDir:
    """Combine data dirs into ``dest``; utt ids must be unique across sources.

    If only some sources have ``segments``, the others get whole-recording segments from
    their ``utt2dur``. Optional per-utt files are kept only if every source has them;
    ``trials`` are concatenated.
    """
    if not srcs:
        raise DataDirError("combine: no source directories given")
    dest_p = Path(dest)
    check_outputs_are_not_inputs([f for s in srcs for f in dir_and_files(s, MANAGED_FILES)],
                                 dir_and_files(dest, MANAGED_FILES))
    dds = [(Path(s), DataDir.load(s)) for s in srcs]
    segments = None
    if any(dd.segments is not None for _, dd in dds):
        seg_tables = []
        for src, dd in dds:
            if dd.segments is None:
                if dd.utt2dur is None or not dd.utt2spk.keys() <= dd.utt2dur.keys():
                    raise DataDirError(f"combine: {src} has no segments while other sources do; "
                                       f"run utils/compute_utt2dur.sh {src} first")
                seg_tables.append((src, {u: Segment(u, 0.0, dd.utt2dur[u]) for u in dd.utt2spk}))
            else:
                seg_tables.append((src, dd.segments))
        segments = _merge("segments", seg_tables)

    def merged(name: str, get: Callable[[DataDir], dict | None]) -> dict | None:
        tables = [(src, get(dd)) for src, dd in dds]
        if all(t is not None for _, t in tables):
            return _merge(name, tables)  # type: ignore[arg-type]
        if any(t is not None for _, t in tables):
            log.warning("combine: not every source has %s; it is dropped", name)
        return None

    trials = [t for _, dd in dds for t in dd.trials or []] if any(dd.trials is not None for _, dd in dds) else None
    combined = DataDir(
        utt2spk=_merge("utt2spk", [(src, dd.utt2spk) for src, dd in dds]),
        wav_scp=_merge("wav.scp", [(src, dd.wav_scp) for src, dd in dds], allow_same=True),
        segments=segments,
        utt2dur=merged("utt2dur", lambda dd: dd.utt2dur),
        utt2num_samples=merged("utt2num_samples", lambda dd: dd.utt2num_samples),
        trials=trials,
    )
    combined.save(dest_p)
    return combined


def subset_data_dir(src: str | Path, dest: str | Path, *, first: int | None = None, last: int | None = None,
                    random: int | None = None, seed: int = 0, per_spk: bool = False,
                    utt_list: str | Path | None = None, spk_list: str | Path | None = None) -> DataDir:
    """Copy a subset of ``src`` to ``dest``: the first/last/random N utts (in sorted order), or those of a list.

    Exactly one selector must be given. ``random`` with ``per_spk`` keeps whole speakers, drawn at
    random until they hold at least N utts. List files name one id per line (first field);
    ids not in ``src`` are ignored. ``trials`` keeps the lines whose ids are both kept.
    """
    chosen = {k: v for k, v in dict(first=first, last=last, random=random,
                                    utt_list=utt_list, spk_list=spk_list).items() if v is not None}
    if len(chosen) != 1:
        raise DataDirError("subset: give exactly one of first, last, random, utt_list, spk_list")
    check_outputs_are_not_inputs([*dir_and_files(src, MANAGED_FILES), utt_list, spk_list],
                                 dir_and_files(dest, MANAGED_FILES))
    dd = DataDir.load(src)
    utts = dd.utts
    (how, arg), = chosen.items()
    if how in ("first", "last", "random"):
        n = int(arg)  # type: ignore[arg-type]
        if not 0 < n <= len(utts):
            raise DataDirError(f"subset: cannot take {n} of the {len(utts)} utts of {src}")
        if how == "random" and per_spk:
            spk2utt = dd.spk2utt
            keep = []
            for spk in _random.Random(seed).sample(sorted(spk2utt), len(spk2utt)):
                if len(keep) >= n:
                    break
                keep += spk2utt[spk]
        else:
            keep = (utts[:n] if how == "first" else utts[len(utts) - n:] if how == "last"
                    else _random.Random(seed).sample(utts, n))
    elif how == "utt_list":
        wanted = set(_read_id_list(arg))  # type: ignore[arg-type]
        keep = [u for u in utts if u in wanted]
    else:
        wanted = set(_read_id_list(arg))  # type: ignore[arg-type]
        keep = [u for u in utts if dd.utt2spk[u] in wanted]
    if not keep:
        raise DataDirError(f"subset: no utts of {src} selected by {how}={arg}")
    sub = dd.subset(keep)
    sub.save(dest)
    return sub


# ----------------------------------------------------------------------------- utt2dur

def compute_utt2dur(path: str | Path, nj: int = 1, progress: bool = True) -> DataDir:
    """Write ``utt2num_samples`` and ``utt2dur`` (seconds, 3 decimals) for every utt; return the updated dir."""
    d = Path(path)
    dd = DataDir.load(d)
    num, dur = utt_durations(dd, str(d), nj, progress)
    write_kv(d / "utt2num_samples", {u: str(v) for u, v in num.items()})
    write_kv(d / "utt2dur", {u: _fmt_float(v) for u, v in dur.items()})
    return replace(dd, utt2dur=dur, utt2num_samples=num)


def utt_durations(dd: DataDir, where: str, nj: int = 1,
                  progress: bool = True) -> tuple[dict[str, int], dict[str, float]]:
    """``({utt: num_samples}, {utt: seconds, 3 decimals})`` of every utt of ``dd`` (the data dir
    ``where``, for errors), nothing written.

    Files need only their header; pipes are run and decoded (in ``nj`` threads).
    Segments are cut as :func:`sslspk.data.audio.read_audio` does (clipped at the end of
    the recording, up to ``MAX_OVERSHOOT`` seconds). Any unreadable audio or segment outside its
    recording is an AudioError listing the utts.
    """
    errors: list[str] = []
    entries: dict[str, str] = {}
    utt_rec: dict[str, str] = {}
    for u in dd.utts:
        try:
            entry = dd.audio_entry(u)[0]
        except DataDirError as e:
            errors.append(str(e))
            continue
        utt_rec[u] = rec = dd.recording_of(u)
        entries[rec] = entry
    ok, failed = _probe(entries, nj, progress, "utt2dur")
    num: dict[str, int] = {}
    dur: dict[str, float] = {}
    for u, rec in utt_rec.items():
        if rec in failed:
            errors.append(f"utt {u!r}: {failed[rec]}")
            continue
        n, sr = ok[rec]
        if dd.segments is not None:
            problem = audio.segment_problem(dd.segments[u].start, dd.segments[u].end, n / sr)
            if problem:
                errors.append(f"utt {u!r} of recording {rec!r}: {problem}")
                continue
            n = _segment_samples(dd, u, n, sr)
        num[u] = n
        dur[u] = round(n / sr, 3)
    if errors:
        raise audio.AudioError(f"{where}: cannot get durations:\n" + "\n".join(_listed(errors)))
    return num, dur
