"""MoCo: query encoder vs momentum key encoder, negatives from a queue of past keys.

Defaults follow sslsv's MoCo (theolepage/sslsv:sslsv/methods/MoCo/MoCo.py): a 2048-BN-ReLU-2048-BN-ReLU-128
projector, a symmetric loss (each view is once the query and once the key, one queue per view) and
shuffle-BN (the keys are computed on a batch shuffled across processes, then put back in order).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from sslspk.ssl.base import SSLTask
from sslspk.ssl.heads import MLPProjector
from sslspk.ssl.losses import info_nce_queue
from sslspk.train.distributed import all_gather_cat, is_distributed
from sslspk.utils.config import ConfigError, check_ranges


@dataclass
class MoCoConfig:
    """``ssl:`` block of MoCo (sslsv's MoCoConfig defaults: K 65536, m 0.999 constant, T 0.2)."""

    temperature: float = 0.2
    queue_size: int = 65536
    momentum: float = 0.999
    projector: bool = True            # false: the loss works on the encoder's embeddings (sslsv enable_projector)
    projector_hidden: int = 2048
    projector_dim: int = 128
    projector_hidden_layers: int = 2  # Linear-BN-ReLU blocks before the output layer
    symmetric: bool = True            # loss (L(q1, k2) + L(q2, k1)) / 2, one queue per view; false: L(q1, k2)
    shuffle_bn: bool = True           # keys computed on a batch shuffled across processes (MoCo's shuffle-BN)

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.projector_hidden_layers < 1:
            raise ConfigError("ssl.queue_size and ssl.projector_hidden_layers must be >= 1")
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"ssl.momentum must be in [0, 1], got {self.momentum}")
        check_ranges(self, temperature=">0", projector_hidden=">=1", projector_dim=">=1")


@torch.no_grad()
def shuffled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to a random permutation of the global batch (all processes), rows returned in
    ``x``'s order: under DDP each process computes ``fn`` on a different mix of samples, so BatchNorm's
    statistics of a key batch do not come from the query batch. Without BatchNorm this equals ``fn(x)``."""
    full = all_gather_cat(x)
    perm = torch.randperm(len(full), device=x.device)
    rank, world = 0, 1
    if is_distributed():
        torch.distributed.broadcast(perm, src=0)
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    mine = perm.view(world, -1)[rank]
    out = all_gather_cat(fn(full[mine]))              # out[r * b + i] = fn row of full[perm[r * b + i]]
    unshuffle = torch.argsort(perm).view(world, -1)[rank]
    return out[unshuffle]


class MoCo(SSLTask):
    """Views: group 0 = first crop, group 1 = second crop (one crop each)."""

    type_name = "moco"
    config_cls = MoCoConfig

    def __init__(self, encoder, cfg: MoCoConfig, ssps=None):
        super().__init__(encoder, ssps)
        self.cfg = cfg
        dim = cfg.projector_dim if cfg.projector else encoder.embedding_dim
        self.projector = (MLPProjector(encoder.embedding_dim, cfg.projector_hidden, cfg.projector_dim,
                                       cfg.projector_hidden_layers) if cfg.projector else nn.Identity())
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for p in [*self.key_encoder.parameters(), *self.key_projector.parameters()]:
            p.requires_grad = False
        n_queues = 2 if cfg.symmetric else 1
        self.register_buffer("queue", F.normalize(torch.randn(n_queues, cfg.queue_size, dim), dim=2))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        def key(v: torch.Tensor) -> torch.Tensor:
            return self.key_projector(self.key_encoder(v))

        k = shuffled_forward(key, x) if self.cfg.shuffle_bn else key(x)
        return F.normalize(k.detach(), dim=1)

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        v1, v2 = batch["views"][0][:, 0], batch["views"][1][:, 0]
        emb1 = self.encoder(v1)
        self.track(emb1, batch["index"])
        q1 = self.projector(emb1)
        with torch.no_grad():
            k2 = self._keys(v2)
        queue = self.queue.clone().detach()
        if not self.cfg.symmetric:
            loss = info_nce_queue(q1, k2, queue[0], self.cfg.temperature)
            self._enqueue(k2[None])
            return loss, {}
        q2 = self.projector(self.encoder(v2))
        with torch.no_grad():
            k1 = self._keys(v1)
        # queue[v] holds past keys of view v: q1's negatives are past second-view keys, as its key.
        loss = (info_nce_queue(q1, k2, queue[1], self.cfg.temperature)
                + info_nce_queue(q2, k1, queue[0], self.cfg.temperature)) / 2
        self._enqueue(torch.stack([k1, k2]))
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys[v]`` (``[B, D]``, all processes' gathered) into queue ``v``, oldest first."""
        size = self.queue.shape[1]
        keys = torch.stack([all_gather_cat(k.float())[:size] for k in keys])
        n, ptr = keys.shape[1], int(self.queue_ptr)
        self.queue[:, (torch.arange(n, device=keys.device) + ptr) % size] = keys
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
