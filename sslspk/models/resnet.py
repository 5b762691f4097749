"""Thin ResNet speaker encoder (ResNet34 layout, as in r-vector / VoxCeleb systems).

Features ``[B, frames, F]`` are treated as a one-channel image ``[B, 1, F, frames]``:
3x3 conv (``base_width``) → four stages of BasicBlocks (``num_blocks``, default
[3, 4, 6, 3]; widths ×1, ×2, ×4, ×8; stride 2 in stages 2-4) → frequency and channels
flattened → temporal statistics pooling (mean, std) → linear → embedding (BN).
``base_width: 32`` with 80 mel bins gives ≈6.6M parameters; ``base_width: 8`` a tiny CPU variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from sslspk.frontend.features import FrontendConfig
from sslspk.frontend.specaug import SpecAugConfig
from sslspk.models.base import Encoder
from sslspk.models.pooling import StatsPool


@dataclass
class ResNetConfig:
    """Encoder-specific keys of a ``model: {type: resnet}`` block."""

    base_width: int = 32
    num_blocks: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    embedding_dim: int = 256
    embedding_bn: bool = True  # BatchNorm1d on the embedding

    def __post_init__(self) -> None:
        self.num_blocks = [int(n) for n in self.num_blocks]
        if len(self.num_blocks) != 4 or min(self.num_blocks) < 1:
            raise ValueError(f"num_blocks must be 4 positive integers, got {self.num_blocks}")
        if self.base_width < 1 or self.embedding_dim < 1:
            raise ValueError("base_width and embedding_dim must be positive")


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN/ReLU and an identity (or 1x1-conv projection) shortcut.

    ``mask`` (``[B, 1, 1, T]``, 1 = valid frame) zeroes padded frames before each 3x3 conv; the
    block returns its output and the mask of its (time-strided) output frames.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = torch.relu(self.bn1(self.conv1(x if mask is None else x * mask)))
        if mask is not None:
            mask = mask[..., ::self.conv1.stride[1]]
            y = y * mask
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x)), mask


class ResNetEncoder(Encoder):
    """Thin ResNet on on-the-fly fbank features with temporal statistics pooling (see module docstring)."""

    type_name = "resnet"
    config_cls = ResNetConfig

    def __init__(self, cfg: ResNetConfig | None = None, frontend: FrontendConfig | None = None,
                 specaug: SpecAugConfig | None = None):
        super().__init__(frontend or FrontendConfig(), specaug)
        cfg = cfg or ResNetConfig()
        self.cfg = cfg
        w = cfg.base_width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        stages = []
        cin = w
        for i, n in enumerate(cfg.num_blocks):
            cout, stride = w * 2 ** i, (1 if i == 0 else 2)
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1)
                                          for j in range(n)]))
            cin = cout
        self.stages = nn.Sequential(*stages)
        freq = self.frontend.dim
        for _ in range(3):
            freq = (freq + 1) // 2  # 3x3 conv, stride 2, padding 1
        self.pool = StatsPool()
        self.fc = nn.Linear(2 * cin * freq, cfg.embedding_dim)
        self.emb_bn = nn.BatchNorm1d(cfg.embedding_dim) if cfg.embedding_bn else nn.Identity()

    @property
    def embedding_dim(self) -> int:
        return self.cfg.embedding_dim

    def encode(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        mask = None if mask is None else mask.unsqueeze(2)  # [B, 1, 1, T]
        x = self.stem(x if mask is None else x * mask)
        for stage in self.stages:
            for block in stage:
                x, mask = block(x, mask)  # [B, C, F', T'] and its mask
        x = x.flatten(1, 2)  # [B, C * F', T']
        return self.emb_bn(self.fc(self.pool(x, None if mask is None else mask.squeeze(2))))
