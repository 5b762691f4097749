"""Kaldi tables of a data directory: their names, parsing (naming file:line on errors) and writing.

Tables are sorted by key in C-locale byte order (Python's ``str`` order, which equals UTF-8 byte order)
and have unique keys.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, NamedTuple, TypeVar

from sslspk.data import audio
from sslspk.data.trials import parse_trial_line
from sslspk.utils.fileio import FormatError, iter_lines, write_kv

#: Optional files written by :meth:`DataDir.save` (stale copies are removed from the target).
OPTIONAL_FILES: tuple[str, ...] = ("segments", "utt2dur", "utt2num_samples", "trials")
#: Every file a :class:`DataDir` manages (backed up by :func:`fix_data_dir`).
MANAGED_FILES: tuple[str, ...] = ("wav.scp", "utt2spk", "spk2utt", *OPTIONAL_FILES)
#: a ``segments`` end time meaning "to the end of the recording" (Kaldi's convention)
TO_THE_END = -1.0

T = TypeVar("T")


class Segment(NamedTuple):
    """One ``segments`` line: ``[start, end)`` seconds of ``recording``; ``end`` None (written ``-1``, as
    Kaldi does) runs to the end of the recording."""

    recording: str
    start: float
    end: float | None


def read_entries(path: Path, check_sorted: bool) -> dict[str, tuple[int, str]]:
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


TABLE_PARSERS: dict[str, Callable[[Path, int, str], object]] = {
    "wav.scp": _parse_wav,
    "utt2spk": _parse_single,
    "segments": _parse_segment,
    "utt2dur": _parse_dur,
    "utt2num_samples": _parse_num_samples,
}


def read_table(path: Path, check_sorted: bool = True) -> tuple[dict, dict[str, int]]:
    """Parse one table named in ``TABLE_PARSERS``: ``({key: value}, {key: line_number})``."""
    parse = TABLE_PARSERS[path.name]
    entries = read_entries(path, check_sorted)
    return ({k: parse(path, n, rest) for k, (n, rest) in entries.items()},
            {k: n for k, (n, _) in entries.items()})


def read_id_list(path: str | Path) -> list[str]:
    """First field of every line (an utt or speaker list; further fields ignored)."""
    return [line.split()[0] for _, line in iter_lines(path)]


def trial_ids(line: str) -> tuple[str, str] | None:
    """The two ids of a trial line (any format :func:`~sslspk.data.trials.parse_trial_line` reads); None if none."""
    try:
        return parse_trial_line(line)[:2]
    except ValueError:
        return None


def fmt_float(x: float) -> str:
    return repr(float(x))


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
