"""Speaker encoders. :func:`build_model` makes one from the ``model:`` block of a YAML config."""

from __future__ import annotations

from typing import Any

from sslspk.utils.config import ConfigError


def build_model(cfg: dict[str, Any]):
    """Build an encoder ``nn.Module`` mapping waveforms ``[B, T]`` to embeddings ``[B, D]``."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind == "stats":
        from sslspk.models.stats import StatsEmbedding

        return StatsEmbedding.from_config(cfg)
    raise ConfigError(f"model.type: unknown model type {kind!r}; available: stats")
