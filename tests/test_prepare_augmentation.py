"""local/prepare_augmentation.py: synthetic noise/music/babble/RIR sets, or real MUSAN/RIRS listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, write_wav

SCRIPT = REPO / "local" / "prepare_augmentation.py"
COUNTS = {"noise": 3, "music": 2, "babble": 3, "rirs": 4}
OPTS = ["--num-noise", "3", "--num-music", "2", "--num-babble", "3", "--num-rirs", "4", "--nj", "1"]


def run(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def kv(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(maxsplit=1)) for line in path.read_text().splitlines()]


def audio_bytes(audio: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(audio.rglob("*.wav"))}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("aug")
    run(*OPTS, str(root / "data"))
    return root


def test_synthetic_sets(synthetic):
    from sslspk.augment import Augmenter
    from sslspk.data.validate import validate

    data, audio = synthetic / "data", synthetic / "data" / "audio"
    info = json.loads((audio / "augment.json").read_text())
    for kind, n in COUNTS.items():
        d = data / kind
        assert validate(d, check_audio=True) == []
        scp = kv(d / "wav.scp")
        assert len(scp) == n and kv(d / "utt2spk") == [(k, k) for k, _ in scp]
        for key, path in scp:
            x, sr = sf.read(path)
            assert sr == 16000 and np.isfinite(x).all() and 0 < np.abs(x).max() < 1.0
            assert info[key]["set"] == kind
            if kind == "rirs":
                assert 0.2 <= info[key]["rt60"] <= 0.8
                peak = int(np.argmax(np.abs(x)))
                assert peak == info[key]["delay_samples"] and np.all(x[:peak] == 0)
                assert len(x) >= 0.2 * sr
            else:
                assert len(x) / sr == {"noise": 5.0, "music": 8.0, "babble": 3.0}[kind]
            if kind == "babble":
                assert info[key]["speaker"].startswith("mbb")
    # The sets work as augmentation sources as written.
    cfg = {"prob": 1.0, "reverb": {"source": str(data / "rirs"), "prob": 1.0},
           **{k: {"source": str(data / k)} for k in ("noise", "music", "babble")}}
    aug = Augmenter.from_config(cfg, 16000)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    seen = set()
    for seed in range(12):
        y, used = aug.apply(x, np.random.default_rng(seed))
        assert y.shape == x.shape and np.isfinite(y).all() and "reverb" in used
        seen.add(used["additive"])
    assert seen == {"noise", "music", "babble"}


def test_deterministic_rerun_noop_and_seed(synthetic, tmp_path):
    audio = synthetic / "data" / "audio"
    before = audio_bytes(audio)
    assert len(before) == sum(COUNTS.values())
    mtimes = [p.stat().st_mtime_ns for p in sorted(audio.rglob("*.wav"))]
    run(*OPTS, str(synthetic / "data"))
    assert [p.stat().st_mtime_ns for p in sorted(audio.rglob("*.wav"))] == mtimes   # a no-op
    run(*OPTS, "--audio-dir", str(tmp_path / "same"), str(tmp_path / "d1"))
    run(*OPTS, "--seed", "1", "--audio-dir", str(tmp_path / "other"), str(tmp_path / "d2"))
    same, other = audio_bytes(tmp_path / "same"), audio_bytes(tmp_path / "other")
    assert same == before and other.keys() == before.keys() and all(other[k] != before[k] for k in before)
    # An interrupted run (no stamp) is redone.
    (tmp_path / "same.stamp").unlink()
    again = run(*OPTS, "--audio-dir", str(tmp_path / "same"), str(tmp_path / "d1"))
    assert "synthetic augmentation sets" in again.stdout


def test_real_sets_are_listed(tmp_path):
    """--musan-dir / --rirs-dir list MUSAN (speech as babble) and RIRS_NOISES in place."""
    musan, rirs = tmp_path / "musan", tmp_path / "RIRS_NOISES"
    for part in ("noise", "music", "speech"):
        write_wav(musan / part / "src" / f"{part}-0001.wav", 0.5)
    write_wav(rirs / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00001.wav", 0.2)
    run("--musan-dir", str(musan), "--rirs-dir", str(rirs), str(tmp_path / "data"))
    babble = kv(tmp_path / "data" / "babble" / "wav.scp")
    assert babble == [("src/speech-0001", str(musan / "speech/src/speech-0001.wav"))]
    assert kv(tmp_path / "data" / "rirs" / "utt2spk") == [("smallroom/Room001/Room001-00001",) * 2]
    assert not (tmp_path / "data" / "audio").exists()
