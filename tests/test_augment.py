"""Waveform augmentation: SNR of noise/music/babble mixing, RIR reverberation, sources and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sslspk.augment import AudioSource, Augmenter, SourceError, reverberate
from sslspk.utils.config import ConfigError

SR = 16000


def _write(path: Path, x: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
    return str(path)


def _datadir(d: Path, paths: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(paths.items())))
    (d / "utt2spk").write_text("".join(f"{k} {k}\n" for k in sorted(paths)))
    return d


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("aug")
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    noise = {f"n{i}": _write(root / f"noise/n{i}.wav", 0.1 * rng.standard_normal(SR // 2 * (i + 1)))
             for i in range(3)}  # 0.5-1.5 s: shorter than the views, so they are looped
    music = {f"m{i}": _write(root / f"music/m{i}.wav", 0.2 * np.sin(2 * np.pi * 220 * (i + 1) * t)) for i in range(2)}
    speech = {f"s{i}": _write(root / f"speech/s{i}.wav", 0.1 * rng.standard_normal(2 * SR)) for i in range(8)}
    rir = np.zeros(SR // 2)
    rir[37] = -0.8  # pre-delay and a negative direct path
    rir[38:] = 0.05 * rng.standard_normal(len(rir) - 38) * np.exp(-np.arange(len(rir) - 38) / (0.05 * SR))
    rirs = {"r0": _write(root / "rirs/r0.wav", rir)}
    out = {name: _datadir(root / "data" / name, table)
           for name, table in (("noise", noise), ("music", music), ("babble", speech), ("rirs", rirs))}
    (root / "music.list").write_text("# music files\n" + "".join(f"{p}\n" for p in music.values()) + "\n")
    out["music_list"] = root / "music.list"
    return out


def _view(seconds: float = 2.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
            ).astype(np.float32)


def _snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    noise = mixed.astype(np.float64) - clean
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2)))


@pytest.mark.parametrize("category,snr", [("noise", [0, 15]), ("music", [5, 15]), ("babble", [13, 20])])
def test_snr_matches_request(sources, category, snr):
    aug = Augmenter.from_config({"prob": 1.0, category: {"source": str(sources[category]), "snr": snr}}, SR)
    x = _view()
    drawn = []
    for seed in range(8):
        y, info = aug.apply(x, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == x.shape and info["additive"] == category
        assert snr[0] <= info["snr_db"] <= snr[1]
        assert abs(_snr(x, y) - info["snr_db"]) < 0.5
        drawn.append(info["snr_db"])
    assert np.ptp(drawn) > 1.0  # SNRs are drawn, not fixed


def test_babble_uses_configured_number_of_sources(sources):
    aug = Augmenter.from_config({"prob": 1.0, "babble": {"source": str(sources["babble"]), "num_speakers": [3, 5]}},
                                SR)
    counts = set()
    for seed in range(30):
        _, info = aug.apply(_view(0.5), np.random.default_rng(seed))
        assert 3 <= len(info["sources"]) <= 5 and len(set(info["sources"])) == len(info["sources"])
        assert set(info["sources"]) <= {f"s{i}" for i in range(8)}
        counts.add(len(info["sources"]))
    assert counts == {3, 4, 5}
    # The babble defaults are the MUSAN recipe's: 3-7 speakers at 13-20 dB.
    default = Augmenter.from_config({"babble": {"source": str(sources["babble"])}}, SR)
    a = default.additive["babble"][0]
    assert a.num_speakers == [3, 7] and a.snr == [13.0, 20.0]


def test_reverb_keeps_length_and_direct_path(sources):
    aug = Augmenter.from_config({"prob": 1.0, "reverb": {"source": str(sources["rirs"]), "prob": 1.0}}, SR)
    x = (0.1 * np.random.default_rng(5).standard_normal(2 * SR)).astype(np.float32)  # white: sharp correlation
    y, info = aug.apply(x, np.random.default_rng(0))
    assert info["reverb"] == "r0" and "additive" not in info
    assert y.shape == x.shape and not np.allclose(y, x, atol=1e-3)
    # Direct path aligned at lag 0 with unit gain: the cross-correlation peaks at 0 and the
    # first sample is unchanged; the tail adds energy.
    xc = np.correlate(y[:8000].astype(np.float64), x[:8000].astype(np.float64), mode="full")
    assert int(np.argmax(xc)) - (8000 - 1) == 0
    assert y[0] == pytest.approx(x[0], abs=1e-6)
    assert np.mean(y.astype(np.float64) ** 2) > np.mean(x.astype(np.float64) ** 2)
    # A pure delayed impulse is the identity.
    impulse = np.zeros(100)
    impulse[40] = 0.5
    np.testing.assert_allclose(reverberate(x.astype(np.float64), impulse), x, atol=1e-6)


def test_deterministic_and_probability(sources):
    cfg = {"prob": 0.6, "noise": {"source": str(sources["noise"])}, "music": {"source": str(sources["music_list"])},
           "babble": {"source": str(sources["babble"])}, "reverb": {"source": str(sources["rirs"]), "prob": 0.5},
           "speed": [0.9, 1.0, 1.1], "volume": [-6, 6]}
    aug = Augmenter.from_config(cfg, SR)
    x = _view(1.0)
    a = aug(x, np.random.default_rng(123))
    b = aug(x, np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    outs = [aug.apply(x, np.random.default_rng(s)) for s in range(40)]
    assert all(y.shape == x.shape and np.isfinite(y).all() for y, _ in outs)
    done = [info for _, info in outs if info["augmented"]]
    assert 10 < len(done) < 36
    assert {i["additive"] for i in done} == {"noise", "music", "babble"}
    assert any("reverb" in i for i in done) and any("reverb" not in i for i in done)
    assert {i["speed"] for i in done} == {0.9, 1.0, 1.1} and all(-6 <= i["gain_db"] <= 6 for i in done)
    for y, info in outs:
        if not info["augmented"]:
            np.testing.assert_array_equal(y, x)
    identity = Augmenter.from_config(None, SR)
    np.testing.assert_array_equal(identity(x, np.random.default_rng(0)), x)


def test_babble_snr_per_source(sources):
    """snr_per_source: k sources each at the drawn SNR relative to the view (uncorrelated: the sum is
    10 log10(k) dB louder); by default their equal-power sum is at the drawn SNR."""
    x = _view(1.0)
    for per_source in (True, False):
        aug = Augmenter.from_config({"prob": 1.0, "babble": {"source": str(sources["babble"]), "snr": [13, 13],
                                                             "num_speakers": [3, 5], "snr_per_source": per_source}}, SR)
        for seed in range(6):
            y, info = aug.apply(x, np.random.default_rng(seed))
            k = len(info["sources"])
            want = 13 - 10 * np.log10(k) if per_source else 13.0
            assert abs(_snr(x, y) - want) < 0.6, (per_source, k, _snr(x, y))
            assert info["snr_db"] == ([13.0] * k if per_source else 13.0)


def test_reverb_drawn_among_the_additive_categories(sources):
    """reverb.weight: each augmented view gets one effect, reverb or an additive category, drawn by weight
    (voxceleb_trainer's scheme: clean, reverb, music, babble, noise, music again, each 1/6)."""
    cfg = {"prob": 5 / 6, "noise": {"source": str(sources["noise"]), "weight": 1},
           "music": {"source": str(sources["music"]), "weight": 2}, "babble": {"source": str(sources["babble"]),
           "weight": 1}, "reverb": {"source": str(sources["rirs"]), "weight": 1}}
    aug = Augmenter.from_config(cfg, SR)
    x = _view(0.2)
    infos = [aug.apply(x, np.random.default_rng(s))[1] for s in range(1200)]
    effect = ["clean" if not i["augmented"] else i.get("additive", "reverb" if "reverb" in i else "none")
              for i in infos]
    assert not any("reverb" in i and "additive" in i for i in infos)
    freq = {k: effect.count(k) / len(effect) for k in ("clean", "reverb", "music", "babble", "noise")}
    want = {"clean": 1 / 6, "reverb": 1 / 6, "music": 2 / 6, "babble": 1 / 6, "noise": 1 / 6}
    assert all(abs(freq[k] - want[k]) < 0.04 for k in want), freq
    with pytest.raises(ConfigError, match="weight .* replaces prob"):
        Augmenter.from_config({"reverb": {"source": str(sources["rirs"]), "weight": 1, "prob": 0.5}}, SR)


def test_list_file_relative_paths_and_cache(tmp_path, monkeypatch, sources):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "clips/a.wav", np.full(1000, 0.25))
    Path("noise.list").write_text("clips/a.wav\n")
    src = AudioSource("noise.list", SR, "noise")
    assert len(src) == 1
    seg = src.segment(0, 2500, np.random.default_rng(0))
    assert seg.shape == (2500,) and np.allclose(seg, 0.25)  # looped
    assert src.load(0) is src.load(0)  # decoded once
    aug = Augmenter.from_config({"prob": 1, "noise": {"source": "noise.list", "snr": [10, 10]}}, SR)
    y, info = aug.apply(_view(0.5), np.random.default_rng(0))
    assert info["sources"] == ["000000"] and abs(_snr(_view(0.5), y) - 10) < 0.5


def test_source_errors_name_the_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=r"augment.noise: source 'data/none' not found"):
        Augmenter.from_config({"noise": {"source": "data/none"}}, SR)
    Path("empty.list").write_text("# nothing\n")
    with pytest.raises(SourceError, match=r"augment.music: source 'empty.list' lists no audio"):
        Augmenter.from_config({"music": {"source": "empty.list"}}, SR)
    Path("dir").mkdir()
    with pytest.raises(SourceError, match=r"augment.reverb: source 'dir': directory without wav.scp"):
        Augmenter.from_config({"reverb": {"source": "dir"}}, SR)
    Path("bad.list").write_text("missing.wav\n")
    aug = Augmenter.from_config({"prob": 1, "babble": {"source": "bad.list"}}, SR)  # lazy: no error yet
    with pytest.raises(SourceError, match=r"augment.babble: source 'bad.list'.*missing.wav"):
        aug(_view(0.5), np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"augment.noise: unknown key\(s\) snr_db; valid keys"):
        Augmenter.from_config({"noise": {"source": "x", "snr_db": [0, 1]}}, SR)
    with pytest.raises(ConfigError, match=r"augment.noise: 'source' is required"):
        Augmenter.from_config({"noise": {"snr": [0, 1]}}, SR)
    with pytest.raises(ConfigError, match=r"augment.music.snr: low 15.0 > high 5.0"):
        Augmenter.from_config({"music": {"source": "x", "snr": [15, 5]}}, SR)
    with pytest.raises(ConfigError, match=r"augment: unknown key\(s\) nois"):
        Augmenter.from_config({"nois": {}}, SR)


def test_random_eq_shapes_the_spectrum():
    """A +12 dB peaking band raises the tone at its centre by 12 dB; eq views differ from each other."""
    from scipy.signal import freqz

    from sslspk.augment.augmenter import Augmenter, biquad

    b, a = biquad("peaking", 1000.0, 1.0, 12.0, 16000)
    _, h = freqz(b, a, worN=[1000.0, 100.0, 6000.0], fs=16000)
    assert 20 * np.log10(abs(h[0])) == pytest.approx(12.0, abs=0.01)
    assert abs(20 * np.log10(abs(h[1]))) < 1.0
    for kind, lo, hi in (("lowshelf", 12.0, 0.0), ("highshelf", 0.0, 12.0)):
        b, a = biquad(kind, 1000.0, 0.7, 12.0, 16000)
        _, h = freqz(b, a, worN=[20.0, 7900.0], fs=16000)
        assert 20 * np.log10(abs(h)) == pytest.approx([lo, hi], abs=0.5)
    aug = Augmenter.from_config({"prob": 1.0, "eq": {"prob": 1.0, "bands": [2, 2]}}, 16000)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    y1, info = aug.apply(x, np.random.default_rng(1))
    y2 = aug(x, np.random.default_rng(2))
    assert len(info["eq"]) == 2 and y1.shape == x.shape and not np.allclose(y1, y2)
    with pytest.raises(ConfigError, match="augment.eq: unknown key"):
        Augmenter.from_config({"eq": {"gain": 3}}, 16000)


def test_batch_by_threads_equals_batch_in_one_thread(sources):
    """CropDataset.__getitems__ with several threads (the trainer's loading without workers) gives the
    items of one thread, bit for bit, with every augmentation on and a cache small enough to evict."""
    from sslspk.train.dataset import CropDataset, ViewSpec

    aug = {"prob": 1.0, "noise": {"source": str(sources["noise"])}, "music": {"source": str(sources["music_list"])},
           "babble": {"source": str(sources["babble"])}, "reverb": {"source": str(sources["rirs"]), "prob": 0.5},
           "eq": {"prob": 0.5}, "speed": [0.9, 1.0, 1.1], "cache_mb": 0.1}
    ds = CropDataset(sources["babble"], [ViewSpec(1.0, 2), ViewSpec(0.5, 1)], SR, aug, seed=3)
    indices = [5, 0, 7, 3, 3, 1, 6, 2, 4]
    one = ds.__getitems__(indices)
    ds.threads = 4
    for _ in range(3):
        many = ds.__getitems__(indices)
        assert [it["index"] for it in many] == indices
        for a, b in zip(one, many):
            for va, vb in zip(a["views"], b["views"]):
                assert torch.equal(va, vb)
