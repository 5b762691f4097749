"""Temporal pooling layers: statistics pooling and attentive statistics pooling (ECAPA-TDNN)."""

from __future__ import annotations

import torch
from torch import nn

_VAR_FLOOR = 1e-5


def weighted_stats(x: torch.Tensor, w: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``x [B, C, T]`` over time, weighted by ``w`` (summing to 1 over T).

    Computed in float32 (also under autocast), the variance floored at 1e-5.
    """
    x = x.float()
    if w is None:
        mean = x.mean(dim=-1)
        var = x.square().mean(dim=-1) - mean.square()
    else:
        w = w.float()
        mean = (x * w).sum(dim=-1)
        var = (x.square() * w).sum(dim=-1) - mean.square()
    return mean, var.clamp(min=_VAR_FLOOR).sqrt()


def uniform_weights(mask: torch.Tensor) -> torch.Tensor:
    """Frame weights ``[B, 1, T]`` averaging the valid frames of ``mask`` (``[B, 1, T]``, 1 = valid)."""
    mask = mask.float()
    return mask / mask.sum(dim=-1, keepdim=True)


class StatsPool(nn.Module):
    """``[B, C, T]`` → ``[B, 2C]``: concatenated temporal mean and standard deviation.

    ``mask`` (``[B, 1, T]``, 1 = valid frame) restricts the statistics to each utterance's frames.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat(weighted_stats(x, None if mask is None else uniform_weights(mask)), dim=1)


class AttentiveStatsPool(nn.Module):
    """Channel-dependent attentive statistics pooling ``[B, C, T]`` → ``[B, 2C]``.

    Per-channel frame weights come from a small 1x1-conv network (tanh bottleneck of
    ``attention_channels``) whose input is, with ``global_context``, each frame
    concatenated with the utterance's mean and std (the ECAPA-TDNN variant). ``mask``
    (``[B, 1, T]``, 1 = valid frame) keeps padded frames out of the statistics and the softmax.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        in_ch = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_ch, attention_channels, 1), nn.ReLU(), nn.BatchNorm1d(attention_channels), nn.Tanh(),
            nn.Conv1d(attention_channels, channels, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        if self.global_context:
            mean, std = weighted_stats(x, None if mask is None else uniform_weights(mask))
            t = x.shape[-1]
            h = torch.cat([x, mean.unsqueeze(-1).expand(-1, -1, t), std.unsqueeze(-1).expand(-1, -1, t)], dim=1)
        logits = self.attention(h)
        if mask is not None:
            logits = logits.masked_fill(mask == 0, float("-inf"))
        return torch.cat(weighted_stats(x, torch.softmax(logits, dim=-1)), dim=1)
