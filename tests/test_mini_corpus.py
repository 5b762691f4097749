"""Tests for ``local/make_mini_corpus.py``: layout, Kaldi files, determinism, skip logic, learnability."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPT = Path(__file__).resolve().parent.parent / "local" / "make_mini_corpus.py"
TINY = ["--num-train-speakers", "4", "--num-test-speakers", "3", "--utts-per-speaker", "3",
        "--min-dur", "1.0", "--max-dur", "1.5", "--nj", "1"]


def _load():
    spec = importlib.util.spec_from_file_location("make_mini_corpus", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


mmc = _load()


def _kv(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(maxsplit=1)) for line in path.read_text().splitlines()]


def _wav_bytes(corpus: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((corpus / "wav").rglob("*.wav"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mini")
    assert mmc.main([*TINY, str(root / "corpus"), str(root / "data")]) == 0
    return root / "corpus", root / "data"


def test_layout_and_audio(tiny):
    corpus, data = tiny
    wavs = sorted((corpus / "wav").rglob("*.wav"))
    assert len(wavs) == (4 + 3) * 3
    for p in wavs:
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 - 1e-3 <= info.duration <= 1.5 + 1e-3
        assert p.parent.name == p.stem.split("-")[0]
        x, _ = sf.read(p)
        assert 0 < np.abs(x).max() < 1.0 and np.isfinite(x).all()
    assert (corpus / "speakers.json").is_file() and (corpus.parent / "corpus.stamp").is_file()
    channels = json.loads((corpus / "channels.json").read_text())
    assert sorted(channels) == sorted(p.stem for p in wavs)
    assert all(5.0 <= c["snr_db"] <= 30.0 and c["noise"] in ("white", "pink", "brown") for c in channels.values())
    assert not list(corpus.rglob("*.tmp"))


def test_data_dirs(tiny):
    corpus, data = tiny
    spks = {}
    for split, prefix, nspk in (("train", "mtr", 4), ("test", "mts", 3)):
        d = data / split
        scp, u2s, s2u = _kv(d / "wav.scp"), _kv(d / "utt2spk"), _kv(d / "spk2utt")
        for table in (scp, u2s, s2u):
            assert [k for k, _ in table] == sorted(k for k, _ in table)
        assert [k for k, _ in scp] == [k for k, _ in u2s]
        assert all(Path(p).is_absolute() and Path(p).is_file() for _, p in scp)
        assert all(u.startswith(s + "-") and s.startswith(prefix) for u, s in u2s)
        assert {s: v.split() for s, v in s2u} == {s: [u for u, t in u2s if t == s] for s in dict(u2s).values()}
        spks[split] = {s for _, s in u2s}
        assert len(spks[split]) == nspk
    assert not spks["train"] & spks["test"]

    test_u2s = dict(_kv(data / "test" / "utt2spk"))
    trials = [line.split() for line in (data / "test" / "trials").read_text().splitlines()]
    assert trials == sorted(trials) and len({(e, t) for e, t, _ in trials}) == len(trials)
    for e, t, lab in trials:
        assert e in test_u2s and t in test_u2s and e != t
        assert lab == ("target" if test_u2s[e] == test_u2s[t] else "nontarget")
    assert {lab for *_, lab in trials} == {"target", "nontarget"}
    assert len(trials) == 3 * 3 + 27  # every pair of 9 utterances (num-trials is larger)


def test_rerun_is_noop_and_args_change_regenerates(tiny, capsys):
    corpus, data = tiny
    files = sorted(p for p in [*corpus.rglob("*"), *data.rglob("*")] if p.is_file())
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert not mmc.generate(mmc.get_parser().parse_args([*TINY, str(corpus), str(data)]))
    assert "nothing to do" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_determinism_marker_and_stale_files(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    mmc.main([*TINY, str(a / "corpus"), str(a / "data")])
    mmc.main([*TINY, str(b / "corpus"), str(b / "data")])
    mmc.main([*TINY, "--seed", "1", str(c / "corpus"), str(c / "data")])
    wa, wb, wc = (_wav_bytes(x / "corpus") for x in (a, b, c))
    assert wa == wb
    assert wa.keys() == wc.keys() and all(wa[k] != wc[k] for k in wa)
    for name in ("speakers.json", "channels.json"):
        assert (a / "corpus" / name).read_bytes() == (b / "corpus" / name).read_bytes()
    assert (a / "data/test/trials").read_bytes() == (b / "data/test/trials").read_bytes()

    # A corpus of before stamps (its .done marker records the arguments) is stamped, not redone.
    stamp = a / "corpus.stamp"
    marker = json.loads(stamp.read_text())["options"]
    stamp.unlink()
    (a / "corpus" / ".done").write_text(json.dumps(mmc.marker_content(
        mmc.get_parser().parse_args([*TINY, str(a / "corpus"), str(a / "data")]), (a / "data").resolve())))
    assert not mmc.generate(mmc.get_parser().parse_args([*TINY, str(a / "corpus"), str(a / "data")]))
    assert json.loads(stamp.read_text())["options"] == marker and not (a / "corpus" / ".done").exists()
    # An interrupted run (no stamp) is redone; changed arguments regenerate and drop stale files.
    stamp.unlink()
    assert mmc.generate(mmc.get_parser().parse_args([*TINY, str(a / "corpus"), str(a / "data")]))
    assert _wav_bytes(a / "corpus") == wb
    smaller = [*TINY, "--num-train-speakers", "2"]
    assert mmc.generate(mmc.get_parser().parse_args([*smaller, str(a / "corpus"), str(a / "data")]))
    assert len(_wav_bytes(a / "corpus")) == (2 + 3) * 3
    assert sorted(p.name for p in (a / "corpus" / "wav").iterdir()) == ["mtr0001", "mtr0002", "mts0001",
                                                                       "mts0002", "mts0003"]


def _median_f0(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation F0 over the louder 40 ms frames."""
    fl, hop = int(0.04 * sr), int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, fl)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames ** 2).sum(axis=1)
    frames = frames[energy > np.percentile(energy, 60)]
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * fl)) ** 2)[:, :fl]
    lo, hi = sr // 400, sr // 60
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    return float(np.median(sr / lag))


def test_speaker_identity_is_learnable(tiny):
    corpus, _ = tiny
    log_f0, spk = [], []
    for p in sorted((corpus / "wav").rglob("*.wav")):
        x, sr = sf.read(p)
        log_f0.append(np.log2(_median_f0(x, sr)))
        spk.append(p.parent.name)
    log_f0, spk = np.array(log_f0), np.array(spk)
    dist = np.abs(log_f0[:, None] - log_f0[None, :])
    same = spk[:, None] == spk[None, :]
    off_diag = ~np.eye(len(spk), dtype=bool)
    within, between = dist[same & off_diag].mean(), dist[~same].mean()
    assert within < 0.5 * between, (within, between)


def test_help_is_fast_and_needs_no_torch():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "CORPUS_DIR" in out.stdout or "corpus_dir" in out.stdout
    probe = (f"import runpy, sys\nsys.argv = ['x', '--help']\n"
             f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
             f"except SystemExit:\n    pass\nassert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True)
