"""Contrastive and distillation losses: NT-Xent (SimCLR), InfoNCE with a queue (MoCo), DINO."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross entropy; ``z1[i]``/``z2[i]`` are positives.

    Each of the 2B local views is contrasted with the 2B views of every process (gathered with
    gradient, as sslsv's SimCLRLoss), itself excluded: one process = the usual 2B-view NT-Xent.
    """
    from sslspk.train.distributed import all_gather_with_grad, rank

    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ all_gather_with_grad(z).T / temperature
    offset = rank() * 2 * b                      # this process's views among the gathered ones
    local = torch.arange(2 * b, device=z.device)
    sim[local, offset + local] = float("-inf")
    target = offset + torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def info_nce_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo loss: query ``q[i]`` against its key ``k[i]`` (positive) and the ``queue`` (negatives)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO cross-entropy between centred, sharpened teacher outputs and student outputs.

    ``student``: ``[V, B, K]`` logits of all V crops (the first ``n_global`` are the global ones);
    ``teacher``: ``[n_global, B, K]``. Pairs where student and teacher saw the same crop are skipped.
    """
    t = F.softmax((teacher - center) / teacher_temp, dim=-1).detach()
    s = F.log_softmax(student / student_temp, dim=-1)
    total, n = student.new_zeros(()), 0
    for it in range(t.shape[0]):
        for v in range(s.shape[0]):
            if v == it:
                continue
            total = total + (-(t[it] * s[v]).sum(-1)).mean()
            n += 1
    return total / n
