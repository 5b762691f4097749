"""utils/perturb_labels.py: a copy of a data dir with a known fraction of labels moved to other speakers."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

from sslspk.data.datadir import DataDir
from sslspk.data.validate import validate

TOOL = REPO / "utils" / "perturb_labels.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def _data(tmp_path, spks: int = 5, utts: int = 8):
    utt = [f"s{s}-u{u}" for s in range(spks) for u in range(utts)]
    d = DataDir(utt2spk={u: u.split("-")[0] for u in utt}, wav_scp={u: f"/a/{u}.wav" for u in utt},
                utt2dur={u: 1.5 for u in utt})
    d.save(tmp_path / "src")
    return tmp_path / "src", d


def test_moves_the_requested_fraction_to_other_speakers(tmp_path):
    src, d = _data(tmp_path)
    r = _run("--fraction", 0.25, "--seed", 3, src, tmp_path / "a")
    assert r.returncode == 0, r.stderr
    a = DataDir.load(tmp_path / "a")
    moved = [u for u in d.utts if a.utt2spk[u] != d.utt2spk[u]]
    assert len(moved) == 10 == len((tmp_path / "a" / "perturbed_utts").read_text().split())
    assert set(a.utt2spk.values()) <= set(d.utt2spk.values())            # only existing speakers
    assert a.wav_scp == d.wav_scp and a.utt2dur == d.utt2dur and validate(tmp_path / "a") == []
    # deterministic for a seed, different for another
    assert _run("--fraction", 0.25, "--seed", 3, src, tmp_path / "b").returncode == 0
    assert _run("--fraction", 0.25, "--seed", 4, src, tmp_path / "c").returncode == 0
    assert DataDir.load(tmp_path / "b").utt2spk == a.utt2spk != DataDir.load(tmp_path / "c").utt2spk


def test_new_speakers_are_uniform_among_the_others(tmp_path):
    src, d = _data(tmp_path, spks=3, utts=400)
    assert _run("--fraction", 1.0, src, tmp_path / "a").returncode == 0
    a = DataDir.load(tmp_path / "a")
    assert all(a.utt2spk[u] != d.utt2spk[u] for u in d.utts)
    from_s0 = [a.utt2spk[u] for u in d.utts if d.utt2spk[u] == "s0"]
    assert 150 < from_s0.count("s1") < 250 and from_s0.count("s1") + from_s0.count("s2") == 400


def test_errors(tmp_path):
    src, _ = _data(tmp_path)
    r = _run("--fraction", 1.5, src, tmp_path / "a")
    assert r.returncode != 0 and "fraction" in r.stderr and not (tmp_path / "a").exists()
    r = _run(src, src)
    assert r.returncode != 0 and "is also an input" in r.stderr
    one, _ = _data(tmp_path / "one", spks=1)
    assert "2 speakers" in _run(one, tmp_path / "b").stderr
