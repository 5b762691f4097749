"""Additive angular margin softmax (ArcFace, Deng et al. 2019) with optional sub-centres
(Deng et al., ECCV 2020) and a linear margin warm-up.

For an embedding ``x`` and class weights ``w_c`` (both L2-normalised), ``cos θ_c = x·w_c``
(with ``K`` sub-centres per class: the maximum over the class's ``K`` cosines). The target
logit becomes ``s·cos(θ_y + m)``, the others stay ``s·cos θ_c``; the loss is the cross-entropy.
When ``θ_y + m > π`` the margin would make ``cos`` increase again, so (unless ``easy_margin``)
``cos θ_y - m·sin m`` is used for ``cos θ_y <= cos(π - m)`` (the usual ``th``/``mm`` fallback);
with ``easy_margin`` the margin is applied only where ``cos θ_y > 0``.

theolepage/wavlm_ssl_sv:loss/aamsoftmax.py is this loss with ``easy_margin`` off (the ``th``/``mm``
fallback), one centre per class, class weights initialised ``xavier_normal`` (``weight_init``), and
scale 30 with margin 0.2 (theolepage/wavlm_ssl_sv:configs/wavlm_mhfa_dlg_lc.yaml; 0.5 in its
large-margin stage, configs/wavlm_mhfa_dlg_lc_lmft.yaml). It computes in the model's precision
and clamps ``1 - cos²`` to [0, 1]; here the cosines are float32 and clamped to [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def margin_at(epoch: float, margin: float, warmup_start: float, warmup_end: float) -> float:
    """Linear margin warm-up: 0 until ``warmup_start``, ``margin`` from ``warmup_end`` on.

    ``epoch`` may be fractional (e.g. ``epoch + step / steps_per_epoch``) or a training
    progress in [0, 1] with start/end given in the same unit.
    """
    if warmup_end < warmup_start:
        raise ValueError(f"warmup_end ({warmup_end}) must be >= warmup_start ({warmup_start})")
    if epoch >= warmup_end:
        return float(margin)
    if epoch <= warmup_start:
        return 0.0
    return float(margin) * (epoch - warmup_start) / (warmup_end - warmup_start)


#: Class-weight initialisations (both of variance 2 / (fan_in + fan_out); their raw norms matter to
#: the online DLG-LC's label correction, which uses the un-normalised ``x·W``).
WEIGHT_INITS = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_}


class AAMSoftmax(nn.Module):
    """AAM-softmax classifier; ``forward(emb, labels) -> (per_sample_loss [B], logits [B, C])``.

    ``logits`` are the margin-free scaled cosines ``s·cos θ`` (for predictions/posteriors).
    Samples labelled ``-1`` get loss 0 (the caller excludes them from the mean).
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0,
                 subcenters: int = 1, easy_margin: bool = False, weight_init: str = "xavier_uniform"):
        super().__init__()
        if embedding_dim < 1 or num_classes < 1 or subcenters < 1:
            raise ValueError("embedding_dim, num_classes and subcenters must be >= 1")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {sorted(WEIGHT_INITS)}, got {weight_init!r}")
        self.num_classes = num_classes
        self.subcenters = subcenters
        self.scale = float(scale)
        self.easy_margin = easy_margin
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        WEIGHT_INITS[weight_init](self.weight)
        self.set_margin(margin)

    def set_margin(self, margin: float) -> None:
        """Change the angular margin (radians), e.g. during warm-up."""
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"margin must be in [0, pi/2), got {margin}")
        self.margin = float(margin)
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.th = math.cos(math.pi - margin)      # cos θ below this ⇔ θ + m > π
        self.mm = math.sin(math.pi - margin) * margin

    @torch.no_grad()
    def set_class_centres(self, centres: torch.Tensor, noise: float = 0.01) -> None:
        """Start every class weight at a given centre ``[C, D]`` (e.g. the mean embedding of the class).

        Sub-centres of a class start at its centre plus Gaussian noise of ``noise`` x its norm
        (identical sub-centres would never separate: only the closest one gets gradients).
        """
        if centres.shape != (self.num_classes, self.weight.shape[1]):
            raise ValueError(f"centres must be [{self.num_classes}, {self.weight.shape[1]}], got {list(centres.shape)}")
        w = F.normalize(centres.float(), dim=1).repeat_interleave(self.subcenters, dim=0)
        if self.subcenters > 1:
            w = F.normalize(w + noise * torch.randn_like(w), dim=1)
        self.weight.copy_(w)

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """Cosines ``[B, C]`` (max over sub-centres), computed in float32."""
        cos = F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1))
        if self.subcenters > 1:
            cos = cos.view(-1, self.num_classes, self.subcenters).amax(dim=2)
        return cos.clamp(-1.0, 1.0)

    def linear_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Raw ``emb·W`` ``[B, C]`` (no normalisation, margin or scale; max over sub-centres), in float32:
        what the online DLG-LC's label correction sharpens (theolepage/wavlm_ssl_sv:loss/aamsoftmax.py)."""
        out = F.linear(emb.float(), self.weight.float())
        if self.subcenters > 1:
            out = out.view(-1, self.num_classes, self.subcenters).amax(dim=2)
        return out

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, _, logits = self.forward_with_margin_logits(emb, labels)
        return loss, logits

    def forward_with_margin_logits(self, emb: torch.Tensor,
                                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`, also returning the logits with the margin at each label (``[B, C]``)."""
        cos = self.cosine(emb)
        logits = self.scale * cos
        labels = labels.long()
        valid = labels >= 0
        if (labels >= self.num_classes).any():
            raise ValueError(f"labels must be < num_classes ({self.num_classes}) or -1")
        target = labels.clamp(min=0)
        cos_y = cos.gather(1, target[:, None]).squeeze(1)
        sin_y = torch.sqrt((1.0 - cos_y * cos_y).clamp(min=1e-12))
        phi = cos_y * self.cos_m - sin_y * self.sin_m           # cos(θ_y + m)
        if self.easy_margin:
            phi = torch.where(cos_y > 0, phi, cos_y)
        else:
            phi = torch.where(cos_y > self.th, phi, cos_y - self.mm)
        margin_logits = logits.scatter(1, target[:, None], (self.scale * phi)[:, None])
        loss = F.cross_entropy(margin_logits, target, reduction="none")
        return torch.where(valid, loss, torch.zeros_like(loss)), margin_logits, logits

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, subcenters={self.subcenters}, margin={self.margin}, "
                f"scale={self.scale}, easy_margin={self.easy_margin}")
