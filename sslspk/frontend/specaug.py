"""SpecAugment-style masking of features: random frequency bands and time spans set to zero (training only)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpecAugConfig:
    """The ``specaug:`` block of a model YAML; widths are maxima (drawn uniformly in ``[0, width]``)."""

    freq_masks: int = 2
    freq_width: int = 8  # mel bins
    time_masks: int = 2
    time_width: int = 10  # frames

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                from sslspk.utils.config import ConfigError

                raise ConfigError(f"model.specaug.{name}: expected a non-negative integer, got {value!r}")


def _band_mask(batch: int, size: int, num: int, width: int, device: torch.device) -> torch.Tensor:
    """``[batch, size]`` bool mask, True inside ``num`` random bands of width ``U{0..width}`` per row."""
    if num == 0 or width == 0 or size == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    w = torch.randint(0, min(width, size) + 1, (batch, num, 1), device=device)
    start = (torch.rand(batch, num, 1, device=device) * (size - w + 1)).long()
    pos = torch.arange(size, device=device).view(1, 1, size)
    return ((pos >= start) & (pos < start + w)).any(dim=1)


class SpecAugment(nn.Module):
    """Masks features ``[B, frames, dim]`` in ``train()`` mode; the identity in ``eval()`` mode.

    Masked values are set to 0, the per-utterance mean after CMN. Each utterance gets its own masks.
    """

    def __init__(self, cfg: SpecAugConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return feats
        c = self.cfg
        b, t, d = feats.shape
        fmask = _band_mask(b, d, c.freq_masks, c.freq_width, feats.device)[:, None, :]
        tmask = _band_mask(b, t, c.time_masks, c.time_width, feats.device)[:, :, None]
        return feats.masked_fill(fmask | tmask, 0.0)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"freq_masks={c.freq_masks}, freq_width={c.freq_width}, time_masks={c.time_masks}, "
                f"time_width={c.time_width}")
