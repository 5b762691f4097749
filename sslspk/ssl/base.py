"""Shared parts of the SSL methods: optional SSPS, and an embedding-collapse monitor."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from sslspk.ssl.ssps import SSPS
from sslspk.train.distributed import all_reduce_mean
from sslspk.train.task import TrainTask
from sslspk.utils.registry import Registry

log = logging.getLogger("sslspk.train")

#: Every SSL method by its ``type_name`` (the ``ssl.method`` of a config).
SSL_METHODS = Registry("sslspk.ssl", "ssl.method must be one of {known}, got {name}")


class SSLTask(TrainTask):
    """An encoder trained without labels.

    The SSPS buffers (memory, queue) are filled by every process with the same gathered values:
    they are listed in ``_ddp_params_and_buffers_to_ignore``, so DDP does not broadcast them from
    rank 0 at every step (as sslsv's BaseMethod); other buffers (batch norm statistics) are.
    """

    #: The ``ssl.method`` naming this class (a subclass setting it registers in :data:`SSL_METHODS`).
    type_name: ClassVar[str] = ""
    #: The dataclass of the method's options.
    config_cls: ClassVar[type] = object

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        SSL_METHODS.add(cls)

    @classmethod
    def build(cls, encoder: nn.Module, cfg: Any, total_epochs: int, ssps: SSPS | None) -> "SSLTask":
        """The task around ``encoder`` with options ``cfg`` (``total_epochs``: for schedules that need it)."""
        return cls(encoder, cfg, ssps)

    def __init__(self, encoder: nn.Module, ssps: SSPS | None = None):
        super().__init__()
        self.encoder = encoder
        self.ssps = ssps
        self.positives: Any = None   # ClusterPositives (sslspk.ssl.cluster_positives), set by build_ssl_task
        if ssps is not None:
            self._ddp_params_and_buffers_to_ignore = [f"ssps.{name}" for name, _ in ssps.named_buffers()]
        self._std_sum = 0.0
        self._std_n = 0

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """Encode crops ``[B, C, T]`` → ``[C, B, D]`` (one encoder call for all crops)."""
        b, c, t = crops.shape
        return self.encoder(crops.transpose(0, 1).reshape(c * b, t)).view(c, b, -1)

    def track(self, emb: torch.Tensor, index: torch.Tensor) -> None:
        """Monitor the batch spread of normalised embeddings; feed SSPS's memory (``positive: audio``)."""
        with torch.no_grad():
            self._std_sum += float(F.normalize(emb.float(), dim=1).std(0).mean())
            self._std_n += 1
        if self.ssps is not None and self.ssps.cfg.positive == "audio":
            self.ssps.update(index, emb)

    def on_epoch_start(self, epoch: int, trainer: Any) -> dict[str, float]:
        if self.positives is not None:
            return self.positives.on_epoch_start(epoch, trainer.dataset)
        return self.ssps.on_epoch_start(epoch, trainer.dataset) if self.ssps is not None else {}

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Mean per-dimension std of normalised embeddings over the batch; ~1/sqrt(D) when healthy, 0 when collapsed."""
        std = float(all_reduce_mean(torch.tensor(self._std_sum / max(1, self._std_n))))
        self._std_sum, self._std_n = 0.0, 0
        return {"embedding_std": std}
