"""local/prepare_voxceleb.py: VoxCeleb2 m4a converted once to FLAC/WAV files (resumable), or ffmpeg pipes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, write_wav

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="ffmpeg not found: m4a conversion not tested (make sox installs it as root)")
PREPARE = REPO / "local" / "prepare_voxceleb.py"


def fake_vox2(root: Path, n: int = 4) -> list[str]:
    """``n`` one-second m4a (AAC, 44.1 kHz from a WAV) below ``root/voxceleb2/dev/aac``; returns their ids."""
    wav = write_wav(root / "src.wav", 1.0, sr=44100)
    utts = [f"id0000{i % 2}/v{i}/0000{i}" for i in range(n)]
    for u in utts:
        out = root / "voxceleb2" / "dev" / "aac" / f"{u}.m4a"
        out.parent.mkdir(parents=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "8", "-i", str(wav), "-c:a", "aac", str(out)], check=True)
    return utts


def prepare(root: Path, *opts: str, ffmpeg: str = "ffmpeg") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREPARE), "--vox2-dir", str(root / "voxceleb2"), "--ffmpeg", ffmpeg,
                           *opts, str(root / "data")], capture_output=True, text=True)


def wav_scp(root: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in (root / "data" / "vox2_dev" / "wav.scp").read_text().splitlines())


def test_default_converts_to_flac_beside_the_corpus(tmp_path):
    from sslspk.data.audio import read_audio

    utts = fake_vox2(tmp_path)
    r = prepare(tmp_path, "--nj", "2")
    assert r.returncode == 0, r.stderr
    scp = wav_scp(tmp_path)
    assert sorted(scp) == sorted(utts)
    for u in utts:
        assert scp[u] == str(tmp_path / "voxceleb2_flac" / f"{u}.flac")
        audio, sr = read_audio(scp[u])
        assert sr == 16000 and abs(audio.size / sr - 1.0) < 0.1
    assert not list((tmp_path / "voxceleb2_flac").rglob(".*.tmp*"))


def test_wav_and_pipe_modes(tmp_path):
    import soundfile as sf

    utts = fake_vox2(tmp_path, 2)
    assert prepare(tmp_path, "--m4a", "wav", "--convert-dir", str(tmp_path / "conv")).returncode == 0
    path = wav_scp(tmp_path)[utts[1]]
    assert path == str(tmp_path / "conv" / f"{utts[1]}.wav")
    info = sf.info(path)
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert prepare(tmp_path, "--m4a", "pipe").returncode == 0
    assert all(v.startswith("ffmpeg -v 8 -i ") and v.endswith(".m4a -f wav -ar 16000 -ac 1 - |")
               for v in wav_scp(tmp_path).values())


def test_conversion_resumes_after_a_kill(tmp_path):
    """Killed during the conversion: no half-written file under its final name; the next run converts
    only what is missing."""
    utts = fake_vox2(tmp_path, 6)
    slow = tmp_path / "slow_ffmpeg"
    slow.write_text(f"#!/bin/sh\nsleep 0.4\nexec {shutil.which('ffmpeg')} \"$@\"\n")
    slow.chmod(0o755)
    out = tmp_path / "voxceleb2_flac"
    proc = subprocess.Popen([sys.executable, str(PREPARE), "--vox2-dir", str(tmp_path / "voxceleb2"), "--ffmpeg",
                             str(slow), "--nj", "1", str(tmp_path / "data")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(out.rglob("0*.flac"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in out.rglob("0*.flac")}
    assert 2 <= len(done) < 6 and not (tmp_path / "data" / "vox2_dev").exists()
    r = prepare(tmp_path, "--nj", "2")
    assert r.returncode == 0, r.stderr
    assert f"{len(done)} of 6 files already converted; converting {6 - len(done)}" in r.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())   # not redone
    assert sorted(wav_scp(tmp_path)) == sorted(utts) and len(list(out.rglob("0*.flac"))) == 6


def test_failed_file_named_after_the_others_are_converted(tmp_path):
    fake_vox2(tmp_path, 3)
    bad = tmp_path / "voxceleb2" / "dev" / "aac" / "id00009" / "bad" / "00001.m4a"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not audio")
    r = prepare(tmp_path, "--nj", "1")
    assert r.returncode != 0 and "1 of 4 conversions failed" in r.stderr and f"ffmpeg failed on {bad}" in r.stderr
    assert len(list((tmp_path / "voxceleb2_flac").rglob("0*.flac"))) == 3
    assert not list((tmp_path / "voxceleb2_flac").rglob(".*.tmp*"))
