"""SimCLR: two views of an utterance, NT-Xent over the views of every process.

With SSPS (``ssl.ssps``), the positive of an anchor is either a stored embedding of a nearby
utterance (``positive: embedding``, sslsv's SSPS) or a crop of it (``positive: audio``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sslspk.ssl.base import SSLTask
from sslspk.ssl.heads import MLPProjector
from sslspk.ssl.losses import nt_xent


@dataclass
class SimCLRConfig:
    """``ssl:`` block of SimCLR."""

    temperature: float = 0.2
    projector: bool = True         # false: the loss works on the encoder embeddings (sslsv enable_projector)
    projector_hidden: int = 512
    projector_dim: int = 128

    def __post_init__(self) -> None:
        from sslspk.utils.config import check_ranges

        check_ranges(self, temperature=">0", projector_hidden=">=1", projector_dim=">=1")


class SimCLR(SSLTask):
    """Views: group 0 = anchor crop, group 1 = positive crop (one crop each); with SSPS
    ``positive: embedding``, group 2 = the clean reference crop (see :class:`~sslspk.ssl.ssps.SSPS`)."""

    type_name = "simclr"
    config_cls = SimCLRConfig

    def __init__(self, encoder, cfg: SimCLRConfig, ssps=None):
        super().__init__(encoder, ssps)
        self.cfg = cfg
        self.projector = (MLPProjector(encoder.embedding_dim, cfg.projector_hidden, cfg.projector_dim)
                          if cfg.projector else nn.Identity())

    @staticmethod
    def output_dim(cfg: SimCLRConfig, embedding_dim: int) -> int:
        """Dimension of the vectors the loss compares (those SSPS stores as positives)."""
        return cfg.projector_dim if cfg.projector else embedding_dim

    def reference_embeddings(self, crops: torch.Tensor) -> torch.Tensor:
        """Normalised embeddings of ``crops [B, T]`` by the encoder in eval mode, without gradient
        (no dropout, batch norm with its running statistics, which are left unchanged)."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                return F.normalize(self.encoder(crops).float(), dim=1)
        finally:
            self.encoder.train(was_training)

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        a = self.embed(batch["views"][0])[0]
        p = self.embed(batch["views"][1])[0]
        self.track(a, batch["index"])
        z1, z2 = self.projector(a), self.projector(p)
        logs: dict[str, float] = {}
        if self.ssps is not None and self.ssps.cfg.positive == "embedding" and self.ssps.fills(epoch):
            ref = self.reference_embeddings(batch["views"][2][:, 0])
            z2, logs = self.ssps.exchange(batch["index"], ref, z2)
        return nt_xent(z1, z2, self.cfg.temperature), logs
