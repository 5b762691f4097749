"""ECAPA-TDNN speaker encoder (Desplanques et al., Interspeech 2020).

Conv1d(k=5) → three SE-Res2Blocks (k=3, dilations 2, 3, 4, Res2Net scale 8, SE bottleneck)
with residual connections → multi-layer feature aggregation (the three block outputs
concatenated, 1x1 conv to ``mfa_channels``) → attentive statistics pooling with global
context → BN → linear → BN. Standard sizes: ``channels`` 512 (≈6.2M parameters) or 1024
(≈14.7M) with a 192-d embedding; ``channels: 64`` gives a tiny CPU variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslspk.frontend.features import FrontendConfig
from sslspk.frontend.specaug import SpecAugConfig
from sslspk.models.base import Encoder
from sslspk.models.pooling import AttentiveStatsPool


@dataclass
class EcapaConfig:
    """Encoder-specific keys of a ``model: {type: ecapa_tdnn}`` block."""

    channels: int = 512
    embedding_dim: int = 192
    mfa_channels: int = 1536
    attention_channels: int = 128
    se_channels: int = 128
    res2_scale: int = 8
    dilations: tuple[int, ...] = (2, 3, 4)
    global_context: bool = True

    def __post_init__(self) -> None:
        self.dilations = tuple(self.dilations)
        if self.channels % self.res2_scale:
            raise ValueError(f"channels ({self.channels}) must be divisible by res2_scale ({self.res2_scale})")
        if min(self.channels, self.embedding_dim, self.mfa_channels, self.attention_channels,
               self.se_channels, self.res2_scale) < 1 or not self.dilations:
            raise ValueError("sizes must be positive and dilations non-empty")


class ConvReluBn(nn.Module):
    """Conv1d → ReLU → BatchNorm1d ('same' length); ``mask`` zeroes padded input frames, as the
    convolution's own zero padding sees them, when the kernel spans several frames."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and self.conv.kernel_size[0] > 1:
            x = x * mask
        return self.bn(torch.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net dilated convolution: channel groups processed hierarchically (group i adds group i-1's output)."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(ConvReluBn(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        out = [groups[0]]
        y = None
        for conv, g in zip(self.convs, groups[1:]):
            y = conv(g if y is None else g + y, mask)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gating from the utterance mean (over the ``mask``'s frames): linear → ReLU → linear → sigmoid."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.fc1 = nn.Conv1d(channels, bottleneck, 1)
        self.fc2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            s = x.mean(dim=-1, keepdim=True)
        else:
            s = (x * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class SERes2Block(nn.Module):
    """1x1 conv → Res2 dilated conv → 1x1 conv → SE, plus the residual input."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int, se_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvReluBn(channels, channels, 1),
            Res2Conv(channels, kernel, dilation, scale),
            ConvReluBn(channels, channels, 1),
            SqueezeExcitation(channels, se_channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = x
        for layer in self.body:
            y = layer(y, mask)
        return x + y


class EcapaTdnn(Encoder):
    """ECAPA-TDNN on on-the-fly fbank features (see module docstring)."""

    type_name = "ecapa_tdnn"
    config_cls = EcapaConfig

    def __init__(self, cfg: EcapaConfig | None = None, frontend: FrontendConfig | None = None,
                 specaug: SpecAugConfig | None = None):
        super().__init__(frontend or FrontendConfig(), specaug)
        cfg = cfg or EcapaConfig()
        self.cfg = cfg
        c = cfg.channels
        self.layer1 = ConvReluBn(self.frontend.dim, c, kernel=5)
        self.blocks = nn.ModuleList(SERes2Block(c, 3, d, cfg.res2_scale, cfg.se_channels) for d in cfg.dilations)
        self.mfa = nn.Sequential(nn.Conv1d(c * len(cfg.dilations), cfg.mfa_channels, 1), nn.ReLU())
        self.pool = AttentiveStatsPool(cfg.mfa_channels, cfg.attention_channels, cfg.global_context)
        self.pool_bn = nn.BatchNorm1d(2 * cfg.mfa_channels)
        self.fc = nn.Linear(2 * cfg.mfa_channels, cfg.embedding_dim)
        self.emb_bn = nn.BatchNorm1d(cfg.embedding_dim)

    @property
    def embedding_dim(self) -> int:
        return self.cfg.embedding_dim

    def encode(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.layer1(feats.transpose(1, 2), mask)
        outs = []
        for block in self.blocks:
            x = block(x, mask)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1))
        x = self.pool_bn(self.pool(x, mask))
        return self.emb_bn(self.fc(x))
