"""SimCLR: two views of an utterance (or, with SSPS, of two neighbouring utterances), NT-Xent."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslspk.ssl.base import SSLTask
from sslspk.ssl.heads import MLPProjector
from sslspk.ssl.losses import nt_xent


@dataclass
class SimCLRConfig:
    """``ssl:`` block of SimCLR (temperature as in sslsv's speaker SimCLR)."""

    temperature: float = 0.2
    projector_hidden: int = 512
    projector_dim: int = 128

    def __post_init__(self) -> None:
        from sslspk.utils.config import check_ranges

        check_ranges(self, temperature=">0", projector_hidden=">=1", projector_dim=">=1")


class SimCLR(SSLTask):
    """Views: group 0 = anchor crop, group 1 = positive crop (one crop each)."""

    type_name = "simclr"
    config_cls = SimCLRConfig

    def __init__(self, encoder, cfg: SimCLRConfig, ssps=None):
        super().__init__(encoder, ssps)
        self.cfg = cfg
        self.projector = MLPProjector(encoder.embedding_dim, cfg.projector_hidden, cfg.projector_dim)

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        a = self.embed(batch["views"][0])[0]
        p = self.embed(batch["views"][1])[0]
        self.track(a, batch["index"])
        return nt_xent(self.projector(a), self.projector(p), self.cfg.temperature), {}
