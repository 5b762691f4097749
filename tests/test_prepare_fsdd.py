"""Tests for ``local/prepare_fsdd.py``: the real FSDD (when present) and a small fake copy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "local" / "prepare_fsdd.py"
FSDD = (REPO / ".." / "shared" / "data" / "fsdd").resolve()


def _load():
    spec = importlib.util.spec_from_file_location("prepare_fsdd", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


pf = _load()


def _kv(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    keys = [line.split(maxsplit=1)[0] for line in lines]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), path
    return dict(line.split(maxsplit=1) for line in lines)


def _check_data_dir(d: Path) -> dict[str, str]:
    scp, u2s, s2u = _kv(d / "wav.scp"), _kv(d / "utt2spk"), _kv(d / "spk2utt")
    assert scp.keys() == u2s.keys()
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in scp.values())
    for utt, spk in u2s.items():
        assert utt.startswith(f"{spk}-") and Path(scp[utt]).stem == utt[len(spk) + 1:]
    assert {s: u.split() for s, u in s2u.items()} == {s: sorted(u for u in u2s if u2s[u] == s) for s in s2u}
    return u2s


def _trials(d: Path) -> list[list[str]]:
    return [line.split() for line in (d / "test" / "trials").read_text().splitlines()]


def test_real_fsdd(tmp_path):
    rec = FSDD / "recordings"
    if not rec.is_dir():
        pytest.skip(f"FSDD not found at {rec}: the sanity-corpus data is not in this checkout")
    assert pf.main([str(FSDD), str(tmp_path)]) == 0
    u2s = _check_data_dir(tmp_path / "test")
    assert _kv(tmp_path / "train" / "wav.scp") == _kv(tmp_path / "test" / "wav.scp")
    assert len(u2s) == 3000 and len(set(u2s.values())) == 6
    assert "george-0_george_0" in u2s

    vox = [line.split() for line in (FSDD / "trials.txt").read_text().splitlines()]
    kaldi = _trials(tmp_path)
    assert len(kaldi) == len(vox)
    for (label, e, t), (ke, kt, klab) in zip(vox, kaldi):
        assert (ke, kt) == (f"{u2s[ke]}-{e}", f"{u2s[kt]}-{t}")
        assert klab == ("target" if label == "1" else "nontarget") == \
            ("target" if u2s[ke] == u2s[kt] else "nontarget")

    # The recordings folder itself is accepted too, and gives the same result.
    assert pf.main([str(rec), str(tmp_path / "b")]) == 0
    assert (tmp_path / "b/test/trials").read_bytes() == (tmp_path / "test/trials").read_bytes()


@pytest.fixture
def fake(tmp_path) -> Path:
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    tone = (0.1 * np.sin(np.arange(800) * 0.3)).astype(np.float32)
    for spk in ("alice", "bob", "carol"):
        for digit in range(3):
            for take in range(2):
                sf.write(rec / f"{digit}_{spk}_{take}.wav", tone, 8000)
    (rec / "notes.txt").write_text("not audio\n")
    (rec / "x_alice.wav").write_bytes(b"")
    return tmp_path / "fsdd"


def test_fake_generated_trials_and_skips(fake, tmp_path, capsys):
    out = tmp_path / "data"
    assert pf.main([str(fake), str(out), "--num-target", "10", "--num-nontarget", "30"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2" in err and "notes.txt" in err and "x_alice.wav" in err
    u2s = _check_data_dir(out / "train")
    assert len(u2s) == 18 and _kv(out / "test" / "utt2spk") == u2s
    trials = _trials(out)
    assert trials == sorted(trials) and len(trials) == 40
    assert sum(lab == "target" for *_, lab in trials) == 10
    for e, t, lab in trials:
        assert e < t and lab == ("target" if u2s[e] == u2s[t] else "nontarget")
    out2 = tmp_path / "data2"
    pf.main([str(fake / "recordings"), str(out2), "--num-target", "10", "--num-nontarget", "30"])
    assert (out2 / "test/trials").read_bytes() == (out / "test/trials").read_bytes()


def test_fake_trials_file_converted_and_checked(fake, tmp_path):
    (fake / "trials.txt").write_text("1 0_alice_0 1_alice_1\n0 2_bob_0 0_carol_1\n")
    pf.main([str(fake), str(tmp_path / "d")])
    assert _trials(tmp_path / "d") == [["alice-0_alice_0", "alice-1_alice_1", "target"],
                                       ["bob-2_bob_0", "carol-0_carol_1", "nontarget"]]
    (fake / "trials.txt").write_text("1 0_alice_0 1_bob_1\n")
    with pytest.raises(SystemExit, match="trials.txt:1: label 1 contradicts"):
        pf.main([str(fake), str(tmp_path / "e")])
    (fake / "trials.txt").write_text("1 0_alice_0 9_alice_9\n")
    with pytest.raises(SystemExit, match="'9_alice_9' is not among the recordings"):
        pf.main([str(fake), str(tmp_path / "e")])


def test_no_matching_files(tmp_path):
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "readme.md").write_text("x")
    with pytest.raises(SystemExit, match="no .*wav files in"):
        pf.main([str(tmp_path), str(tmp_path / "data")])
    with pytest.raises(SystemExit, match="not found"):
        pf.main([str(tmp_path / "missing"), str(tmp_path / "data")])
