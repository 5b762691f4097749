"""The trainer: torchrun/DDP, AMP, warm-up + cosine or per-epoch step-decay LR, atomic checkpoints, automatic resume,
checkpoint averaging, TensorBoard + text logs, tqdm progress, NaN/inf guard.

An experiment dir holds ``config.yaml`` (the full config), ``inputs.json`` (digests of the config,
data and initial model it was trained from: sslspk.experiment), ``checkpoints/epoch_N.pt``,
``train.log``, ``tensorboard/`` and, once finished, ``model.pt`` (the averaged encoder), so
``sslspk.extraction.load_encoder(exp_dir)`` extracts with it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslspk.train.distributed import all_reduce_mean, any_process, init_distributed, is_distributed
from sslspk.train.task import TrainTask
from sslspk.utils.errors import TrainingError
from sslspk.utils.fileio import atomic_write

log = logging.getLogger("sslspk.train")


@dataclass
class TrainConfig:
    """The ``train:`` block of a config."""

    epochs: int = 10
    batch_size: int = 64            # per process
    num_workers: int = 2            # loader processes (0: loading in this process)
    loader_threads: int = 1         # num_workers 0: threads preparing each batch; >1 pays when numpy/scipy
                                    # augmentation dominates (egs/mini SSL: 1.35x), not for light loading
    optimizer: str = "sgd"          # sgd | adamw | adam (L2 weight decay, as sslsv's default optimizer)
    lr: float = 0.2                 # peak learning rate, reached after the warm-up (groups with their own
                                    # absolute ``lr``, e.g. finetune.backbone_lr/head_lr, follow the same schedule)
    schedule: str = "cosine"        # cosine: warm-up then cosine decay to min_lr; step: lr x step_gamma every
                                    # step_epochs epochs, no warm-up (sslsv's default schedule)
    min_lr: float = 1e-5            # end of the cosine decay
    warmup_epochs: float = 1.0
    step_epochs: int = 5            # step schedule
    step_gamma: float = 0.95        # step schedule
    weight_decay: float = 5e-5
    decay_biases_and_norms: bool = False  # false: weight decay spares 1-D parameters (biases, norms);
                                          # true: every parameter decays (torch AdamW's plain use)
    momentum: float = 0.9           # sgd only
    nesterov: bool = True           # sgd only (sslsv's SGD: false)
    sync_bn: bool = False           # under DDP, BatchNorm layers become SyncBatchNorm (batch statistics over
                                    # all processes; sslsv's trainer.ddp_sync_batchnorm); CUDA only
    grad_clip: float | None = 3.0   # max gradient norm, or null
    amp: bool = True                # mixed precision on CUDA (bf16)
    cpu_amp: bool = False           # bf16 autocast on CPU too, where the CPU computes bf16 natively
                                    # (AVX512-BF16, AMX); fp32 with a warning elsewhere
    average_last: int = 1           # model.pt = average of the last N epoch checkpoints
    average_best: int = 0           # > 0: model.pt = average of the N checkpoints with the lowest validation EER
                                    # (needs a validation: block); the last average_last are kept for resuming
    accumulate: int = 1             # micro-batches of batch_size per optimiser step (gradient accumulation)
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda
    log_every: int = 10             # steps between TensorBoard points
    nan_policy: str = "stop"        # stop | skip (with a count): what a non-finite loss or gradient does
    max_steps_per_epoch: int | None = None  # cut epochs short (tests, quick runs)
    sampler: str = "random"         # random: every utterance once per epoch; speaker_distinct (labelled data): at
                                    # most max_per_speaker per speaker, no speaker twice in a batch (train/sampler.py)
    max_per_speaker: int = 500      # speaker_distinct only

    def __post_init__(self) -> None:
        from sslspk.utils.config import ConfigError

        if self.optimizer not in ("sgd", "adamw", "adam"):
            raise ConfigError(f"train.optimizer must be sgd, adamw or adam, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step") or self.step_epochs < 1:
            raise ConfigError(f"train.schedule must be cosine or step (step_epochs >= 1), got {self.schedule!r}")
        if self.sampler not in ("random", "speaker_distinct") or self.max_per_speaker < 1:
            raise ConfigError(f"train.sampler must be random or speaker_distinct and train.max_per_speaker >= 1, "
                              f"got {self.sampler!r}, {self.max_per_speaker}")
        if self.nan_policy not in ("stop", "skip"):
            raise ConfigError(f"train.nan_policy must be stop or skip, got {self.nan_policy!r}")
        from sslspk.utils.config import check_ranges

        check_ranges(self, epochs=">=1", batch_size=">=1", num_workers=">=0", loader_threads=">=1", lr=">0",
                     min_lr=">=0", warmup_epochs=">=0", step_gamma="(0,1]", weight_decay=">=0",
                     momentum="[0,1)", grad_clip=">0", average_last=">=1", average_best=">=0", accumulate=">=1",
                     seed=">=0", log_every=">=1", max_steps_per_epoch=">=1")


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig, epoch: int = 0) -> float:
    """The scheduled learning rate at optimiser step ``step`` (0-based) of ``total``, in ``epoch`` (0-based).
    cosine: linear warm-up to ``cfg.lr`` over ``warmup`` steps, then cosine decay to ``cfg.min_lr``;
    step: ``cfg.lr`` times ``step_gamma`` per ``step_epochs`` completed epochs (counted by epoch, so that
    epochs of different lengths or skipped steps do not shift it)."""
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** (epoch // cfg.step_epochs)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def _checkpoints(exp_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in (exp_dir / "checkpoints").glob("epoch_*.pt"):
        m = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def last_checkpoint(exp_dir: Path) -> Path | None:
    """The latest ``checkpoints/epoch_N.pt`` of an experiment dir, or None."""
    found = _checkpoints(Path(exp_dir))
    return found[-1][1] if found else None


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file renamed when complete; a full disk raises OSError naming ``path``."""
    buf = io.BytesIO()   # torch.save's own file writer turns write errors into a bare RuntimeError
    torch.save(obj, buf)
    with atomic_write(path, "wb") as f:
        f.write(buf.getbuffer())


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX), by oneDNN's own check."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def average_checkpoints(paths: list[Path], task: TrainTask) -> dict[str, torch.Tensor]:
    """Average the exported encoder weights of several checkpoints (integer buffers from the last)."""
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        task.load_state_dict(torch.load(p, map_location="cpu", weights_only=False)["task"])
        for k, v in task.export_state().items():
            if v.is_floating_point():
                avg[k] = avg[k] + v.double() if k in avg else v.double()
            else:
                avg[k] = v
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in avg.items()}


def sync_batchnorm(task: TrainTask, enabled: bool, device: torch.device) -> TrainTask:
    """``task`` with its BatchNorm layers turned into SyncBatchNorm when ``enabled`` under DDP (the same
    parameter objects: the optimizer, EMA teachers and checkpoints are unaffected); else ``task``."""
    if not (enabled and is_distributed()):
        return task
    if device.type != "cuda":
        raise TrainingError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm); set it false on CPU")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(task)


class Trainer:
    """Runs a :class:`TrainTask` over a dataset into an experiment dir (see module doc)."""

    def __init__(self, cfg: TrainConfig, exp_dir: str | os.PathLike):
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        from sslspk.utils.device import resolve_device

        dev = resolve_device(cfg.device)
        self.rank, self.world, self.local_rank = init_distributed(dev)
        self.device = torch.device(f"cuda:{self.local_rank}" if dev == "cuda" else dev)
        self.is_main = self.rank == 0
        self.dataset: Any = None
        self.epoch = 0
        self.global_step = 0     # optimiser steps done
        self.total_steps = 1     # optimiser steps of the run (the LR schedule and after_optimizer_step's progress)
        self.warmup_steps = 0
        self.skipped = 0         # steps skipped by nan_policy skip, over the run
        self.epoch_step = 0      # optimiser steps tried in this epoch (skipped ones included), for messages
        self.validation: dict[int, dict[str, float]] = {}   # epoch -> validation metrics (checkpoints/validation.json)

    # ----------------------------------------------------------------- logging
    def _setup_logging(self) -> None:
        if not self.is_main:
            return
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.exp_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        root = logging.getLogger("sslspk")   # the library's warnings (e.g. resampling) land in train.log too
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                   for h in root.handlers):
            root.addHandler(logging.StreamHandler())
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.exp_dir / "tensorboard"))

    def log_scalars(self, logs: dict[str, float], step: int, prefix: str) -> None:
        if self.is_main:
            for k, v in logs.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    # -------------------------------------------------------------- checkpoint
    def _save(self, task: TrainTask, opt: torch.optim.Optimizer) -> None:
        if not self.is_main:
            return
        ckpt_dir = self.exp_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        state = {"task": task.state_dict(), "optimizer": opt.state_dict(),
                 "epoch": self.epoch, "global_step": self.global_step,
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                         "python": random.getstate(),
                         "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}}
        _atomic_save(state, ckpt_dir / f"epoch_{self.epoch}.pt")
        keep = {e for e, _ in _checkpoints(self.exp_dir)[-self.cfg.average_last:]} | set(self.best_epochs())
        for e, p in _checkpoints(self.exp_dir):
            if e not in keep:
                p.unlink()

    def best_epochs(self) -> list[int]:
        """The ``train.average_best`` validated epochs with the lowest EER (ties: the later epoch), in epoch order."""
        ranked = sorted(self.validation, key=lambda e: (self.validation[e]["eer"], -e))
        return sorted(ranked[:self.cfg.average_best])

    def _resume(self, task: TrainTask, opt: torch.optim.Optimizer) -> bool:
        """Load the latest checkpoint, if any; returns whether one was loaded."""
        if self.is_main:   # checkpoints half-written by a killed run (never loaded: only epoch_N.pt is)
            for tmp in (self.exp_dir / "checkpoints").glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        if is_distributed():   # ranks list the checkpoints after rank 0 removed stale ones (--force, new inputs)
            torch.distributed.barrier()
        record = self.exp_dir / "checkpoints" / "validation.json"
        if record.is_file():
            self.validation = {int(e): m for e, m in json.loads(record.read_text()).items()}
        ckpts = _checkpoints(self.exp_dir)
        if not ckpts:
            return False
        epoch, path = ckpts[-1]
        state = torch.load(path, map_location="cpu", weights_only=False)
        task.load_state_dict(state["task"])
        opt.load_state_dict(state["optimizer"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        log.info(f"resumed from {path} (epoch {self.epoch} done, step {self.global_step})")
        return True

    # -------------------------------------------------------------------- fit
    def _optimizer(self, task: TrainTask) -> torch.optim.Optimizer:
        """One optimiser group per task group (two unless ``decay_biases_and_norms``: 1-D parameters
        without weight decay). A group's ``lr_scale`` is its learning rate over the scheduled ``train.lr``
        (a task group with an absolute ``lr`` gets ``lr / train.lr``), so every group follows the schedule."""
        groups = []
        for g in task.param_groups():
            params = [p for p in g["params"] if p.requires_grad]
            scale = g["lr"] / self.cfg.lr if "lr" in g else g.get("lr_scale", 1.0)
            if self.cfg.decay_biases_and_norms:
                groups.append({"params": params, "weight_decay": self.cfg.weight_decay, "lr_scale": scale})
                continue
            groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": self.cfg.weight_decay,
                        "lr_scale": scale},
                       {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": scale}]
        groups = [g for g in groups if g["params"]]
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum,
                                   nesterov=self.cfg.nesterov)
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.cfg.lr)
        return torch.optim.AdamW(groups, lr=self.cfg.lr)

    def _use_amp(self) -> bool:
        """bf16 autocast: ``amp`` on CUDA; ``cpu_amp`` on a CPU with native bf16 (oneDNN's check)."""
        if self.device.type == "cuda":
            return self.cfg.amp
        if not self.cfg.cpu_amp:
            return False
        if native_cpu_bf16():
            log.info("train.cpu_amp: bf16 autocast on the CPU")
            return True
        log.warning("train.cpu_amp: this CPU has no native bf16 support (oneDNN); training in fp32")
        return False

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: ([t.to(self.device, non_blocking=True) for t in v] if isinstance(v, list)
                    else v.to(self.device, non_blocking=True)) for k, v in batch.items()}

    def step(self, task: TrainTask, opt: torch.optim.Optimizer, batches: list[dict[str, Any]], epoch: int,
             model: torch.nn.Module | None = None, amp: bool = False) -> dict[str, float] | None:
        """One optimiser step over the micro-batches ``batches`` (``train.accumulate`` of them in ``fit``):
        the scheduled LR of step ``global_step`` of ``total_steps``; per micro-batch, the forward pass of
        ``model`` (``task``, or its DDP wrapper) under bf16 autocast when ``amp``, and the backward pass of
        its loss / K (DDP: ``no_sync`` on all but the last, so gradients are all-reduced once); then the
        task's pre-step hook, gradient clipping, the optimiser step and the task's post-step hook.

        The accumulated gradient is that of the mean of the K micro-batch losses: for a loss that is a
        plain mean over the batch, the same as one step on the K micro-batches together (batch K x B), up
        to batch-norm statistics (computed per micro-batch). A loss that is not a plain mean differs:
        finetune.l2_to_init's ``task_loss / sg(task_loss)`` normalises each micro-batch's task gradient by
        that micro-batch's own loss (the mean over micro-batches of ``grad(L_i) / L_i``, not
        ``grad(L) / L`` of the whole batch), and its pull term is counted once per step as without
        accumulation (K times 1/K). The logs are the means over the micro-batches.
        Returns the logs (``loss``, ``lr``, the task's), or None when ``train.nan_policy`` skip skipped the
        step (a non-finite loss or gradient on any process); with ``stop`` that raises TrainingError.
        """
        cfg = self.cfg
        model = task if model is None else model
        lr = lr_at(self.global_step, self.total_steps, self.warmup_steps, cfg, epoch)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        bad = None
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1 or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if sync else model.no_sync():
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, logs = model(self._to_device(batch), epoch)
                bad = None if torch.isfinite(loss) else f"non-finite loss ({loss.item()})"
                if any_process(bad is not None, self.device) and bad is None:   # under DDP every process
                    bad = "non-finite loss on another process"                  # skips its backward, or none
                if bad is not None:
                    break
                (loss / len(batches)).backward()
            for k, v in {"loss": loss.item(), **logs}.items():
                sums[k] = sums.get(k, 0.0) + float(v) / len(batches)
        if bad is None:
            task.before_optimizer_step(epoch)
            params = [p for p in task.parameters() if p.requires_grad and p.grad is not None]
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
            if cfg.grad_clip:
                sums["grad_norm"] = float(gnorm)
            if not torch.isfinite(gnorm):   # gradients are all-reduced: the same on every process
                bad = f"non-finite gradient (norm {gnorm.item()})"
        if bad is not None:
            if cfg.nan_policy == "stop":
                raise TrainingError(f"{bad} at epoch {epoch + 1}, step {self.epoch_step + 1}; the last good "
                                    f"checkpoint in {self.exp_dir / 'checkpoints'} is kept")
            self.skipped += 1
            opt.zero_grad(set_to_none=True)
            log.warning(f"{bad} at epoch {epoch + 1} step {self.epoch_step + 1}: step skipped ({self.skipped} so far)")
            return None
        opt.step()
        self.global_step += 1
        task.after_optimizer_step(self.global_step / self.total_steps)
        return {"loss": sums.pop("loss"), "lr": lr, **sums}

    def _validate(self, task: TrainTask, validator: Any) -> dict[str, float]:
        """Rank 0 validates the task (the other ranks wait at a barrier); records and returns the metrics
        (empty on other ranks)."""
        metrics: dict[str, float] = {}
        if self.is_main:
            t0 = time.time()
            metrics = validator(task, self.device)
            self.validation[self.epoch] = metrics
            (self.exp_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            with atomic_write(self.exp_dir / "checkpoints" / "validation.json") as f:
                json.dump({str(e): m for e, m in sorted(self.validation.items())}, f, indent=1)
            log.info(f"validation epoch {self.epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                     + f" ({time.time() - t0:.0f} s)")
            self.log_scalars(metrics, self.epoch, "validation")
        if is_distributed():
            torch.distributed.barrier()
        return metrics

    def fit(self, task: TrainTask, dataset: Any, validator: Any = None, validate_every: int = 1) -> Path:
        """Train (resuming from the latest checkpoint), then write ``model.pt``; returns its path.
        ``validator(task, device) -> metrics`` (e.g. :class:`sslspk.train.validation.Validator`), if any,
        runs after every ``validate_every``-th epoch and the last one, before the checkpoint is saved."""
        from torch.utils.data import DataLoader, DistributedSampler
        from tqdm import tqdm

        from sslspk.train.dataset import collate

        cfg = self.cfg
        if cfg.average_best and validator is None:
            raise TrainingError("train.average_best needs a validation (the validation: block of the config)")
        self._setup_logging()
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)
        random.seed(cfg.seed + self.rank)
        self.dataset = dataset
        if cfg.sampler == "speaker_distinct":
            from sslspk.train.sampler import SpeakerDistinctSampler

            if getattr(dataset, "labels", None) is None:
                raise TrainingError("train.sampler speaker_distinct needs labelled data (pseudo-label training)")
            sampler = SpeakerDistinctSampler(dataset.labels, cfg.batch_size, cfg.max_per_speaker, self.rank,
                                             self.world, cfg.seed)
        else:
            sampler = DistributedSampler(dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
                                         seed=cfg.seed, drop_last=True)
        if len(sampler) < cfg.batch_size * cfg.accumulate:
            what = " of distinct speakers (train.sampler)" if cfg.sampler == "speaker_distinct" else ""
            raise TrainingError(f"{len(dataset)} utterances over {self.world} process(es) cannot fill one "
                                f"batch{what} of {cfg.batch_size} x train.accumulate {cfg.accumulate}: lower "
                                "train.batch_size or train.accumulate")
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                            collate_fn=collate, drop_last=True, pin_memory=self.device.type == "cuda")
        task = sync_batchnorm(task, cfg.sync_bn, self.device)
        task = task.to(self.device)
        opt = self._optimizer(task)
        use_amp = self._use_amp()
        if not self._resume(task, opt):   # bf16 autocast needs no loss scaling: no GradScaler
            task.on_fit_start(self)
        model = task
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(task, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        steps_per_epoch = len(loader) // cfg.accumulate   # optimiser steps
        if cfg.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
        self.total_steps = steps_per_epoch * cfg.epochs
        self.warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            task.train()
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            start_logs = task.on_epoch_start(epoch, self)
            sums: dict[str, float] = {}
            applied = 0   # optimizer steps of this epoch (the logged means are over them)
            t0 = time.time()
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.is_main,
                       mininterval=10)
            micro: list[dict[str, Any]] = []
            for batch in loader:
                micro.append(batch)
                if len(micro) < cfg.accumulate:
                    continue
                self.epoch_step = bar.n
                logs = self.step(task, opt, micro, epoch, model, use_amp)
                micro = []
                bar.update()
                if logs is not None:
                    applied += 1
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    if self.global_step % cfg.log_every == 0:
                        self.log_scalars(logs, self.global_step, "step")
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)
                if bar.n >= steps_per_epoch:
                    break
            bar.close()
            means = {k: float(all_reduce_mean(torch.tensor(v / max(1, applied), device=self.device)))
                     for k, v in sums.items()}
            means.update(start_logs)
            means.update(task.on_epoch_end(epoch))
            means["seconds"] = time.time() - t0
            self.epoch = epoch + 1
            self.log_scalars(means, self.epoch, "epoch")
            if self.is_main:
                log.info(f"epoch {self.epoch}/{cfg.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in means.items()))
            if validator is not None and (self.epoch % validate_every == 0 or self.epoch == cfg.epochs):
                self._validate(task, validator)
            self._save(task, opt)
        return self._finish(task)

    def _finish(self, task: TrainTask) -> Path:
        out = self.exp_dir / "model.pt"
        if self.is_main:
            if self.cfg.average_best:
                best = set(self.best_epochs())
                paths = [p for e, p in _checkpoints(self.exp_dir) if e in best]
                how = f"the {len(paths)} best by validation EER"
            else:
                paths = [p for _, p in _checkpoints(self.exp_dir)][-self.cfg.average_last:]
                how = f"the last {len(paths)}"
            state = average_checkpoints(paths, task.cpu())
            _atomic_save({"model": state, "averaged": [p.name for p in paths]}, out)
            log.info(f"wrote {out} (average of {how}: {', '.join(p.name for p in paths)})")
            self.tb.close()
        if is_distributed():
            torch.distributed.barrier()
        return out
