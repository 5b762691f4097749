"""Non-learned baseline: mean and standard deviation of frame features over an utterance."""

from __future__ import annotations

from typing import Any

import torch

from sslspk.frontend.features import Frontend, FrontendConfig, frame_mask
from sslspk.models.base import Model
from sslspk.utils.config import ConfigError, from_dict


class StatsEmbedding(Model):
    """Utterance embedding = ``[mean, std]`` of front-end features (nothing to train).

    With CMN off, the mean carries the long-term spectrum (voice and channel alike) and the
    std its dynamics: the floor every learned system must beat. ``lengths`` (samples of each
    zero-padded row) restricts the statistics to each utterance's frames.
    """

    honours_lengths = True
    type_name = "stats"

    def __init__(self, frontend: FrontendConfig, use_std: bool = True):
        super().__init__()
        self.frontend = Frontend(frontend)
        self.use_std = use_std

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "StatsEmbedding":
        cfg = dict(cfg)
        cfg.pop("type", None)
        front = from_dict(FrontendConfig, cfg.pop("frontend", None), "model.frontend")
        unknown = sorted(set(cfg) - {"use_std"})
        if unknown:
            raise ConfigError(f"model (type stats): unknown key(s) {', '.join(unknown)}; "
                              "valid keys: frontend, type, use_std")
        return cls(front, **cfg)

    @property
    def embedding_dim(self) -> int:
        return self.frontend.dim * (2 if self.use_std else 1)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.frontend(wav, lengths)
        if lengths is None:
            mean = feats.mean(dim=1)
            return torch.cat([mean, feats.std(dim=1)], dim=1) if self.use_std else mean
        valid = frame_mask(self.frontend.frame_lengths(lengths).to(feats.device), feats.shape[1]).unsqueeze(-1)
        n = valid.sum(dim=1)
        mean = (feats * valid).sum(dim=1) / n
        if not self.use_std:
            return mean
        var = ((feats - mean[:, None]).square() * valid).sum(dim=1) / (n - 1)  # unbiased, as Tensor.std
        return torch.cat([mean, var.sqrt()], dim=1)
