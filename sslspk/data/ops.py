"""Operations on data directories: fix (sort, drop incomplete utts), split, combine and subset."""

from __future__ import annotations

import logging
import random as _random
import shutil
from bisect import bisect_left
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from sslspk.data.datadir import DataDir, DataDirError
from sslspk.data.tables import MANAGED_FILES, Segment, read_id_list
from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs, dir_and_files, iter_lines

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def _parts(n: int, nj: int) -> list[tuple[int, int]]:
    """``nj`` contiguous ``[begin, end)`` ranges over ``n`` items; the first ``n % nj`` get one extra."""
    base, extra = divmod(n, nj)
    bounds = [0]
    for k in range(nj):
        bounds.append(bounds[-1] + base + (1 if k < extra else 0))
    return list(zip(bounds[:-1], bounds[1:]))


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
    have near-equal utts. An existing split made the same way from the same source files (their
    content: the stamp ``<dir>/split<nj>.stamp``, sslspk.utils.stamp) is reused.
    """
    from sslspk.utils.stamp import Stamp, remove_stamp

    d = Path(path)
    if nj < 1:
        raise DataDirError(f"split: number of parts must be >= 1, got {nj}")
    out = d / f"split{nj}"
    mode = "per-spk" if per_spk else "per-utt"
    legacy = out / ".done"   # the record of a split made before stamps: its mode, judged by file times
    parts = [out / str(k) for k in range(1, nj + 1)]
    sources = [d / name for name in MANAGED_FILES if name not in ("spk2utt", "trials")]
    stamp = Stamp(sources, {"mode": mode})
    if all(p.is_dir() for p in parts):
        if stamp.adopt(out, legacy.is_file() and legacy.read_text().strip() == mode
                       and all(legacy.stat().st_mtime > s.stat().st_mtime for s in sources if s.is_file())):
            legacy.unlink()
        if stamp.is_fresh(out):
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
    remove_stamp(out)
    legacy.unlink(missing_ok=True)
    for part, group in zip(parts, groups):
        dd.subset(group, keep_trials=False).save(part)
    stamp.write(out)
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
        wanted = set(read_id_list(arg))  # type: ignore[arg-type]
        keep = [u for u in utts if u in wanted]
    else:
        wanted = set(read_id_list(arg))  # type: ignore[arg-type]
        keep = [u for u in utts if dd.utt2spk[u] in wanted]
    if not keep:
        raise DataDirError(f"subset: no utts of {src} selected by {how}={arg}")
    sub = dd.subset(keep)
    sub.save(dest)
    return sub
