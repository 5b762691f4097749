"""Speaker encoders (ECAPA-TDNN, thin ResNet), pooling, SpecAugment and the batched Kaldi fbank."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from sslspk.frontend import Frontend, FrontendConfig, SpecAugConfig, SpecAugment
from sslspk.models import build_model
from sslspk.models.base import count_parameters
from sslspk.models.pooling import AttentiveStatsPool, StatsPool
from sslspk.utils.config import ConfigError

TINY = {
    "ecapa_tdnn": {"type": "ecapa_tdnn", "channels": 64, "mfa_channels": 96, "attention_channels": 16,
                   "se_channels": 16, "embedding_dim": 48, "frontend": {"num_mel_bins": 40}},
    "resnet": {"type": "resnet", "base_width": 4, "num_blocks": [1, 1, 1, 1], "embedding_dim": 40,
               "frontend": {"num_mel_bins": 40}},
}


def _speechlike(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Tones with a syllable-rate envelope plus noise, roughly speech-level (as float32 [B, T])."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    out = []
    for _ in range(batch):
        f0 = rng.uniform(100, 250)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
        out.append(0.1 * x + 0.01 * rng.standard_normal(samples))
    return torch.tensor(np.stack(out), dtype=torch.float32)


@pytest.mark.parametrize("kind", ["ecapa_tdnn", "resnet"])
def test_tiny_encoder_shapes_and_gradients(kind):
    torch.manual_seed(0)
    model = build_model(TINY[kind])
    dim = TINY[kind]["embedding_dim"]
    assert model.embedding_dim == dim
    wav = _speechlike(3, 16000)
    emb = model(wav)
    assert emb.shape == (3, dim) and torch.isfinite(emb).all()
    emb.square().sum().backward()
    params = [(n, p) for n, p in model.named_parameters()]
    assert params and all(p.grad is not None for _, p in params), [n for n, p in params if p.grad is None]
    no_grad = [n for n, p in params if p.grad.abs().sum() == 0]
    assert not no_grad, no_grad
    model.eval()
    with torch.no_grad():
        a, b = model(wav), model(wav[:1])
    torch.testing.assert_close(a[:1], b, atol=1e-4, rtol=1e-4)  # eval: per-utterance, batch-independent


@pytest.mark.parametrize("kind", ["ecapa_tdnn", "resnet"])
@pytest.mark.parametrize("samples", [8000, 200])  # 0.5 s, and shorter than one 25 ms window
def test_short_inputs(kind, samples):
    model = build_model(TINY[kind]).eval()
    with torch.no_grad():
        emb = model(_speechlike(2, samples))
    assert emb.shape == (2, model.embedding_dim) and torch.isfinite(emb).all()


@pytest.mark.parametrize("cfg,low,high", [
    ({"type": "ecapa_tdnn", "channels": 512}, 5.9e6, 6.5e6),      # paper: 6.2M
    ({"type": "ecapa_tdnn", "channels": 1024}, 14.2e6, 15.2e6),   # paper: 14.7M
    ({"type": "resnet", "base_width": 32}, 6.3e6, 6.9e6),         # thin ResNet34: ~6.6M
    ({"type": "resnet", "base_width": 64}, 23e6, 25e6),
])
def test_standard_sizes_parameter_counts(cfg, low, high):
    model = build_model(cfg)
    n = count_parameters(model)
    assert low <= n <= high, n
    assert model.embedding_dim == (192 if cfg["type"] == "ecapa_tdnn" else 256)
    assert model.frontend.dim == 80


def test_specaugment_only_in_train_mode():
    torch.manual_seed(0)
    cfg = {**TINY["ecapa_tdnn"], "specaug": {"freq_masks": 2, "freq_width": 6, "time_masks": 2, "time_width": 8}}
    model = build_model(cfg)
    wav = _speechlike(4, 16000)
    clean = model.frontend(wav)
    model.eval()
    torch.testing.assert_close(model.features(wav), clean)
    model.train()
    masked = model.features(wav)
    zero = (masked == 0) & (clean != 0)
    assert zero.any()
    # Masks are whole frequency bands / time spans, at most 2 x 6 bins and 2 x 8 frames, per utterance.
    for b in range(4):
        full_bins = zero[b].all(dim=0).sum().item()
        full_frames = zero[b].all(dim=1).sum().item()
        assert full_bins <= 12 and full_frames <= 16
        rest = zero[b][:, ~zero[b].all(dim=0)][~zero[b].all(dim=1)]
        assert not rest.any()  # every zeroed cell lies in a masked band or span
    assert not torch.equal(zero[0], zero[1])  # independent masks per utterance
    assert build_model(TINY["ecapa_tdnn"]).specaug is None


def test_specaugment_module_bounds():
    torch.manual_seed(1)
    sa = SpecAugment(SpecAugConfig(freq_masks=1, freq_width=5, time_masks=0, time_width=0)).train()
    x = torch.ones(64, 30, 20)
    y = sa(x)
    bins = (y == 0).all(dim=1).sum(dim=1)
    assert bins.max() <= 5 and bins.float().mean() > 1 and not (y[:, :, :] == 0).all(dim=2).any()
    assert torch.equal(sa.eval()(x), x)
    with pytest.raises(ConfigError, match="freq_width"):
        SpecAugConfig(freq_width=-1)


@pytest.mark.parametrize("mel,sr,samples", [(80, 16000, 32000), (40, 16000, 12345), (23, 8000, 8000)])
def test_batched_fbank_matches_kaldi(mel, sr, samples):
    import torchaudio.compliance.kaldi as K

    wav = _speechlike(4, samples, seed=mel)
    fe = Frontend(FrontendConfig(type="fbank", num_mel_bins=mel, sample_rate=sr, cmn=False))
    ours = fe(wav)
    ref = torch.stack([K.fbank(w[None] * 32768, num_mel_bins=mel, sample_frequency=sr, dither=0.0) for w in wav])
    assert ours.shape == ref.shape
    diff = (ours - ref).abs()
    assert diff.max() < 1e-3, diff.max()
    # CMN version equals the reference minus its mean.
    cmn = Frontend(FrontendConfig(type="fbank", num_mel_bins=mel, sample_rate=sr, cmn=True))(wav)
    assert (cmn - (ref - ref.mean(dim=1, keepdim=True))).abs().max() < 1e-3


def test_batched_fbank_white_noise():
    """White noise: agreement to float32 rounding (a rare low-energy low-frequency bin reaches ~3e-3)."""
    import torchaudio.compliance.kaldi as K

    torch.manual_seed(3)
    wav = torch.randn(16, 16000) * 0.1
    ref = torch.stack([K.fbank(w[None] * 32768, num_mel_bins=80, dither=0.0) for w in wav])
    diff = (Frontend(FrontendConfig(type="fbank", cmn=False))(wav) - ref).abs()
    assert diff.max() < 1e-2 and diff.mean() < 1e-5 and torch.quantile(diff.flatten(), 0.9999) < 1e-3


def test_batched_fbank_speed_note(capsys):
    """Not an assertion on time: prints batched vs per-utterance speed (B=64, 2 s) for the record."""
    import torchaudio.compliance.kaldi as K

    wav = _speechlike(64, 32000)
    fe = Frontend(FrontendConfig(type="fbank", cmn=False))

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    batched = best(lambda: fe(wav))
    loop = best(lambda: torch.stack([K.fbank(w[None] * 32768, num_mel_bins=80, dither=0.0) for w in wav]))
    with capsys.disabled():
        print(f"\n[fbank B=64 x 2 s, {torch.get_num_threads()} threads] batched {batched * 1e3:.1f} ms, "
              f"per-utterance loop {loop * 1e3:.1f} ms")
    assert batched > 0 and loop > 0


def test_pooling():
    x = torch.randn(2, 6, 50)
    out = StatsPool()(x)
    torch.testing.assert_close(out[:, :6], x.mean(-1))
    torch.testing.assert_close(out[:, 6:], x.std(-1, unbiased=False), atol=1e-4, rtol=1e-4)
    asp = AttentiveStatsPool(6, 4).eval()
    torch.nn.init.zeros_(asp.attention[-1].weight)
    torch.nn.init.zeros_(asp.attention[-1].bias)
    torch.testing.assert_close(asp(x), out, atol=1e-4, rtol=1e-4)  # uniform weights = plain statistics
    assert AttentiveStatsPool(6, 4, global_context=False)(x).shape == (2, 12)


def test_config_errors():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) chanels; valid keys: .*channels.*frontend.*specaug"):
        build_model({"type": "ecapa_tdnn", "chanels": 64})
    with pytest.raises(ConfigError, match="model.specaug: unknown key.*freq_masks"):
        build_model({"type": "resnet", "specaug": {"freq_mask": 2}})
    with pytest.raises(ConfigError, match="model.frontend: unknown key"):
        build_model({"type": "resnet", "frontend": {"mel": 2}})
    with pytest.raises(ConfigError, match="num_blocks"):
        build_model({"type": "resnet", "num_blocks": [3, 4, 6]})
    with pytest.raises(ConfigError, match="divisible"):
        build_model({"type": "ecapa_tdnn", "channels": 60})
    with pytest.raises(ConfigError, match="available: ecapa_tdnn, resnet, stats"):
        build_model({"type": "xvector"})


def test_other_frontends_in_encoder():
    for kind in ("mfcc", "logmel"):
        cfg = {**TINY["resnet"], "frontend": {"type": kind, "num_mel_bins": 24, "num_ceps": 20}}
        model = build_model(cfg).eval()
        with torch.no_grad():
            assert model(_speechlike(2, 8000)).shape == (2, 40)
