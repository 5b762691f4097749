"""Audio reading (files, pipes, segments, resampling, channels) and the feature front-ends."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_wav

from sslspk.data.audio import AudioError, load_audio, num_samples, read_audio
from sslspk.frontend.features import Frontend, FrontendConfig
from sslspk.models import build_model
from sslspk.utils.config import ConfigError


def test_file_pipe_and_segment(tmp_path):
    p = write_wav(tmp_path / "a.wav", 1.0)
    ref, sr = read_audio(str(p))
    assert sr == 16000 and ref.shape == (16000,) and ref.dtype == np.float32
    piped, _ = read_audio(f"cat {p} |")
    np.testing.assert_array_equal(piped, ref)
    seg = load_audio(str(p), None, 0.25, 0.5)
    np.testing.assert_array_equal(seg, ref[4000:8000])
    np.testing.assert_array_equal(load_audio(f"cat {p} |", None, 0.25, 0.5), seg)
    assert num_samples(str(p)) == (16000, 16000) == num_samples(f"cat {p} |")


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (make setup installs it)")
def test_sox_pipe_resamples(tmp_path):
    p = write_wav(tmp_path / "a.wav", 1.0)
    wav, sr = read_audio(f"sox {p} -r 8000 -t wav - |")
    assert sr == 8000 and abs(len(wav) - 8000) <= 1


def test_resample_and_multichannel(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1).astype(np.float32) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 8000)
    wav = load_audio(str(tmp_path / "s.wav"), 16000)
    assert len(wav) == 16000
    # Channels are averaged; the 440 Hz tone survives resampling at half amplitude.
    spec = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spec) * 16000 / len(wav) - 440) < 2
    assert np.abs(wav).max() == pytest.approx(0.25, rel=0.05)


@pytest.mark.parametrize("entry,msg", [
    ("/no/such/file.wav", "cannot read audio '/no/such/file.wav'"),
    ("false |", "pipe command failed"),
    ("true |", "produced no output"),
])
def test_bad_audio_names_entry(entry, msg):
    with pytest.raises(AudioError, match=msg):
        read_audio(entry)


def test_not_audio(tmp_path):
    (tmp_path / "x.wav").write_text("hello")
    with pytest.raises(AudioError, match="x.wav"):
        read_audio(str(tmp_path / "x.wav"))


@pytest.mark.parametrize("kind,dim", [("fbank", 40), ("mfcc", 20), ("logmel", 40)])
def test_frontends_shapes_and_cmn(kind, dim):
    wav = torch.randn(2, 16000) * 0.1
    fe = Frontend(FrontendConfig(type=kind, num_mel_bins=40, num_ceps=20, cmn=True))
    feats = fe(wav)
    assert feats.shape[0] == 2 and feats.shape[2] == dim == fe.dim
    assert 95 <= feats.shape[1] <= 101
    assert feats.mean(1).abs().max() < 1e-4


def test_fbank_matches_torchaudio_kaldi():
    import torchaudio.compliance.kaldi as K

    wav = torch.randn(1, 8000) * 0.1
    fe = Frontend(FrontendConfig(type="fbank", num_mel_bins=40, cmn=False))
    ref = K.fbank(wav * 32768, num_mel_bins=40, sample_frequency=16000, dither=0.0)
    torch.testing.assert_close(fe(wav)[0], ref, atol=1e-3, rtol=0)  # batched fbank: float32 rounding


def test_stats_model_and_config_errors():
    m = build_model({"type": "stats", "frontend": {"type": "fbank", "num_mel_bins": 24}})
    assert m(torch.randn(3, 16000) * 0.1).shape == (3, 48) and m.embedding_dim == 48
    with pytest.raises(ConfigError, match="num_mel_bin.*valid keys"):
        build_model({"type": "stats", "frontend": {"num_mel_bin": 24}})
    with pytest.raises(ConfigError, match="unknown model type 'nope'"):
        build_model({"type": "nope"})
