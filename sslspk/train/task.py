"""What the trainer trains: a task module holding the encoder, its heads and its loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TrainTask(nn.Module):
    """Base class of SSL methods and supervised fine-tuning.

    ``forward(batch, epoch)`` returns ``(loss, logs)``. The trainer calls the hooks below;
    the default hooks do nothing. ``export_prefix`` selects, in the task's ``state_dict``,
    the encoder saved as ``model.pt`` (e.g. ``"teacher."`` for DINO).
    """

    export_prefix = "encoder."

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups; a group's ``lr_scale`` multiplies the scheduled learning rate, or its ``lr``
        (absolute, at the schedule's peak) replaces ``train.lr`` for it."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def on_fit_start(self, trainer: Any) -> None:
        """Called once when training starts from scratch (not when it resumes from a checkpoint),
        with the task on the training device (e.g. initialise a head from the data)."""

    def on_epoch_start(self, epoch: int, trainer: Any) -> dict[str, float]:
        """Called before each epoch (e.g. SSPS positives, DLG-LC gating); returns logs."""
        return {}

    def before_optimizer_step(self, epoch: int) -> None:
        """Called after backward, before clipping and the optimizer step (e.g. freeze a layer)."""

    def after_optimizer_step(self, progress: float) -> None:
        """Called after each optimizer step; ``progress`` in [0, 1] over the whole run (e.g. EMA)."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Epoch-level diagnostics (e.g. collapse monitors); returns logs."""
        return {}

    def export_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights, as ``build_model(cfg['model'])`` expects them."""
        n = len(self.export_prefix)
        return {k[n:]: v.detach().cpu().clone() for k, v in self.state_dict().items()
                if k.startswith(self.export_prefix)}
