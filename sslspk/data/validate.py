"""Validation of a data directory: every problem named with its file and line or id."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from sslspk.data import audio
from sslspk.data.datadir import DataDir, listed
from sslspk.data.durations import probe, segment_samples
from sslspk.data.tables import TABLE_PARSERS, read_entries, read_table, trial_ids
from sslspk.data.trials import TRIAL_FORMATS, read_trials
from sslspk.utils.fileio import FormatError, iter_lines


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
    for name in TABLE_PARSERS:
        if (d / name).is_file():
            try:
                tables[name], lines[name] = read_table(d / name)
            except FormatError as e:
                problems.append(str(e))
    if (d / "trials").is_file():
        try:
            bad = [f"{d / 'trials'}:{n}: expected {TRIAL_FORMATS}, got {line!r}"
                   for n, line in iter_lines(d / "trials") if trial_ids(line) is None]
            problems.extend(listed(bad))
            if not bad:
                read_trials(d / "trials")   # repeated trials, self-pairs, mixed formats
        except FormatError as e:
            problems.append(str(e))
    if "utt2spk" in tables and not tables["utt2spk"]:
        problems.append(f"{d / 'utt2spk'}: empty")

    def not_in(name: str, keys: Iterable[str], what: str, other: str) -> None:
        problems.extend(listed([f"{d / name}:{lines[name][k]}: {what} {k!r} has no entry in {other}"
                                 for k in sorted(keys)]))

    u2s, wav, segs = tables.get("utt2spk"), tables.get("wav.scp"), tables.get("segments")
    if (d / "segments").is_file():
        if u2s is not None and segs is not None:
            not_in("utt2spk", u2s.keys() - segs.keys(), "utt", "segments")
            not_in("segments", segs.keys() - u2s.keys(), "utt", "utt2spk")
        if segs is not None and wav is not None:
            problems.extend(listed([
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


def validate_report(path: str | Path, check_audio: bool = False, nj: int = 1) -> bool:
    """``data_dir.py validate``: :func:`validate` (with progress when reading the audio), every problem on
    stderr then an ERROR line, or one OK line with the counts on stdout; whether ``path`` is valid."""
    import sys

    problems = validate(path, check_audio=check_audio, nj=nj, progress=check_audio)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"ERROR: {path} is not a valid data directory (see above)", file=sys.stderr)
        return False
    dd = DataDir.load(path)
    print(f"{path}: OK ({len(dd.utt2spk)} utts, {len(dd.spks)} speakers{', audio checked' if check_audio else ''})")
    return True


def _check_spk2utt(path: Path, utt2spk: dict[str, str]) -> list[str]:
    """Differences between the ``spk2utt`` file and the one derived from ``utt2spk``."""
    try:
        entries = read_entries(path, check_sorted=True)
    except FormatError as e:
        return [str(e)]
    derived: dict[str, set[str]] = {}
    for u, s in utt2spk.items():
        derived.setdefault(s, set()).add(u)
    problems = [f"{path}:{n}: speaker {s!r} does not match utt2spk (regenerate with utils/fix_data_dir.sh)"
                for s, (n, rest) in entries.items() if set(rest.split()) != derived.get(s)]
    problems += [f"{path}: speaker {s!r} of utt2spk is missing" for s in sorted(derived.keys() - entries.keys())]
    return listed(problems)


def _check_audio(d: Path, dd: DataDir, wav_lines: dict[str, int], nj: int, progress: bool) -> list[str]:
    """Every used recording decodes completely (not truncated) to finite, non-silent samples, and every
    utterance (segment) lies inside its recording and is long enough to embed."""
    used = dd._used_recordings()
    ok, failed = probe(used, nj, progress, "check audio", decode=True)
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
                audio.check_length(segment_samples(dd, u, n, sr), sr, where)
            except audio.AudioError as e:
                problems.append(str(e))
    return listed(problems)
