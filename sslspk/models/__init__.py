"""Speaker encoders. :func:`build_model` makes one from the ``model:`` block of a YAML config.

Types: ``stats`` (non-learned baseline), ``ecapa_tdnn`` and ``resnet`` (learned encoders
with an on-the-fly fbank front-end and optional SpecAugment), ``pretrained`` (a pretrained
WavLM, HuBERT, wav2vec 2.0 or Whisper-encoder backbone + ECAPA/MHFA pooling head, see
:mod:`sslspk.models.wavlm`; ``wavlm`` is the same type under its earlier name). Every model maps waveforms
``[B, T]`` to embeddings ``[B, embedding_dim]``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sslspk.utils.config import ConfigError


def with_sample_rate(cfg: dict[str, Any], sample_rate: int, where: str = "config") -> dict[str, Any]:
    """The ``model:`` block ``cfg`` with its front-end at ``sample_rate``, the config's one sample rate.

    ``model.frontend.sample_rate`` may only repeat it, and a type with a ``fixed_sample_rate`` (a pretrained
    backbone: 16 kHz) takes that rate only: any other value is a ConfigError, as features at the wrong rate would
    be silently wrong.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: model: expected a mapping, got {cfg!r}")
    from sslspk.models.base import MODELS

    model_type = MODELS.find(cfg.get("type"))   # None: an unknown type, which build_model names
    if model_type is not None and model_type.fixed_sample_rate is not None:
        if sample_rate != model_type.fixed_sample_rate:
            raise ConfigError(f"{where}: sample_rate {sample_rate}: a model of type {cfg['type']} takes "
                              f"{model_type.fixed_sample_rate} Hz audio")
        return cfg
    front = cfg.get("frontend") or {}
    if not isinstance(front, dict):
        return cfg   # build_model names the bad block
    if front.get("sample_rate", sample_rate) != sample_rate:
        raise ConfigError(f"{where}: model.frontend.sample_rate {front['sample_rate']} differs from sample_rate "
                          f"{sample_rate}, the rate audio is resampled to: a config has one sample rate (set "
                          "the top-level sample_rate and drop model.frontend.sample_rate)")
    return {**cfg, "frontend": {**front, "sample_rate": sample_rate}}


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """Build an encoder ``nn.Module`` mapping waveforms ``[B, T]`` to embeddings ``[B, D]`` from a
    ``model:`` block (from a full config: ``with_sample_rate(cfg["model"], ...)``)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"model: expected a mapping, got {cfg!r}")
    from sslspk.models.base import MODELS

    return MODELS.get(cfg.get("type")).from_config(cfg)
