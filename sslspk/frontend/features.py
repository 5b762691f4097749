"""Feature front-ends (torchaudio): Kaldi-compatible fbank/MFCC and a log-mel spectrogram.

All front-ends map a batch of waveforms ``[B, T]`` (float, roughly in [-1, 1]) to
features ``[B, frames, dim]``, optionally with per-utterance cepstral mean normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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


class Frontend(nn.Module):
    """Waveforms ``[B, T]`` → features ``[B, frames, dim]``."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        if cfg.type not in ("fbank", "mfcc", "logmel"):
            raise ValueError(f"frontend type must be fbank, mfcc or logmel, got {cfg.type!r}")
        self.cfg = cfg
        if cfg.type == "logmel":
            import torchaudio

            n_fft = 2 ** int(torch.ceil(torch.log2(torch.tensor(cfg.sample_rate * cfg.frame_length_ms / 1000))))
            self.melspec = torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=int(n_fft),
                win_length=int(cfg.sample_rate * cfg.frame_length_ms / 1000),
                hop_length=int(cfg.sample_rate * cfg.frame_shift_ms / 1000),
                n_mels=cfg.num_mel_bins, window_fn=torch.hamming_window, center=False)

    @property
    def dim(self) -> int:
        return self.cfg.num_ceps if self.cfg.type == "mfcc" else self.cfg.num_mel_bins

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.type == "logmel":
            feats = (self.melspec(wav) + 1e-6).log().transpose(1, 2)
        else:
            import torchaudio.compliance.kaldi as K

            # Kaldi's fbank/mfcc expect 16-bit-scale samples; one utterance at a time.
            kw = dict(sample_frequency=cfg.sample_rate, frame_length=cfg.frame_length_ms,
                      frame_shift=cfg.frame_shift_ms, dither=cfg.dither, num_mel_bins=cfg.num_mel_bins)
            fn = (lambda w: K.fbank(w, **kw)) if cfg.type == "fbank" else \
                (lambda w: K.mfcc(w, num_ceps=cfg.num_ceps, **kw))
            feats = torch.stack([fn(w.unsqueeze(0) * 32768.0) for w in wav])
        if cfg.cmn:
            feats = feats - feats.mean(dim=1, keepdim=True)
        return feats
