"""Common part of the learned speaker encoders: front-end (+ SpecAugment) and config parsing."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from sslspk.frontend.features import Frontend, FrontendConfig, frame_mask
from sslspk.frontend.specaug import SpecAugConfig, SpecAugment
from sslspk.utils.config import ConfigError, from_dict
from sslspk.utils.registry import Registry

#: Keys of a ``model:`` block handled here rather than by the encoder's own config dataclass.
COMMON_KEYS = ("type", "frontend", "specaug")


#: Every model type by its ``type_name``: what :func:`sslspk.models.build_model` builds.
MODELS = Registry("sslspk.models", "model.type: unknown model type {name}; available: {known}")


class Model(nn.Module):
    """Base of every model type: a subclass setting ``type_name`` registers in :data:`MODELS`
    and is built by ``from_config(model block)``."""

    type_name: ClassVar[str] = ""
    #: The one audio rate the type takes (a pretrained backbone's, whose front-end assumes it); None: any rate,
    #: through its own front-end at the config's ``sample_rate``.
    fixed_sample_rate: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        MODELS.add(cls)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Model":
        raise NotImplementedError


class Encoder(Model):
    """Waveforms ``[B, T]`` → embeddings ``[B, embedding_dim]``; subclasses implement :meth:`encode`.

    The front-end (fbank + CMN by default) runs first; SpecAugment, when configured, masks
    the features in ``train()`` mode only. ``forward(wav, lengths)`` embeds a batch of
    zero-padded utterances of ``lengths`` samples each as if one at a time (``eval()`` mode):
    padded frames are kept out of every convolution, mean and pooling.
    """

    #: ``forward`` honours ``lengths`` (batches of padded utterances embed as one at a time).
    honours_lengths: ClassVar[bool] = True
    config_cls: ClassVar[type] = object
    default_frontend: ClassVar[dict[str, Any]] = {"type": "fbank", "num_mel_bins": 80, "cmn": True}

    def __init__(self, frontend: FrontendConfig, specaug: SpecAugConfig | None):
        super().__init__()
        self.frontend = Frontend(frontend)
        self.specaug = SpecAugment(specaug) if specaug is not None else None

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Encoder":
        """Build from a ``model:`` block (``type``, ``frontend``, ``specaug`` and the encoder's own keys)."""
        cfg = dict(cfg)
        cfg.pop("type", None)
        where = f"model (type {cls.type_name})"
        front = from_dict(FrontendConfig, {**cls.default_frontend, **(cfg.pop("frontend", None) or {})},
                          "model.frontend")
        spec = cfg.pop("specaug", None)
        if spec is not None and not isinstance(spec, dict):
            raise ConfigError(f"model.specaug: expected a mapping or null, got {spec!r}")
        specaug = None if spec is None else from_dict(SpecAugConfig, spec, "model.specaug")
        names = {f.name for f in dataclasses.fields(cls.config_cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                              f"valid keys: {', '.join(sorted(names | set(COMMON_KEYS)))}")
        try:
            return cls(cls.config_cls(**cfg), front, specaug)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e

    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Front-end features ``[B, frames, dim]`` (masked by SpecAugment when training)."""
        feats = self.frontend(wav, lengths)
        return self.specaug(feats) if self.specaug is not None else feats

    def encode(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[B, frames, dim]`` → embeddings ``[B, D]``; ``mask`` ``[B, 1, frames]``: 1 = valid frame."""
        raise NotImplementedError

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.features(wav, lengths)
        if lengths is None:
            return self.encode(feats)
        return self.encode(feats, frame_mask(self.frontend.frame_lengths(lengths), feats.shape[1]).unsqueeze(1))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
