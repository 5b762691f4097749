"""Supervised fine-tuning on (pseudo) speaker labels: AAM-softmax, margin warm-up, optional
frozen-backbone first phase, per-group learning rates, an L2 pull towards the pretrained weights,
and DLG-LC (dynamic loss-gate + label correction)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sslspk.train.distributed import all_gather_cat, is_distributed
from sslspk.train.task import TrainTask
from sslspk.utils.config import ConfigError, check_ranges

log = logging.getLogger("sslspk.train")


@dataclass
class LossConfig:
    """``loss:`` block: AAM-softmax (defaults as wespeaker: margin 0.2, scale 32)."""

    margin: float = 0.2
    scale: float = 32.0
    subcenters: int = 1
    margin_warmup_epochs: tuple[int, int] | None = None  # margin rises linearly 0 → margin between these epochs
    init_from_centroids: bool = False  # class weights start at each class's mean embedding by the initial encoder
    weight_init: str = "xavier_uniform"  # or xavier_normal (theolepage/wavlm_ssl_sv:loss/aamsoftmax.py)

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < math.pi / 2 or self.scale <= 0 or self.subcenters < 1:
            raise ConfigError(f"loss: need 0 <= margin < pi/2, scale > 0 and subcenters >= 1, got margin "
                              f"{self.margin}, scale {self.scale}, subcenters {self.subcenters}")
        w = self.margin_warmup_epochs
        check_ranges(self, margin_warmup_epochs=">=0")
        if w is not None and w[1] < w[0]:
            raise ConfigError(f"loss.margin_warmup_epochs: the end ({w[1]}) is before the start ({w[0]})")
        from sslspk.losses.aam_softmax import WEIGHT_INITS

        if self.weight_init not in WEIGHT_INITS:
            raise ConfigError(f"loss.weight_init: must be one of {', '.join(WEIGHT_INITS)}, got {self.weight_init!r}")


@dataclass
class FinetuneConfig:
    """``finetune:`` block: how a pretrained backbone such as WavLM is fine-tuned.

    Learning rates are either relative (``backbone_lr_scale`` x the scheduled ``train.lr``, the head
    at ``train.lr``) or absolute (``backbone_lr`` and ``head_lr``, both following the schedule's shape):
    with absolute ones, transformer layer ``i`` (0 = the lowest, as wavlm_ssl_sv indexes them) gets
    ``backbone_lr * layer_decay ** i``; the head group holds the pooling head and the AAM classifier.
    """

    backbone_lr_scale: float = 1.0    # relative: backbone LR = scheduled LR x this
    backbone_lr: float | None = None  # absolute LR of the backbone's transformer layers (with head_lr)
    head_lr: float | None = None      # absolute LR of the pooling head + classifier (with backbone_lr)
    layer_decay: float = 1.0          # layer-wise LR decay factor (needs the encoder's per-layer split)
    backbone_layers_only: bool = False  # optimise only the backbone's transformer layers (its CNN, feature
                                        # projection, positional convolution and final norm stay as built)
    l2_to_init: float = 0.0           # weight of the normalised L2 pull towards the built (pretrained)
                                      # backbone weights (see l2_to_init_loss); 0: none
    classifier_from_init: bool = False  # with --init: the AAM classes start from the init model's last
                                        # checkpoint (same pseudo-labels), not at random
    cache_frozen_backbone: bool = False  # the frozen backbone's hidden states computed once per utterance and
                                         # the head trained on crops of them (sslspk.train.state_cache: no
                                         # augmentation; needs model.freeze_backbone: true)

    def __post_init__(self) -> None:
        check_ranges(self, backbone_lr_scale=">=0")
        absolute = (self.backbone_lr is not None, self.head_lr is not None)
        if absolute[0] != absolute[1]:
            raise ConfigError("finetune: backbone_lr and head_lr go together (absolute learning rates)")
        if absolute[0] and (self.backbone_lr <= 0 or self.head_lr <= 0 or self.backbone_lr_scale != 1.0):
            raise ConfigError(f"finetune: need backbone_lr > 0 and head_lr > 0 and no backbone_lr_scale with them, "
                              f"got {self.backbone_lr}, {self.head_lr}, backbone_lr_scale {self.backbone_lr_scale}")
        if (self.layer_decay != 1.0 or self.backbone_layers_only) and not absolute[0]:
            raise ConfigError("finetune: layer_decay and backbone_layers_only need backbone_lr and head_lr")
        if not 0.0 < self.layer_decay <= 1.0 or self.l2_to_init < 0:
            raise ConfigError(f"finetune: need 0 < layer_decay <= 1 and l2_to_init >= 0, "
                              f"got {self.layer_decay}, {self.l2_to_init}")


DLG_MODES = ("online", "epoch")


@dataclass
class DLGLCConfig:
    """``dlg_lc:`` block (Han et al. 2022; see sslspk.losses.dlg_lc). Epochs are 0-based.

    ``mode: online`` (default) is the authors' code: theolepage/wavlm_ssl_sv:trainSpeakerNet.py gates
    from its (1-based) epoch 5 (``if it >= 5``: the GMM threshold of epoch 4's losses) and
    theolepage/wavlm_ssl_sv:loss/aamsoftmax.py corrects from its epoch 9 (``if epoch <= 8``: gate
    alone), on the clean crop's ``softmax(x·W / 0.1)`` above 0.5: 0-based ``start_epoch`` 4,
    ``correct_start_epoch`` 8, ``temperature`` 0.1, ``threshold`` 0.5. ``mode: epoch`` is sslspk's
    per-utterance gate of the previous epoch's losses (``min_posterior``; ``threshold`` then applies
    to the softmax of the augmented crop's scaled cosines), kept for the recipes tuned with it.
    """

    mode: str = "online"
    start_epoch: int = 4              # first epoch gated (losses of the previous one are needed)
    correct_start_epoch: int | None = 8  # first epoch with label correction (None: start_epoch); before it,
                                      # unreliable samples are only dropped (the loss-gate alone)
    threshold: float = 0.5            # relabel a gated-out sample when its prediction's probability exceeds this
    temperature: float = 0.1          # online: the clean crop's logits are divided by this before the softmax
    min_posterior: float = 0.5        # epoch: reliable when P(low-loss component) exceeds this

    def __post_init__(self) -> None:
        if self.mode not in DLG_MODES:
            raise ConfigError(f"dlg_lc.mode: must be one of {', '.join(DLG_MODES)}, got {self.mode!r}")
        check_ranges(self, start_epoch=">=0", correct_start_epoch=">=0", threshold="[0,1]", temperature=">0",
                     min_posterior="[0,1]")
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 < self.min_posterior < 1.0 or self.temperature <= 0:
            raise ConfigError(f"dlg_lc: need 0 <= threshold <= 1, 0 < min_posterior < 1 and temperature > 0, got "
                              f"threshold {self.threshold}, min_posterior {self.min_posterior}, "
                              f"temperature {self.temperature}")

    @property
    def correct_from(self) -> int:
        """First epoch with label correction."""
        return self.start_epoch if self.correct_start_epoch is None else self.correct_start_epoch


def backbone_and_head(encoder: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split an encoder's parameters: pretrained backbone vs pooling head (all backbone if it has no split)."""
    if hasattr(encoder, "backbone_parameters"):
        return list(encoder.backbone_parameters()), list(encoder.head_parameters())
    return list(encoder.parameters()), []


def finetune_param_groups(encoder: nn.Module, classifier: nn.Module, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Optimizer groups of :class:`SupervisedTask` (see :class:`FinetuneConfig`)."""
    backbone, head = backbone_and_head(encoder)
    head = head + list(classifier.parameters())
    if cfg.backbone_lr is None:
        return [{"params": backbone, "lr_scale": cfg.backbone_lr_scale}, {"params": head}]
    per_layer = getattr(encoder, "backbone_layer_parameters", None)
    if per_layer is None:
        if cfg.layer_decay != 1.0 or cfg.backbone_layers_only:
            raise ConfigError(f"finetune: layer_decay and backbone_layers_only need an encoder with per-layer "
                              f"backbone parameters ({type(encoder).__name__} has none)")
        return [{"params": backbone, "lr": cfg.backbone_lr}, {"params": head, "lr": cfg.head_lr}]
    layers = [list(ps) for ps in per_layer()]
    groups = [{"params": head, "lr": cfg.head_lr}]
    groups += [{"params": ps, "lr": cfg.backbone_lr * cfg.layer_decay ** i} for i, ps in enumerate(layers)]
    if not cfg.backbone_layers_only:
        in_layers = {id(p) for ps in layers for p in ps}
        groups.append({"params": [p for p in backbone if id(p) not in in_layers], "lr": cfg.backbone_lr})
    return groups


def backbone_snapshot(encoder: nn.Module) -> list[torch.Tensor]:
    """Copies of the backbone's weights as they are now (call right after building, i.e. the pretrained ones)."""
    return [p.detach().clone() for p in backbone_and_head(encoder)[0]]


def l2_to_init_loss(task_loss: torch.Tensor, params: list[nn.Parameter], init: list[torch.Tensor],
                    weight: float, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """wavlm_ssl_sv's loss with an L2 pull towards the initial weights (SpeakerNet.forward there):
    ``task_loss / sg(task_loss) + weight * R / (sg(R) + eps)``, ``R = sum_k ||param_k - init_k||_2``
    (the Euclidean norm of each tensor, not squared; ``sg``: no gradient). Its value is about
    ``1 + weight``; its gradient is ``grad(task_loss) / task_loss + weight * sum_k u_k / (R + eps)``,
    ``u_k`` the unit vector from ``init_k`` to ``param_k`` (0 while they are equal): that of
    ``log(task_loss) + weight * log(R + eps)``, i.e. each term's gradient divided by its value, so the
    task gradient has a scale-free size and every moved tensor is pulled back with the same strength.
    The task loss is divided by at least ``eps``: where it underflows (a batch left out by DLG-LC, or
    fp32 cross-entropies that round to 0 while their gradients do not) theirs gives NaN or inf.
    Returns ``(loss, R)``."""
    dist = torch.stack([torch.linalg.vector_norm(p.float() - p0) for p, p0 in zip(params, init)]).sum()
    loss = task_loss / task_loss.detach().clamp_min(eps) + weight * dist / (dist.detach() + eps)
    return loss, dist.detach()


class SupervisedTask(TrainTask):
    """Encoder + AAM-softmax classifier over ``num_classes`` (pseudo) speakers."""

    def __init__(self, encoder: nn.Module, num_classes: int, num_utts: int, loss: LossConfig,
                 finetune: FinetuneConfig, dlg_lc: DLGLCConfig | None = None,
                 labels: np.ndarray | None = None, true_labels: np.ndarray | None = None,
                 pretrained: list[torch.Tensor] | None = None):
        """With ``finetune.cache_frozen_backbone`` the batches' views are crops of cached hidden states
        ``[B, count, num_states, frames, hidden]`` (sslspk.train.state_cache), embedded by the encoder's head."""
        super().__init__()
        from sslspk.losses.aam_softmax import AAMSoftmax

        self.encoder = encoder
        self.classifier = AAMSoftmax(encoder.embedding_dim, num_classes, margin=loss.margin, scale=loss.scale,
                                     subcenters=loss.subcenters, weight_init=loss.weight_init)
        self.loss_cfg, self.finetune, self.dlg_lc = loss, finetune, dlg_lc
        self.labels = labels            # the pseudo-labels as given (DLG-LC corrects from these each epoch)
        self.true_labels = true_labels  # only for diagnostics
        # What DLG-LC needs from the previous epoch, per utterance (NaN: not seen).
        self.register_buffer("last_loss", torch.full((num_utts,), float("nan")))
        self.register_buffer("last_pred", torch.zeros(num_utts, dtype=torch.long))
        self.register_buffer("last_conf", torch.zeros(num_utts))
        if dlg_lc is not None and dlg_lc.mode == "online":
            # The online gate's log-loss threshold (inf: everything kept) and, per utterance, what this
            # epoch's steps trained it on (-1: nothing) and whether the gate kept it (for the epoch's log).
            self.register_buffer("dlg_log_threshold", torch.tensor(float("inf"), dtype=torch.float64))
            self.register_buffer("step_label", torch.full((num_utts,), -1, dtype=torch.long))
            self.register_buffer("step_kept", torch.zeros(num_utts, dtype=torch.bool))
        # finetune.l2_to_init: the backbone's weights to pull towards (a plain list, neither saved in
        # checkpoints nor broadcast by DDP: a resumed run takes them again from the built model).
        self.pretrained: list[torch.Tensor] | None = None
        if finetune.l2_to_init > 0:
            self.pretrained = pretrained if pretrained is not None else backbone_snapshot(encoder)
            self.pulled = backbone_and_head(encoder)[0]
            if [p.shape for p in self.pulled] != [p.shape for p in self.pretrained]:
                raise ValueError("finetune.l2_to_init: the snapshot does not match the backbone's parameters")

    def param_groups(self) -> list[dict[str, Any]]:
        return finetune_param_groups(self.encoder, self.classifier, self.finetune)

    def with_l2_to_init(self, loss: torch.Tensor, logs: dict[str, float]) -> torch.Tensor:
        """``loss`` with finetune.l2_to_init's pull (:func:`l2_to_init_loss`); logs the task loss and distance."""
        if self.pretrained is None:
            return loss
        device = self.pulled[0].device
        if self.pretrained[0].device != device:
            self.pretrained = [t.to(device) for t in self.pretrained]
        total, dist = l2_to_init_loss(loss, self.pulled, self.pretrained, self.finetune.l2_to_init)
        logs.update(task_loss=float(loss.detach()), l2_to_init=float(dist))
        return total

    def on_epoch_start(self, epoch: int, trainer: Any) -> dict[str, float]:
        logs: dict[str, float] = {}
        w = self.loss_cfg.margin_warmup_epochs
        if w is not None:
            a, b = w
            frac = min(1.0, max(0.0, (epoch - a) / max(1, b - a)))
            self.classifier.set_margin(self.loss_cfg.margin * frac)
            logs["margin"] = self.loss_cfg.margin * frac
        if self.dlg_lc is not None and self.dlg_lc.mode == "online":
            logs.update(self._online_gate_epoch_start(epoch, trainer))
        elif self.dlg_lc is not None and epoch >= self.dlg_lc.start_epoch:
            logs.update(self._epoch_gate(epoch, trainer))
        return logs

    def _epoch_gate(self, epoch: int, trainer: Any) -> dict[str, float]:
        """``mode: epoch``: this epoch's labels from the previous epoch's per-utterance losses."""
        from sslspk.losses.dlg_lc import gate_and_correct

        correct = epoch >= self.dlg_lc.correct_from
        res = gate_and_correct(self.last_loss.cpu().numpy(), self.last_pred.cpu().numpy(),
                               self.last_conf.cpu().numpy(), self.labels,
                               self.dlg_lc.threshold if correct else 1.0, self.dlg_lc.min_posterior)
        trainer.dataset.labels = res.labels
        dlg = self._dlg_logs(res)
        if trainer.is_main:
            log.info(f"DLG-LC epoch {epoch + 1}: " + " ".join(f"{k}={v:.4g}" for k, v in dlg.items()))
        return dlg

    def _dlg_logs(self, res: Any) -> dict[str, float]:
        """A gate result's scalars, with the correction diagnostics when the true speakers are known."""
        dlg = res.logs()
        if self.true_labels is not None:
            d = res.diagnostics(self.true_labels)
            dlg.update({f"dlg_{k}": float(d[k]) for k in
                        ("corrections", "correction_precision", "accuracy_before", "accuracy_after")})
        return dlg

    def _online_gate_epoch_start(self, epoch: int, trainer: Any) -> dict[str, float]:
        """``mode: online``: from ``start_epoch`` on, the gate's threshold from the previous epoch's
        losses (kept as it was when :func:`~sslspk.losses.dlg_lc.gmm_threshold` finds none); then the
        per-utterance records start afresh (so they hold this epoch's samples only); the loader adds the
        clean crops from ``correct_start_epoch``."""
        from sslspk.losses.dlg_lc import gmm_threshold

        trainer.dataset.clean_views = epoch >= self.dlg_lc.correct_from
        if epoch >= self.dlg_lc.start_epoch:
            losses = self.last_loss.cpu().numpy()
            found = gmm_threshold(np.log(losses[np.isfinite(losses) & (losses > 0)]))
            if found is None:
                log.warning(f"DLG-LC epoch {epoch + 1}: no single GMM crossing in the previous epoch's "
                            f"log-losses; threshold kept at {float(self.dlg_log_threshold):.4g}")
            else:
                self.dlg_log_threshold.fill_(found)
        self.last_loss.fill_(float("nan"))
        self.step_label.fill_(-1)
        self.step_kept.fill_(False)
        return {}

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """``mode: online``, gated epochs: the gate threshold, the fractions kept/relabelled/dropped and,
        with the true speakers, the corrections' precision, over the samples of the epoch."""
        if self.dlg_lc is None or self.dlg_lc.mode != "online" or epoch < self.dlg_lc.start_epoch:
            return {}
        from sslspk.losses.dlg_lc import GateResult

        given = np.asarray(self.labels)
        seen = np.isfinite(self.last_loss.cpu().numpy())
        kept = self.step_kept.cpu().numpy() & seen
        trained = np.where(seen, self.step_label.cpu().numpy(), given)
        relabelled = seen & ~kept & (trained >= 0)
        res = GateResult(labels=trained, old_labels=given, reliable=kept | ~seen,
                         corrected=relabelled & (trained != given), confirmed=relabelled & (trained == given),
                         dropped=seen & (trained < 0), unseen=~seen, clean_posterior=kept.astype(float))
        dlg = {"dlg_threshold": float(self.dlg_log_threshold), **self._dlg_logs(res)}
        if not is_distributed() or torch.distributed.get_rank() == 0:
            log.info(f"DLG-LC epoch {epoch + 1}: " + " ".join(f"{k}={v:.4g}" for k, v in dlg.items()))
        return dlg

    def on_fit_start(self, trainer: Any) -> None:
        """With ``loss.init_from_centroids``: embed the training utterances with the initial encoder
        (on the training device) and start the classes at their means (:meth:`init_classes_from`).
        Under DDP each rank embeds its share of the utterances and the class sums are all-reduced."""
        if not self.loss_cfg.init_from_centroids:
            return
        import torch.distributed as dist

        from sslspk.extraction import embed_data_dir

        ds = trainer.dataset
        shard = (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)
        emb = dict(embed_data_dir(self.encoder.eval(), ds.data_dir, ds.sample_rate, device=str(trainer.device),
                                  progress=trainer.is_main, channel=ds.channel, shard=shard))
        rows = np.array([i for i, u in enumerate(ds.utts) if u in emb], dtype=np.int64)
        x = np.stack([emb[ds.utts[i]] for i in rows]) if len(rows) else np.zeros((0, self.classifier.weight.shape[1]))
        sums, counts = self.class_sums(x, self.labels[rows])
        if is_distributed():
            both = torch.as_tensor(np.concatenate([sums, counts[:, None]], axis=1), device=trainer.device)
            dist.all_reduce(both)
            sums, counts = both[:, :-1].cpu().numpy(), both[:, -1].cpu().numpy()
        self.init_classes_from_sums(sums, counts)
        if trainer.is_main:
            print(f"classifier: {self.classifier.num_classes} classes start at the mean embeddings of their utterances")

    def class_sums(self, embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-class sums of the L2-normalised ``embeddings`` ``[N, D]`` with class ``labels`` ``[N]``, and counts."""
        from sslspk.data.embeddings import group_sums, l2_normalize

        return group_sums(l2_normalize(embeddings), labels, self.classifier.num_classes)

    def init_classes_from(self, embeddings: np.ndarray) -> None:
        """Class weights := the mean L2-normalised embedding of each class's utterances (``[num_utts, D]``,
        in the dataset's order), so that training starts from the encoder's own speaker geometry
        instead of random classes. Classes without an utterance keep their random weights."""
        self.init_classes_from_sums(*self.class_sums(embeddings, self.labels))

    def init_classes_from_sums(self, sums: np.ndarray, counts: np.ndarray) -> None:
        """:meth:`init_classes_from` given the per-class sums and counts (:meth:`class_sums`)."""
        c = self.classifier.num_classes
        sums = np.array(sums, dtype=np.float64)
        empty = counts == 0
        sums[empty] = self.classifier.weight.detach().view(c, self.classifier.subcenters, -1)[empty, 0].cpu().numpy()
        self.classifier.set_class_centres(torch.as_tensor(sums, dtype=torch.float32))

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        """Embeddings of the first crop of a batch's first view ``[B, count, ...]``: audio, or cached hidden
        states with ``finetune.cache_frozen_backbone`` (then only the head runs)."""
        if self.finetune.cache_frozen_backbone:
            return self.encoder.pool(views[:, 0].float().unbind(1))
        return self.encoder(views[:, 0])

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        emb = self.embed(batch["views"][0])
        if self.dlg_lc is not None and self.dlg_lc.mode == "online":
            loss, pred, labels = self._online_gated_loss(batch, emb, epoch)
        else:
            loss, pred, labels = self._epoch_gated_loss(batch, emb)
        keep = labels >= 0
        logs = {"accuracy": float(((pred == labels) & keep).sum() / keep.sum().clamp_min(1))}
        return self.with_l2_to_init(loss, logs), logs

    def _epoch_gated_loss(self, batch: dict, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss on this epoch's labels (``mode: epoch`` or no DLG-LC); records what the epoch gate needs.
        Returns the loss, the predictions and the labels trained on (-1: left out)."""
        labels = batch["label"]  # this epoch's labels: corrected by DLG-LC, -1 = left out
        given = torch.as_tensor(self.labels, device=labels.device)[batch["index"]]
        # DLG-LC gates on the loss against the given pseudo-label, whatever this epoch trains on.
        given_loss, logits = self.classifier(emb, given)
        changed = (labels != given) & (labels >= 0)
        per_sample = self.classifier(emb, labels.clamp_min(0))[0] if changed.any() else given_loss
        keep = labels >= 0
        with torch.no_grad():
            conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)
            idx = all_gather_cat(batch["index"])
            self.last_loss[idx] = all_gather_cat(given_loss.detach().float())
            self.last_pred[idx] = all_gather_cat(pred)
            self.last_conf[idx] = all_gather_cat(conf)
        return (per_sample * keep).sum() / keep.sum().clamp_min(1), pred, labels

    def _online_gated_loss(self, batch: dict, emb: torch.Tensor,
                           epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mode: online``: the step's loss through :func:`~sslspk.losses.dlg_lc.online_gate_step`, the
        label correction from the clean crops' logits computed without gradient (the authors' code
        back-propagates none through them either: only their argmax and a detached mask are used)
        and in train mode, as theirs. Records each sample's loss against its given label (for the next
        epoch's threshold) and what it trained on. Returns the loss, the predictions, the labels trained on."""
        from sslspk.losses.dlg_lc import online_gate_step

        given = batch["label"]   # the given pseudo-labels: the online mode never relabels the dataset
        loss, margin_logits, logits = self.classifier.forward_with_margin_logits(emb, given)
        clean_logits = None
        if epoch >= self.dlg_lc.correct_from:
            with torch.no_grad():
                clean_logits = self.classifier.linear_logits(self.embed(batch["clean_views"][0]))
        gate_active = epoch >= self.dlg_lc.start_epoch
        step = online_gate_step(loss, margin_logits, given,
                                float(self.dlg_log_threshold) if gate_active else float("inf"),
                                clean_logits, self.dlg_lc.temperature, self.dlg_lc.threshold)
        with torch.no_grad():
            idx = all_gather_cat(batch["index"])
            recorded = torch.where(given >= 0, loss.detach().float(), torch.full_like(loss, float("nan")))
            self.last_loss[idx] = all_gather_cat(recorded.float())
            self.step_label[idx] = all_gather_cat(step.labels)
            self.step_kept[idx] = all_gather_cat(step.kept.long()).bool()
        return step.loss, logits.argmax(dim=1), step.labels
