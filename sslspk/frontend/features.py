"""Feature front-ends: batched Kaldi-compatible fbank, Kaldi MFCC (torchaudio) and a log-mel spectrogram.

All front-ends map a batch of waveforms ``[B, T]`` (float, roughly in [-1, 1]) to
features ``[B, frames, dim]``, optionally with per-utterance cepstral mean normalisation.
Inputs shorter than one analysis window are zero-padded to one window (one frame out).
A batch of zero-padded utterances of different lengths gives, with their ``lengths``, the
frames each would give alone: frames never straddle utterances (no centring), and the mean
normalisation uses each utterance's own frames (:meth:`Frontend.frame_lengths`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

#: Kaldi's log floor (``std::numeric_limits<float>::epsilon()``).
_EPS = float(torch.finfo(torch.float32).eps)


@dataclass
class FrontendConfig:
    """Front-end settings (the ``frontend:`` block of a model YAML)."""

    type: str = "fbank"  # fbank | mfcc | logmel
    sample_rate: int = 16000
    num_mel_bins: int = 80
    num_ceps: int = 30  # mfcc only
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    cmn: bool = True  # subtract the per-utterance mean of each feature dimension

    def __post_init__(self) -> None:
        from sslspk.utils.config import check_ranges

        check_ranges(self, sample_rate=">=1", num_mel_bins=">=1", num_ceps=">=1", frame_length_ms=">0",
                     frame_shift_ms=">0", dither=">=0")


def mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    """Kaldi's mel scale ``1127 ln(1 + f / 700)``."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log1p(freq / 700.0)


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float,
                    low_freq: float = 20.0, high_freq: float = 0.0) -> torch.Tensor:
    """Triangular mel filters as in Kaldi's ``MelBanks``: ``[padded_window // 2 + 1, num_bins]``.

    Bins are equally spaced on the mel scale between ``low_freq`` and ``high_freq``
    (``<= 0``: offset from Nyquist); the triangles are drawn in the mel domain and the
    Nyquist FFT bin gets zero weight, as in Kaldi.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got {low_freq}, {high_freq}")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + delta * torch.arange(num_bins + 2, dtype=torch.float64)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    num_fft_bins = padded_window // 2
    mel = mel_scale(torch.arange(num_fft_bins, dtype=torch.float64) * sample_rate / padded_window)[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)  # [num_bins, num_fft_bins]
    banks = torch.cat([banks, torch.zeros(num_bins, 1, dtype=torch.float64)], dim=1)  # Nyquist bin
    return banks.T.contiguous().float()


def frame_mask(frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Float mask ``[B, num_frames]``: 1 on the first ``frame_lengths[b]`` frames of row ``b``, else 0."""
    steps = torch.arange(num_frames, device=frame_lengths.device)
    return (steps < frame_lengths[:, None]).float()


class KaldiFbank(nn.Module):
    """Batched Kaldi log mel filterbank (``snip_edges``, povey window, pre-emphasis 0.97, DC removal,
    power spectrum, log with float-epsilon floor); matches ``torchaudio.compliance.kaldi.fbank``.

    Input ``[B, T]`` in Kaldi's 16-bit sample scale; output ``[B, frames, num_mel_bins]``.
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 80, frame_length_ms: float = 25.0,
                 frame_shift_ms: float = 10.0, dither: float = 0.0, preemph: float = 0.97,
                 low_freq: float = 20.0, high_freq: float = 0.0):
        super().__init__()
        self.window_size = int(sample_rate * frame_length_ms * 0.001)
        self.window_shift = int(sample_rate * frame_shift_ms * 0.001)
        self.padded = 1 << (self.window_size - 1).bit_length()  # next power of two
        self.dither = dither
        self.preemph = preemph
        window = torch.hann_window(self.window_size, periodic=False, dtype=torch.float64).pow(0.85)
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("mel_banks", kaldi_mel_banks(num_mel_bins, self.padded, sample_rate, low_freq,
                                                          high_freq), persistent=False)
        self.matmul_dft = False  # set by ONNX export: framing and DFT as convolution/matmuls (no unfold, no FFT)

    def _power_spectrum(self, frames: torch.Tensor) -> torch.Tensor:
        if not self.matmul_dft:
            spec = torch.fft.rfft(frames, n=self.padded)
            return spec.real.square() + spec.imag.square()
        n = torch.arange(self.window_size, dtype=torch.float64)[:, None]
        k = torch.arange(self.padded // 2 + 1, dtype=torch.float64)[None, :]
        angle = 2 * torch.pi * n * k / self.padded  # zero padding to `padded` = fewer rows
        re = frames @ torch.cos(angle).to(frames.dtype)
        im = frames @ torch.sin(angle).to(frames.dtype)
        return re.square() + im.square()

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (Kaldi ``snip_edges=true``)."""
        return 0 if num_samples < self.window_size else 1 + (num_samples - self.window_size) // self.window_shift

    def _frames(self, wav: torch.Tensor) -> torch.Tensor:
        if not self.matmul_dft:
            return wav.unfold(-1, self.window_size, self.window_shift)  # [B, F, W] (a view)
        # ONNX: framing as a strided convolution with an identity kernel (unfold does not export).
        eye = torch.eye(self.window_size, dtype=wav.dtype, device=wav.device)[:, None, :]
        return torch.nn.functional.conv1d(wav[:, None, :], eye, stride=self.window_shift).transpose(1, 2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        frames = self._frames(wav)
        if self.dither > 0.0:
            frames = frames + self.dither * torch.randn_like(frames)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        if self.preemph != 0.0:
            prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - self.preemph * prev
        frames = frames * self.window
        return torch.clamp(self._power_spectrum(frames) @ self.mel_banks, min=_EPS).log()


class Frontend(nn.Module):
    """Waveforms ``[B, T]`` → features ``[B, frames, dim]`` (always computed in float32, no autocast)."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        if cfg.type not in ("fbank", "mfcc", "logmel"):
            from sslspk.utils.config import ConfigError

            raise ConfigError(f"model.frontend.type must be fbank, mfcc or logmel, got {cfg.type!r}")
        self.cfg = cfg
        self.min_samples = int(cfg.sample_rate * cfg.frame_length_ms / 1000)
        if cfg.type == "fbank":
            self.fbank = KaldiFbank(cfg.sample_rate, cfg.num_mel_bins, cfg.frame_length_ms, cfg.frame_shift_ms,
                                    cfg.dither)
        elif cfg.type == "logmel":
            import torchaudio

            n_fft = 1 << (self.min_samples - 1).bit_length()
            self.melspec = torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=n_fft, win_length=self.min_samples,
                hop_length=int(cfg.sample_rate * cfg.frame_shift_ms / 1000),
                n_mels=cfg.num_mel_bins, window_fn=torch.hamming_window, center=False)

    @property
    def dim(self) -> int:
        return self.cfg.num_ceps if self.cfg.type == "mfcc" else self.cfg.num_mel_bins

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of utterances of ``lengths`` samples (as :meth:`forward` gives them one at a time)."""
        cfg = self.cfg
        if cfg.type == "logmel":
            window, shift = self.melspec.n_fft, self.melspec.hop_length
        else:  # Kaldi framing (snip_edges) as KaldiFbank and torchaudio's kaldi.mfcc compute it
            window = int(cfg.sample_rate * cfg.frame_length_ms * 0.001)
            shift = int(cfg.sample_rate * cfg.frame_shift_ms * 0.001)
        return 1 + (lengths.clamp(min=window) - window) // shift

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[B, frames, dim]``; ``lengths`` (samples of each zero-padded row) limits the
        mean normalisation to each utterance's frames (the frames after them are padding)."""
        cfg = self.cfg
        if wav.dim() != 2:
            raise ValueError(f"expected waveforms [B, T], got shape {tuple(wav.shape)}")
        if wav.shape[1] < self.min_samples:
            wav = torch.nn.functional.pad(wav, (0, self.min_samples - wav.shape[1]))
        with torch.autocast(device_type=wav.device.type, enabled=False):
            wav = wav.float()
            if cfg.type == "logmel":
                feats = (self.melspec(wav) + 1e-6).log().transpose(1, 2)
            elif cfg.type == "fbank":
                # Kaldi's fbank expects 16-bit-scale samples.
                feats = self.fbank(wav * 32768.0)
            else:
                import torchaudio.compliance.kaldi as K

                kw = dict(sample_frequency=cfg.sample_rate, frame_length=cfg.frame_length_ms,
                          frame_shift=cfg.frame_shift_ms, dither=cfg.dither, num_mel_bins=cfg.num_mel_bins)
                feats = torch.stack([K.mfcc(w.unsqueeze(0) * 32768.0, num_ceps=cfg.num_ceps, **kw) for w in wav])
            if cfg.cmn and lengths is None:
                feats = feats - feats.mean(dim=1, keepdim=True)
            elif cfg.cmn:
                valid = frame_mask(self.frame_lengths(lengths).to(feats.device), feats.shape[1]).unsqueeze(-1)
                feats = feats - (feats * valid).sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True)
        return feats
