"""DINO: a student matches an EMA teacher's centred, sharpened outputs across multi-crop views."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from sslspk.ssl.base import SSLTask
from sslspk.ssl.heads import DINOHead
from sslspk.ssl.losses import dino_loss
from sslspk.train.distributed import all_reduce_mean
from sslspk.utils.errors import TrainingError

log = logging.getLogger("sslspk.train")


@dataclass
class DINOConfig:
    """``ssl:`` block of DINO. Defaults: DINO paper (Caron et al. 2021) and wespeaker's speaker DINO."""

    out_dim: int = 65536              # head output (prototypes); small in mini configs
    hidden: int = 2048
    bottleneck: int = 256
    head_bn: bool = False             # BatchNorm after the head's two hidden layers (sslsv's DINOHead)
    head_trunc_normal_init: bool = False   # head MLP weights ~ truncated normal (std 0.02), biases 0 (DINO's and
                                           # sslsv's init); false: torch's default Linear init
    student_temp: float = 0.1
    teacher_temp: float = 0.07        # after the warm-up
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    teacher_momentum: float = 0.996   # EMA momentum, cosine-increased to 1 over training
    teacher_copies_student_buffers: bool = True   # after each step the teacher takes the student's BatchNorm
                                      # running statistics; false: the teacher keeps those of its own forward
                                      # passes, the EMA covering parameters only (sslsv's MomentumUpdater)
    freeze_last_layer_epochs: int = 1
    clip_grad: float | None = None    # each parameter's gradient norm clipped to this, before the trainer's
                                      # global train.grad_clip (DINO's and sslsv's clip_grad); null: none
    collapse_min_kl: float = 1e-3     # warn when the teacher's per-sample KL to its batch mean falls below
    stop_on_collapse: bool = False

    def __post_init__(self) -> None:
        from sslspk.utils.config import ConfigError, check_ranges

        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ConfigError(f"ssl.clip_grad must be > 0 or null, got {self.clip_grad}")
        check_ranges(self, out_dim=">=1", hidden=">=1", bottleneck=">=1", student_temp=">0", teacher_temp=">0",
                     warmup_teacher_temp=">0", warmup_teacher_temp_epochs=">=0", center_momentum="[0,1]",
                     teacher_momentum="[0,1]", freeze_last_layer_epochs=">=0", collapse_min_kl=">=0")


class DINO(SSLTask):
    """Views: group 0 = global crops (teacher and student), group 1 = local crops (student only).

    The teacher's encoder (an EMA of the student's) is the exported model, as in DINO.
    """

    type_name = "dino"
    config_cls = DINOConfig
    export_prefix = "teacher."

    @classmethod
    def build(cls, encoder, cfg: DINOConfig, total_epochs: int, ssps=None) -> "DINO":
        """DINO schedules its teacher temperature and momentum over ``total_epochs``."""
        return cls(encoder, cfg, total_epochs, ssps)

    def __init__(self, encoder, cfg: DINOConfig, total_epochs: int, ssps=None):
        super().__init__(encoder, ssps)
        self.cfg = cfg
        self.total_epochs = total_epochs
        self.head = DINOHead(encoder.embedding_dim, cfg.out_dim, cfg.hidden, cfg.bottleneck, cfg.head_bn)
        if cfg.head_trunc_normal_init:
            for m in self.head.mlp:
                if isinstance(m, torch.nn.Linear):
                    torch.nn.init.trunc_normal_(m.weight, std=0.02)
                    torch.nn.init.zeros_(m.bias)
        self.teacher = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for p in [*self.teacher.parameters(), *self.teacher_head.parameters()]:
            p.requires_grad = False
        self.register_buffer("center", torch.zeros(cfg.out_dim))
        self._health = {"teacher_entropy": 0.0, "teacher_kl": 0.0, "n": 0}

    def teacher_temp(self, epoch: int) -> float:
        c = self.cfg
        if epoch < c.warmup_teacher_temp_epochs:
            step = (c.teacher_temp - c.warmup_teacher_temp) / c.warmup_teacher_temp_epochs
            return c.warmup_teacher_temp + step * epoch
        return c.teacher_temp

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        glob, loc = batch["views"][0], batch["views"][1] if len(batch["views"]) > 1 else None
        g_emb = self.embed(glob)                                   # [G, B, D]
        embs = [g_emb] + ([self.embed(loc)] if loc is not None else [])
        student = torch.cat([self.head(e.flatten(0, 1)).view(e.shape[0], e.shape[1], -1) for e in embs])
        # SSPS's memory takes the first local crop (the global group is the one SSPS replaces by the positive)
        anchor = embs[1][0] if loc is not None else g_emb[0]
        self.track(anchor, batch["index"])
        with torch.no_grad():
            b, g, t = glob.shape
            teacher = self.teacher_head(self.teacher(glob.transpose(0, 1).reshape(g * b, t))).view(g, b, -1).float()
        tt = self.teacher_temp(epoch)
        loss = dino_loss(student.float(), teacher, self.center, g, self.cfg.student_temp, tt)
        entropy = self._monitor(teacher, tt)
        self._update_center(teacher)
        # loss = H(targets) + KL(targets || student): the KL shows the student's progress even
        # while the targets soften (teacher-temperature warm-up, centring) and H rises.
        return loss, {"teacher_temp": tt, "kl_to_teacher": float(loss.detach()) - entropy}

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(all_reduce_mean(teacher.mean(dim=(0, 1))), alpha=1 - m)

    @torch.no_grad()
    def _monitor(self, teacher: torch.Tensor, temp: float) -> float:
        """Accumulate collapse monitors of the teacher targets; returns their mean entropy."""
        p = F.softmax((teacher - self.center) / temp, dim=-1).flatten(0, 1)
        logp = p.clamp_min(1e-12).log()
        mean = p.mean(0, keepdim=True)
        entropy = float(-(p * logp).sum(1).mean())
        self._health["teacher_entropy"] += entropy
        self._health["teacher_kl"] += float((p * (logp - mean.clamp_min(1e-12).log())).sum(1).mean())
        self._health["n"] += 1
        return entropy

    def before_optimizer_step(self, epoch: int) -> None:
        if self.cfg.clip_grad is not None:
            for p in [*self.encoder.parameters(), *self.head.parameters()]:
                if p.grad is not None:
                    p.grad.mul_((self.cfg.clip_grad / (p.grad.norm() + 1e-6)).clamp(max=1.0))
        if epoch < self.cfg.freeze_last_layer_epochs:
            for p in self.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        m = 1 - (1 - self.cfg.teacher_momentum) * (math.cos(math.pi * progress) + 1) / 2
        for s, t in zip([*self.encoder.parameters(), *self.head.parameters()],
                        [*self.teacher.parameters(), *self.teacher_head.parameters()]):
            t.mul_(m).add_(s.detach(), alpha=1 - m)
        if self.cfg.teacher_copies_student_buffers:
            for s, t in zip(self.encoder.buffers(), self.teacher.buffers()):
                t.copy_(s)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        logs = super().on_epoch_end(epoch)
        n = max(1, self._health.pop("n"))
        logs.update({k: float(all_reduce_mean(torch.tensor(v / n))) for k, v in self._health.items()})
        self._health = {"teacher_entropy": 0.0, "teacher_kl": 0.0, "n": 0}
        if logs["teacher_kl"] < self.cfg.collapse_min_kl:
            msg = (f"DINO COLLAPSE WARNING at epoch {epoch + 1}: teacher outputs barely depend on the input "
                   f"(KL to batch mean {logs['teacher_kl']:.2e} < {self.cfg.collapse_min_kl}, entropy "
                   f"{logs['teacher_entropy']:.3f}, embedding std {logs['embedding_std']:.4f})")
            log.warning(msg)
            if self.cfg.stop_on_collapse:
                raise TrainingError(msg)
        return logs
