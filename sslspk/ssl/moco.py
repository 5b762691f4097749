"""MoCo: query encoder vs momentum key encoder, negatives from a queue of past keys."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from sslspk.ssl.base import SSLTask
from sslspk.ssl.heads import MLPProjector
from sslspk.ssl.losses import info_nce_queue
from sslspk.train.distributed import all_gather_cat


@dataclass
class MoCoConfig:
    """``ssl:`` block of MoCo (MoCo v2 defaults: K 65536 for large corpora, m 0.999, T 0.2)."""

    temperature: float = 0.2
    queue_size: int = 65536
    momentum: float = 0.999
    projector_hidden: int = 512
    projector_dim: int = 128


class MoCo(SSLTask):
    """Views: group 0 = query crop, group 1 = key crop (one crop each)."""

    def __init__(self, encoder, cfg: MoCoConfig, ssps=None):
        super().__init__(encoder, ssps)
        self.cfg = cfg
        self.projector = MLPProjector(encoder.embedding_dim, cfg.projector_hidden, cfg.projector_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for p in [*self.key_encoder.parameters(), *self.key_projector.parameters()]:
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.projector_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        qv, kv = batch["views"][0][:, 0], batch["views"][1][:, 0]
        emb = self.encoder(qv)
        self.track(emb, batch["index"])
        q = self.projector(emb)
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_encoder(kv)), dim=1)
        loss = info_nce_queue(q, k, self.queue.clone().detach(), self.cfg.temperature)
        self._enqueue(k)
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, k: torch.Tensor) -> None:
        size = len(self.queue)
        k = all_gather_cat(k.float())[:size]
        n, ptr = len(k), int(self.queue_ptr)
        self.queue[(torch.arange(n, device=k.device) + ptr) % size] = k
        self.queue_ptr.fill_((ptr + n) % size)

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        m = self.cfg.momentum
        for q, k in zip([*self.encoder.parameters(), *self.projector.parameters()],
                        [*self.key_encoder.parameters(), *self.key_projector.parameters()]):
            k.mul_(m).add_(q.detach(), alpha=1 - m)
        for q, k in zip([*self.encoder.buffers(), *self.projector.buffers()],
                        [*self.key_encoder.buffers(), *self.key_projector.buffers()]):
            k.copy_(q)
