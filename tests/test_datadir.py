"""Tests for sslspk.data.datadir, bin/data_dir.py and the utils/ data-dir wrappers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslspk.bin import data_dir as cli
from sslspk.data.audio import AudioError
from sslspk.data.datadir import DataDir, DataDirError
from sslspk.data.durations import compute_utt2dur
from sslspk.data.ops import combine_data, fix_data_dir, split_data, split_scp, subset_data_dir
from sslspk.data.tables import Segment
from sslspk.data.validate import validate
from sslspk.utils.fileio import FormatError

REPO = Path(__file__).resolve().parents[1]
SR = 16000
# utt -> (speaker, number of samples)
UTTS = {
    "spkA-u1": ("spkA", 8000), "spkA-u2": ("spkA", 12000), "spkA-u3": ("spkA", 16000),
    "spkB-u1": ("spkB", 4000), "spkB-u2": ("spkB", 20000),
    "spkC-u1": ("spkC", 24000), "spkC-u2": ("spkC", 6000),
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def make_wav(path: Path, n: int, seed: int = 0) -> Path:
    """A short 16 kHz sine + noise wav of ``n`` samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n), SR, subtype="PCM_16")
    return path


@pytest.fixture
def wavs(tmp_path: Path) -> dict[str, Path]:
    """One wav file per utt in ``UTTS``."""
    d = tmp_path / "wav"
    d.mkdir()
    return {u: make_wav(d / f"{u}.wav", n, i) for i, (u, (_, n)) in enumerate(UTTS.items())}


@pytest.fixture
def data(tmp_path: Path, wavs: dict[str, Path]) -> Path:
    """A valid data dir without segments (one utt per wav file)."""
    d = tmp_path / "data"
    d.mkdir()
    write(d / "wav.scp", "".join(f"{u} {wavs[u]}\n" for u in sorted(UTTS)))
    write(d / "utt2spk", "".join(f"{u} {UTTS[u][0]}\n" for u in sorted(UTTS)))
    return d


@pytest.fixture
def seg_data(tmp_path: Path) -> Path:
    """A data dir with segments: two 2-second recordings, five segments."""
    d = tmp_path / "segdata"
    d.mkdir()
    r1, r2 = make_wav(tmp_path / "rec1.wav", 2 * SR, 1), make_wav(tmp_path / "rec2.wav", 2 * SR, 2)
    write(d / "wav.scp", f"rec1 {r1}\nrec2 cat {r2} |\n")
    write(d / "segments", "s1-a rec1 0.0 0.5\ns1-b rec1 0.5 1.25\ns2-a rec2 0.0 1.0\n"
                          "s2-b rec2 1.0 1.5\ns2-c rec2 1.5 2.5\n")
    write(d / "utt2spk", "s1-a s1\ns1-b s1\ns2-a s2\ns2-b s2\ns2-c s2\n")
    return d


def sh(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSLSPK_PYTHON": sys.executable}
    return subprocess.run([str(REPO / "utils" / script), *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO)


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


# ----------------------------------------------------------------------------- load / save

def test_load_save_roundtrip(data: Path, tmp_path: Path) -> None:
    write(data / "utt2dur", "".join(f"{u} {UTTS[u][1] / SR}\n" for u in sorted(UTTS)))
    write(data / "trials", "spkA-u1 spkB-u1 nontarget\nspkA-u1 spkA-u2 target\n")
    dd = DataDir.load(data)
    assert dd.utts == sorted(UTTS)
    assert dd.utt2dur == {u: n / SR for u, (_, n) in UTTS.items()}
    out = tmp_path / "copy"
    dd.save(out)
    for name in ("wav.scp", "utt2spk", "utt2dur", "trials"):
        assert (out / name).read_text() == (data / name).read_text(), name
    assert DataDir.load(out) == dd
    assert not (out / "segments").exists()


def test_spk2utt_derived_and_written(data: Path, tmp_path: Path) -> None:
    dd = DataDir.load(data)
    assert dd.spk2utt == {"spkA": ["spkA-u1", "spkA-u2", "spkA-u3"], "spkB": ["spkB-u1", "spkB-u2"],
                          "spkC": ["spkC-u1", "spkC-u2"]}
    assert dd.spks == ["spkA", "spkB", "spkC"]
    dd.save(tmp_path / "out")
    assert (tmp_path / "out" / "spk2utt").read_text().splitlines()[1] == "spkB spkB-u1 spkB-u2"


def test_save_removes_stale_optional_files(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write(out / "utt2dur", "old 1.0\n")
    DataDir.load(data).save(out)
    assert not (out / "utt2dur").exists()


def test_crlf_tolerated(data: Path) -> None:
    text = (data / "utt2spk").read_text()
    (data / "utt2spk").write_bytes(text.replace("\n", "\r\n").encode())
    assert DataDir.load(data).utt2spk["spkB-u1"] == "spkB"


def test_audio_entry_and_load_audio(data: Path, wavs: dict[str, Path]) -> None:
    dd = DataDir.load(data)
    assert dd.recording_of("spkB-u2") == "spkB-u2"
    assert dd.audio_entry("spkB-u2") == (str(wavs["spkB-u2"]), 0.0, None)
    assert dd.load_audio("spkB-u2").shape == (20000,)
    assert dd.load_audio("spkB-u2", sample_rate=8000).shape == (10000,)


def test_segments(seg_data: Path) -> None:
    dd = DataDir.load(seg_data)
    assert dd.segments is not None and dd.segments["s1-b"] == Segment("rec1", 0.5, 1.25)
    assert dd.recording_of("s2-a") == "rec2"
    entry, start, end = dd.audio_entry("s2-b")
    assert entry.startswith("cat ") and entry.endswith("|") and (start, end) == (1.0, 1.5)
    assert dd.load_audio("s1-b").shape == (12000,)
    assert dd.load_audio("s2-b").shape == (8000,)  # through the pipe
    assert validate(seg_data, check_audio=True) == []


# ----------------------------------------------------------------------------- pipes

def test_pipe_cat_works(data: Path, wavs: dict[str, Path]) -> None:
    write(data / "wav.scp", "".join(f"{u} cat {wavs[u]} |\n" for u in sorted(UTTS)))
    dd = DataDir.load(data)
    assert dd.load_audio("spkC-u1").shape == (24000,)
    assert validate(data, check_audio=True) == []


@pytest.mark.parametrize("cmd, words", [("false |", "failed"), ("true |", "no output")])
def test_bad_pipe_names_utt_and_command(data: Path, cmd: str, words: str) -> None:
    lines = (data / "wav.scp").read_text().splitlines()
    lines[3] = f"spkB-u1 {cmd}"
    write(data / "wav.scp", "\n".join(lines) + "\n")
    with pytest.raises(AudioError, match=f"utt 'spkB-u1'.*{words}"):
        DataDir.load(data).load_audio("spkB-u1")
    problems = validate(data, check_audio=True)
    assert len(problems) == 1
    assert "wav.scp:4:" in problems[0] and "spkB-u1" in problems[0] and repr(cmd[:-2]) in problems[0]
    assert words in problems[0]
    with pytest.raises(AudioError, match="spkB-u1"):
        compute_utt2dur(data, progress=False)


# ----------------------------------------------------------------------------- malformed input

def test_unsorted_names_first_out_of_order_line(data: Path) -> None:
    write(data / "utt2spk", "spkA-u1 spkA\nspkB-u1 spkB\nspkA-u2 spkA\nspkA-u3 spkA\n")
    with pytest.raises(FormatError, match=r"utt2spk:3: not sorted: 'spkA-u2' comes after 'spkB-u1'"):
        DataDir.load(data)
    assert any(f"{data / 'utt2spk'}:3: not sorted" in p for p in validate(data))
    assert DataDir.load(data, check_sorted=False).utts[:2] == ["spkA-u1", "spkA-u2"]


def test_c_locale_order(data: Path, wavs: dict[str, Path]) -> None:
    # Upper case sorts before lower case in byte order ("B" < "a"), unlike many locales.
    write(data / "utt2spk", "Bx spkB\nab spkA\n")
    write(data / "wav.scp", f"Bx {wavs['spkB-u1']}\nab {wavs['spkA-u1']}\n")
    assert validate(data) == []
    write(data / "utt2spk", "ab spkA\nBx spkB\n")
    assert any("utt2spk:2: not sorted" in p for p in validate(data))


def test_duplicate_id(data: Path) -> None:
    write(data / "utt2spk", "spkA-u1 spkA\nspkA-u2 spkA\nspkA-u2 spkB\n")
    with pytest.raises(FormatError, match=r"utt2spk:3: duplicate id 'spkA-u2' \(first on line 2\)"):
        DataDir.load(data)
    with pytest.raises(FormatError, match=r"utt2spk:3: duplicate"):
        fix_data_dir(data)


def test_empty_line(data: Path) -> None:
    text = (data / "wav.scp").read_text().splitlines()
    write(data / "wav.scp", "\n".join(text[:2] + [""] + text[2:]) + "\n")
    with pytest.raises(FormatError, match=r"wav.scp:3: empty line"):
        DataDir.load(data)


@pytest.mark.parametrize("name, text, msg", [
    ("utt2spk", "spkA-u1 spkA extra\n", r"utt2spk:1: expected 2 fields, got 3"),
    ("utt2spk", "spkA-u1\n", r"utt2spk:1: expected '<id> <value...>'"),
    ("segments", "spkA-u1 rec 0.0\n", r"segments:1: expected 4 fields, got 3"),
    ("segments", "spkA-u1 rec zero 1.0\n", r"segments:1: start time is not a number: 'zero'"),
    ("segments", "spkA-u1 rec 1.0 1.0\n", r"segments:1: end time 1.0 is not after start time 1.0"),
    ("utt2dur", "spkA-u1 1.0\nspkA-u2 abc\n", r"utt2dur:2: duration is not a number"),
    ("utt2num_samples", "spkA-u1 1.5\n", r"utt2num_samples:1: number of samples is not a number"),
])
def test_wrong_fields(data: Path, name: str, text: str, msg: str) -> None:
    write(data / name, text)
    with pytest.raises(FormatError, match=msg):
        DataDir.load(data)
    assert any(p.startswith(f"{data / name}:") for p in validate(data))


def test_missing_required_file(data: Path) -> None:
    (data / "wav.scp").unlink()
    with pytest.raises(DataDirError, match="wav.scp: missing"):
        DataDir.load(data)
    assert validate(data) == [f"{data / 'wav.scp'}: missing (required file)"]


def test_missing_audio_file_with_check_audio(data: Path, wavs: dict[str, Path]) -> None:
    wavs["spkC-u1"].unlink()
    assert validate(data) == []  # no audio check
    problems = validate(data, check_audio=True)
    assert len(problems) == 1
    assert problems[0].startswith(f"{data / 'wav.scp'}:6: utt 'spkC-u1': cannot read audio")


def test_validate_consistency(data: Path, wavs: dict[str, Path]) -> None:
    write(data / "utt2spk", "".join(f"{u} {UTTS[u][0]}\n" for u in sorted(UTTS) if u != "spkB-u2")
          + "zz-extra spkZ\n")
    write(data / "utt2dur", "spkA-u1 0.5\nunknown 1.0\n")
    write(data / "spk2utt", "spkA spkA-u1 spkA-u2\nspkB spkB-u1\nspkC spkC-u1 spkC-u2\n")
    problems = validate(data)
    assert f"{data / 'utt2spk'}:7: utt 'zz-extra' has no entry in wav.scp" in problems
    assert f"{data / 'wav.scp'}:5: id 'spkB-u2' has no entry in utt2spk" in problems
    assert f"{data / 'utt2dur'}:2: utt 'unknown' has no entry in utt2spk" in problems
    assert any("spk2utt:1: speaker 'spkA' does not match" in p for p in problems)
    assert any("speaker 'spkZ' of utt2spk is missing" in p for p in problems)
    assert len(problems) == 5


def test_validate_segments_consistency(seg_data: Path) -> None:
    write(seg_data / "segments", "s1-a rec1 0.0 0.5\ns1-b rec9 0.5 1.0\ns2-a rec2 0.0 1.0\n"
                                 "s2-b rec2 1.0 1.5\ns2-c rec2 3.0 3.5\n")
    assert validate(seg_data) == [f"{seg_data / 'segments'}:2: recording 'rec9' of utt 's1-b' has no entry in wav.scp"]
    problems = validate(seg_data, check_audio=True)
    assert any("utt 's2-c' of recording 'rec2': segment [3.0, 3.5) starts after the end of the recording" in p
               for p in problems)


def test_validate_lists_many_problems_briefly(data: Path) -> None:
    write(data / "utt2spk", "".join(f"x{i:03d} s\n" for i in range(30)))
    problems = validate(data)
    assert sum("has no entry in wav.scp" in p for p in problems) == 10
    assert "... and 20 more like the above" in problems


# ----------------------------------------------------------------------------- fix

def test_fix_drops_and_reports(data: Path, wavs: dict[str, Path]) -> None:
    # unsorted utt2spk with an utt lacking audio; wav.scp with an unused entry; utt2dur missing one utt
    write(data / "utt2spk", "".join(f"{u} {UTTS[u][0]}\n" for u in reversed(sorted(UTTS))) + "nowav spkZ\n")
    write(data / "wav.scp", (data / "wav.scp").read_text() + f"zzz-orphan {wavs['spkA-u1']}\n")
    write(data / "utt2dur", "".join(f"{u} 1.0\n" for u in sorted(UTTS) if u != "spkC-u2"))
    write(data / "spk2utt", "stale stale\n")
    original = {n: (data / n).read_text() for n in ("utt2spk", "wav.scp", "utt2dur", "spk2utt")}
    report = fix_data_dir(data)
    assert report.dropped == {"utt2spk": ["nowav", "spkC-u2"], "wav.scp": ["spkC-u2", "zzz-orphan"]}
    assert report.resorted == ["utt2spk"]
    assert (report.num_utts_before, report.num_utts_after) == (8, 6)
    text = str(report)
    assert "kept 6 of 8 utts" in text and "utt2spk: dropped 2 ids: nowav spkC-u2" in text
    assert validate(data) == []
    dd = DataDir.load(data)
    assert dd.utts == sorted(set(UTTS) - {"spkC-u2"})
    assert (data / "spk2utt").read_text().splitlines()[-1] == "spkC spkC-u1"
    for name, content in original.items():
        assert (data / ".backup" / name).read_text() == content


def test_fix_segments_with_missing_recording(seg_data: Path) -> None:
    write(seg_data / "wav.scp", (seg_data / "wav.scp").read_text().splitlines()[0] + "\n")  # only rec1
    report = fix_data_dir(seg_data)
    assert report.dropped == {"utt2spk": ["s2-a", "s2-b", "s2-c"], "segments": ["s2-a", "s2-b", "s2-c"]}
    assert DataDir.load(seg_data).utts == ["s1-a", "s1-b"]
    assert validate(seg_data) == []


def test_fix_nothing_left_changes_nothing(data: Path) -> None:
    write(data / "utt2spk", "other spkZ\n")
    with pytest.raises(DataDirError, match="nothing left"):
        fix_data_dir(data)
    assert (data / "utt2spk").read_text() == "other spkZ\n"


# ----------------------------------------------------------------------------- split

def test_split_per_utt(data: Path) -> None:
    parts = split_data(data, 3)
    assert parts == [data / "split3" / str(k) for k in (1, 2, 3)]
    subs = [DataDir.load(p) for p in parts]
    assert [len(s.utts) for s in subs] == [3, 2, 2]
    assert [u for s in subs for u in s.utts] == sorted(UTTS)  # contiguous, concatenation = original
    full = DataDir.load(data)
    for p, s in zip(parts, subs):
        assert s.wav_scp == {u: full.wav_scp[u] for u in s.utts}
        assert validate(p) == []


def test_split_per_spk_keeps_speakers_whole(data: Path) -> None:
    subs = [DataDir.load(p) for p in split_data(data, 2, per_spk=True)]
    assert [s.spks for s in subs] == [["spkA"], ["spkB", "spkC"]]
    assert [u for s in subs for u in s.utts] == sorted(UTTS)
    subs = [DataDir.load(p) for p in split_data(data, 3, per_spk=True)]
    assert [s.spks for s in subs] == [["spkA"], ["spkB"], ["spkC"]]


def test_split_with_segments(seg_data: Path) -> None:
    subs = [DataDir.load(p) for p in split_data(seg_data, 2)]
    assert [s.utts for s in subs] == [["s1-a", "s1-b", "s2-a"], ["s2-b", "s2-c"]]
    assert list(subs[0].wav_scp) == ["rec1", "rec2"] and list(subs[1].wav_scp) == ["rec2"]


def test_split_too_many_parts(data: Path) -> None:
    with pytest.raises(DataDirError, match="cannot split 7 utts"):
        split_data(data, 8)
    with pytest.raises(DataDirError, match="cannot split 3 speakers"):
        split_data(data, 4, per_spk=True)


def test_split_is_reused_until_source_changes(data: Path) -> None:
    """The split's stamp (content and mode, not file times): a touch reuses it, other content redoes it
    even when older, and a split made before stamps (``split2/.done``, newer than its sources) is adopted."""
    from sslspk.utils.stamp import stamp_path

    split_data(data, 2)
    stamp = stamp_path(data / "split2")
    first = stamp.stat().st_mtime_ns
    for f in data.iterdir():
        if f.is_file() and f != stamp:
            os.utime(f)   # touched, same content
    split_data(data, 2)
    assert stamp.stat().st_mtime_ns == first  # reused
    split_data(data, 2, per_spk=True)  # other mode: redone
    assert [DataDir.load(data / "split2" / k).spks for k in "12"] == [["spkA"], ["spkB", "spkC"]]
    old = 1_000_000_000
    write(data / "utt2spk", "".join(f"{u} {UTTS[u][0]}\n" for u in sorted(UTTS)[:4]))
    write(data / "wav.scp", "".join(line + "\n" for line in (data / "wav.scp").read_text().splitlines()[:4]))
    for f in (data / "utt2spk", data / "wav.scp"):
        os.utime(f, (old, old))   # other content, older than the split
    split_data(data, 2, per_spk=True)
    assert [u for k in "12" for u in DataDir.load(data / "split2" / k).utts] == sorted(UTTS)[:4]
    stamp.unlink()   # a split of before stamps: its .done marker names the mode and is newer than the sources
    (data / "split2" / ".done").write_text("per-spk\n")
    parts = {p: p.stat().st_mtime_ns for p in (data / "split2").rglob("utt2spk")}
    split_data(data, 2, per_spk=True)
    assert stamp.is_file() and not (data / "split2" / ".done").exists()
    assert {p: p.stat().st_mtime_ns for p in parts} == parts   # adopted, not redone


def test_split_scp(data: Path, tmp_path: Path) -> None:
    outs = [tmp_path / f"wav.{k}.scp" for k in (1, 2, 3, 4)]
    split_scp(data / "wav.scp", outs)
    texts = [o.read_text() for o in outs]
    assert [len(t.splitlines()) for t in texts] == [2, 2, 2, 1]
    assert "".join(texts) == (data / "wav.scp").read_text()
    with pytest.raises(DataDirError, match="cannot split 7 lines"):
        split_scp(data / "wav.scp", [tmp_path / f"x{k}" for k in range(8)])


# ----------------------------------------------------------------------------- combine / subset

def test_combine(data: Path, seg_data: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    subset_data_dir(data, a, first=3)
    subset_data_dir(data, b, last=4)
    write(a / "trials", "spkA-u1 spkA-u2 target\n")
    combined = combine_data(tmp_path / "ab", [a, b])
    assert combined == DataDir.load(tmp_path / "ab")
    assert combined.utts == sorted(UTTS)
    assert combined.wav_scp == DataDir.load(data).wav_scp
    assert combined.trials == ["spkA-u1 spkA-u2 target"]
    assert validate(tmp_path / "ab") == []
    with pytest.raises(DataDirError, match="utt2spk id 'spkA-u1' is in both"):
        combine_data(tmp_path / "aa", [a, a])
    with pytest.raises(DataDirError, match="has no segments while other sources do"):
        combine_data(tmp_path / "mixed", [a, seg_data])


def test_combine_mixed_segments_uses_utt2dur(data: Path, seg_data: Path, tmp_path: Path) -> None:
    compute_utt2dur(data, progress=False)
    out = tmp_path / "mixed"
    combined = combine_data(out, [data, seg_data])
    assert combined.segments is not None and combined.segments["spkA-u1"] == Segment("spkA-u1", 0.0, 0.5)
    assert combined.utt2dur is None  # seg_data has none
    assert len(combined.utts) == len(UTTS) + 5
    assert validate(out, check_audio=True) == []


def test_subset_first_last_random(data: Path, tmp_path: Path) -> None:
    utts = sorted(UTTS)
    assert subset_data_dir(data, tmp_path / "f", first=2).utts == utts[:2]
    assert DataDir.load(tmp_path / "f").utts == utts[:2]
    assert subset_data_dir(data, tmp_path / "l", last=2).utts == utts[-2:]
    r1 = subset_data_dir(data, tmp_path / "r1", random=4, seed=1).utts
    r2 = subset_data_dir(data, tmp_path / "r2", random=4, seed=1).utts
    assert r1 == r2 and len(set(r1)) == 4 and r1 == sorted(r1) and set(r1) <= set(utts)
    assert validate(tmp_path / "r1") == []
    # --per-spk: whole speakers, drawn at random until they hold at least N utts
    whole = [subset_data_dir(data, tmp_path / f"p{s}", random=3, seed=s, per_spk=True) for s in range(6)]
    full = DataDir.load(data).spk2utt
    assert all(len(w.utts) >= 3 and all(w.spk2utt[s] == full[s] for s in w.spks) for w in whole)
    assert len({tuple(w.spks) for w in whole}) > 1   # the seed picks the speakers
    with pytest.raises(DataDirError, match="cannot take 8 of the 7 utts"):
        subset_data_dir(data, tmp_path / "x", first=8)
    with pytest.raises(DataDirError, match="exactly one"):
        subset_data_dir(data, tmp_path / "x", first=1, last=1)


def test_subset_lists_and_trials(data: Path, tmp_path: Path) -> None:
    write(data / "trials", "spkA-u1 spkB-u1 nontarget\nspkA-u1 spkA-u2 target\n1 spkB-u1 spkB-u2\n")
    ulist = write(tmp_path / "ulist", "spkB-u2\nspkA-u1\nspkA-u2\nnot-there\n")
    sub = subset_data_dir(data, tmp_path / "u", utt_list=ulist)
    assert sub.utts == ["spkA-u1", "spkA-u2", "spkB-u2"]
    assert sub.trials == ["spkA-u1 spkA-u2 target"]
    slist = write(tmp_path / "slist", "spkB\nspkC\n")
    sub = subset_data_dir(data, tmp_path / "s", spk_list=slist)
    assert sub.spks == ["spkB", "spkC"] and len(sub.utts) == 4
    assert sub.trials == ["1 spkB-u1 spkB-u2"]
    assert (tmp_path / "s" / "trials").read_text() == "1 spkB-u1 spkB-u2\n"


def test_subset_segments(seg_data: Path, tmp_path: Path) -> None:
    sub = subset_data_dir(seg_data, tmp_path / "sub", first=2)
    assert list(sub.wav_scp) == ["rec1"] and sub.utts == ["s1-a", "s1-b"]
    assert validate(tmp_path / "sub") == []


def test_bad_trials_line(data: Path, tmp_path: Path) -> None:
    write(data / "trials", "spkA-u1 spkA-u2 target\nspkA-u1 spkB-u1 maybe\n")
    assert validate(data) == [f"{data / 'trials'}:2: expected '<enroll> <test> target|nontarget', "
                              "'1|0 <enroll> <test>' or '<enroll> <test>', got 'spkA-u1 spkB-u1 maybe'"]
    with pytest.raises(DataDirError, match="trials line 2"):
        subset_data_dir(data, tmp_path / "sub", first=3)


# ----------------------------------------------------------------------------- utt2dur

def test_compute_utt2dur(data: Path) -> None:
    dd = compute_utt2dur(data, nj=3, progress=False)
    assert dd.utt2num_samples == {u: n for u, (_, n) in UTTS.items()}
    assert dd.utt2dur == {u: round(n / SR, 3) for u, (_, n) in UTTS.items()}
    assert (data / "utt2dur").read_text().splitlines()[0] == "spkA-u1 0.5"
    assert (data / "utt2num_samples").read_text().splitlines()[3] == "spkB-u1 4000"
    assert DataDir.load(data) == dd
    assert validate(data) == []


def test_compute_utt2dur_segments(seg_data: Path) -> None:
    dd = compute_utt2dur(seg_data, progress=False)
    assert dd.utt2num_samples == {"s1-a": 8000, "s1-b": 12000, "s2-a": 16000, "s2-b": 8000, "s2-c": 8000}
    assert dd.utt2dur == {"s1-a": 0.5, "s1-b": 0.75, "s2-a": 1.0, "s2-b": 0.5, "s2-c": 0.5}  # s2-c clipped


def test_compute_utt2dur_missing_file_names_utt(data: Path, wavs: dict[str, Path]) -> None:
    wavs["spkA-u2"].unlink()
    with pytest.raises(AudioError, match=r"utt 'spkA-u2': cannot read audio"):
        compute_utt2dur(data, progress=False)
    assert not (data / "utt2dur").exists()


# ----------------------------------------------------------------------------- CLI and wrappers

def test_cli_validate_and_errors(data: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "validate", str(data))
    assert code == 0 and "OK (7 utts, 3 speakers)" in out
    write(data / "utt2spk", "spkB-u1 spkB\nspkA-u1 spkA\n")
    code, _, err = run_cli(capsys, "validate", str(data))
    assert code == 1 and "utt2spk:2: not sorted" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "split", str(data), "2")
    assert code == 1 and err.startswith("ERROR: ") and "utt2spk:2: not sorted" in err


def test_cli_help_is_quick_and_stdlib_only() -> None:
    code = ("import sys, sslspk.bin.data_dir as m; "
            "bad = [k for k in ('numpy', 'soundfile', 'torch', 'sslspk.data.datadir') if k in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_wrappers_run(data: Path, tmp_path: Path) -> None:
    r = sh("validate_data_dir.sh", str(data))
    assert r.returncode == 0, r.stderr
    r = sh("compute_utt2dur.sh", "--nj", "2", str(data))
    assert r.returncode == 0, r.stderr
    assert (data / "utt2dur").read_text().startswith("spkA-u1 0.5\n")
    r = sh("split_data.sh", "--per-spk", str(data), "3")
    assert r.returncode == 0, r.stderr
    assert DataDir.load(data / "split3" / "2").spks == ["spkB"]
    r = sh("subset_data_dir.sh", "--first", "3", str(data), str(tmp_path / "sub"))
    assert r.returncode == 0 and "3 utts" in r.stdout, r.stderr
    r = sh("combine_data.sh", str(tmp_path / "comb"), str(tmp_path / "sub"), str(data / "split3" / "3"))
    assert r.returncode == 0, r.stderr
    assert DataDir.load(tmp_path / "comb").spks == ["spkA", "spkC"]
    r = sh("split_scp.sh", str(data / "wav.scp"), str(tmp_path / "w1"), str(tmp_path / "w2"))
    assert r.returncode == 0 and len((tmp_path / "w1").read_text().splitlines()) == 4, r.stderr
    write(data / "utt2spk", (data / "utt2spk").read_text() + "zz-nowav spkZ\n")
    r = sh("validate_data_dir.sh", str(data))
    assert r.returncode == 1 and "utt2spk:8: utt 'zz-nowav' has no entry in wav.scp" in r.stderr
    r = sh("fix_data_dir.sh", str(data))
    assert r.returncode == 0 and "utt2spk: dropped 1 ids: zz-nowav" in r.stdout, r.stderr
    assert sh("validate_data_dir.sh", str(data)).returncode == 0


def test_wrappers_fail_cleanly(data: Path, tmp_path: Path) -> None:
    r = sh("split_data.sh", str(data), "99")
    assert r.returncode == 1 and r.stderr.strip() == f"ERROR: split: cannot split 7 utts of {data} into 99 parts"
    r = sh("validate_data_dir.sh", str(tmp_path / "nope"))
    assert r.returncode == 1 and "not a directory" in r.stderr
    r = sh("subset_data_dir.sh", "--utt-list", str(tmp_path / "missing"), str(data), str(tmp_path / "o"))
    assert r.returncode == 1 and r.stderr.startswith("ERROR: ") and "missing" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("script", ["validate_data_dir.sh", "fix_data_dir.sh", "split_data.sh", "split_scp.sh",
                                    "combine_data.sh", "subset_data_dir.sh", "compute_utt2dur.sh",
                                    "utt2spk_to_spk2utt.py", "spk2utt_to_utt2spk.py"])
def test_wrapper_help(script: str) -> None:
    r = sh(script, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr


def test_spk2utt_filters(data: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(REPO / "utils" / "utt2spk_to_spk2utt.py")], input=(data / "utt2spk").read_text(),
                       capture_output=True, text=True, check=True)
    assert r.stdout == "spkA spkA-u1 spkA-u2 spkA-u3\nspkB spkB-u1 spkB-u2\nspkC spkC-u1 spkC-u2\n"
    spk2utt = write(tmp_path / "spk2utt", r.stdout)
    back = subprocess.run([str(REPO / "utils" / "spk2utt_to_utt2spk.py"), str(spk2utt)],
                          capture_output=True, text=True, check=True)
    assert back.stdout == (data / "utt2spk").read_text()
    bad = subprocess.run([str(REPO / "utils" / "utt2spk_to_spk2utt.py")], input="a s\nb\n",
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("ERROR: <stdin>:2:")

