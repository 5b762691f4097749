"""Durations of the utterances of a data directory (``utt2dur``, ``utt2num_samples``) by probing
their audio.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from sslspk.data import audio
from sslspk.data.datadir import DataDir, DataDirError, listed
from sslspk.data.tables import fmt_float
from sslspk.utils.fileio import write_kv


def probe(entries: dict[str, str], nj: int, progress: bool, desc: str, decode: bool = False
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


def segment_samples(dd: DataDir, utt: str, n: int, sr: int) -> int:
    """Samples of ``utt`` in its recording of ``n`` samples at ``sr`` Hz, cut as read_audio cuts (clipped
    at the end; 0 or less when it starts after the end)."""
    if dd.segments is None:
        return n
    seg = dd.segments[utt]
    return (n if seg.end is None else min(int(round(seg.end * sr)), n)) - int(round(seg.start * sr))


def compute_utt2dur(path: str | Path, nj: int = 1, progress: bool = True) -> DataDir:
    """Write ``utt2num_samples`` and ``utt2dur`` (seconds, 3 decimals) for every utt; return the updated dir."""
    d = Path(path)
    dd = DataDir.load(d)
    num, dur = utt_durations(dd, str(d), nj, progress)
    write_kv(d / "utt2num_samples", {u: str(v) for u, v in num.items()})
    write_kv(d / "utt2dur", {u: fmt_float(v) for u, v in dur.items()})
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
    ok, failed = probe(entries, nj, progress, "utt2dur")
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
            n = segment_samples(dd, u, n, sr)
        num[u] = n
        dur[u] = round(n / sr, 3)
    if errors:
        raise audio.AudioError(f"{where}: cannot get durations:\n" + "\n".join(listed(errors)))
    return num, dur
