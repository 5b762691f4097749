"""Speaker encoders. :func:`build_model` makes one from the ``model:`` block of a YAML config.

Types: ``stats`` (non-learned baseline), ``ecapa_tdnn`` and ``resnet`` (learned encoders
with an on-the-fly fbank front-end and optional SpecAugment), ``wavlm`` (pretrained WavLM
backbone + ECAPA/MHFA pooling head, see :mod:`sslspk.models.wavlm`). Every model maps waveforms
``[B, T]`` to embeddings ``[B, embedding_dim]``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sslspk.utils.config import ConfigError

MODEL_TYPES = ("ecapa_tdnn", "resnet", "stats", "wavlm")


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """Build an encoder ``nn.Module`` mapping waveforms ``[B, T]`` to embeddings ``[B, D]``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"model: expected a mapping, got {cfg!r}")
    kind = cfg.get("type")
    if kind == "stats":
        from sslspk.models.stats import StatsEmbedding

        rest = dict(cfg)
        rest.pop("type")
        return StatsEmbedding.from_config(rest)
    if kind == "ecapa_tdnn":
        from sslspk.models.ecapa_tdnn import EcapaTdnn

        return EcapaTdnn.from_config(cfg)
    if kind == "resnet":
        from sslspk.models.resnet import ResNetEncoder

        return ResNetEncoder.from_config(cfg)
    if kind == "wavlm":
        from sslspk.models.wavlm import WavLMEncoder

        return WavLMEncoder.from_config(cfg)
    raise ConfigError(f"model.type: unknown model type {kind!r}; available: {', '.join(MODEL_TYPES)}")
