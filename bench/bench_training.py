#!/usr/bin/env python3
"""Benchmark: CPU training steps/s of DINO ECAPA-TDNN and WavLM fine-tuning with AAM-softmax.

Usage: python bench/bench_training.py [--quick] [--threads 1 2] [--cpu-amp] [--append docs/benchmarks.md]

The tasks are the library's, built as ``sslspk.experiment.train_from_config`` builds them from
the VoxCeleb recipe configs (randomly initialised, random audio):

* DINO: ``egs/voxceleb/v1/conf/ssl_dino_ecapa1024.yaml`` (2 global crops of 4 s + 4 local of
  2 s, 65536 prototypes, SGD), with ECAPA-TDNN 512 channels (the recipe's 1024: ``gpu_check.sh``);
* WavLM: ``egs/voxceleb/v1/conf/pseudo_wavlm_base_plus.yaml`` (MHFA head, AAM-softmax over
  ``--classes`` pseudo-speakers, 3 s crops, AdamW, full fine-tuning phase) with a small WavLM
  (4 layers of 256; Base+'s shapes: ``gpu_check.sh``).

One step = ``Trainer.step`` on one batch, the trainer's own step: forward (under bf16 autocast with
AMP), backward, the task's pre-step hook, gradient clipping, optimizer step, the task's post-step
hook (DINO: the teacher's EMA update); optimizer from ``Trainer``. Timed over ``--steps`` steps after one
warm-up. ``--cpu-amp`` also times each run under bf16 autocast (``train.cpu_amp``; fast only on
CPUs with native bf16). The recipe's models at their batch sizes on a GPU: ``bench/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from types import SimpleNamespace

import benchlib

CONF = os.path.join(benchlib.REPO, "egs", "voxceleb", "v1", "conf")


def dino_task(channels: int, quick: bool):
    """``(task, make_batch, crops per item, train config)`` of DINO on ECAPA-TDNN with ``channels``."""
    import torch

    from sslspk.models import build_model
    from sslspk.ssl import build_ssl_task
    from sslspk.train.dataset import parse_views
    from sslspk.utils.config import load_yaml

    cfg = load_yaml(os.path.join(CONF, "ssl_dino_ecapa1024.yaml"))
    model = {**cfg["model"], "channels": channels, "mfa_channels": 3 * channels}
    ssl = {**cfg["ssl"], "out_dim": 1024, "hidden": 256} if quick else cfg["ssl"]
    views = parse_views(cfg["data"]["views"])
    torch.manual_seed(0)
    # the task checks its views against the data's (no SSPS here: nothing else of a dataset is needed)
    task = build_ssl_task(ssl, build_model(model), SimpleNamespace(views=views), cfg["train"]["epochs"])

    def make_batch(b: int, device: str) -> dict:
        return {"views": [0.1 * torch.randn(b, v.count, int(v.seconds * 16000), device=device) for v in views],
                "index": torch.arange(b, device=device)}

    return task, make_batch, sum(v.count for v in views), cfg["train"]


def wavlm_task(pretrained: str, classes: int):
    """``(task, make_batch, crops per item, train config)`` of WavLM + MHFA fine-tuning with AAM-softmax."""
    import numpy as np
    import torch

    from sslspk.models import build_model
    from sslspk.supervised import FinetuneConfig, LossConfig, SupervisedTask
    from sslspk.utils.config import from_dict, load_yaml

    cfg = load_yaml(os.path.join(CONF, "pseudo_wavlm_base_plus.yaml"))
    torch.manual_seed(0)
    encoder = build_model({**cfg["model"], "pretrained": pretrained})
    num_utts = 100_000
    labels = np.random.default_rng(0).integers(0, classes, num_utts)
    task = SupervisedTask(encoder, classes, num_utts, from_dict(LossConfig, cfg["loss"], "loss"),
                          from_dict(FinetuneConfig, cfg["finetune"], "finetune"), labels=labels)
    seconds = cfg["data"]["views"][0]["seconds"]

    def make_batch(b: int, device: str) -> dict:
        index = torch.randint(0, num_utts, (b,), device=device)
        return {"views": [0.1 * torch.randn(b, 1, int(seconds * 16000), device=device)], "index": index,
                "label": torch.as_tensor(labels, device=device)[index]}

    return task, make_batch, 1, cfg["train"]


def time_steps(task, make_batch, batch: int, steps: int, device: str, amp: bool, train_cfg: dict) -> float:
    """Seconds per training step (mean of ``steps`` after one warm-up), as the trainer steps."""
    import torch

    from sslspk.train.trainer import TrainConfig, Trainer
    from sslspk.utils.config import from_dict

    cfg = from_dict(TrainConfig, {**train_cfg, "device": device}, "train")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)   # the trainer's parameter groups (no decay on biases/norms) and step
        opt = trainer._optimizer(task)
        trainer.total_steps = 2 * (steps + 1)   # mid-run: the LR and the EMA's progress of an ordinary step
        trainer.global_step = steps + 1
        # the epoch after the warm-up phase: DINO's frozen last layer
        epoch = getattr(getattr(task, "cfg", None), "freeze_last_layer_epochs", 0)
        data = make_batch(batch, device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        times = []
        for _ in range(steps + 1):
            sync()
            t = time.perf_counter()
            trainer.step(task, opt, [data], epoch, amp=amp)
            sync()
            times.append(time.perf_counter() - t)
    return sum(times[1:]) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default 1 2)")
    p.add_argument("--cpu-batch", type=int, default=4, help="utterances per step (default 4)")
    p.add_argument("--steps", type=int, default=3, help="steps timed after one warm-up (default 3)")
    p.add_argument("--classes", type=int, default=7500, help="AAM-softmax pseudo-speakers (default 7500)")
    p.add_argument("--cpu-amp", action="store_true",
                   help="also time each model under bf16 autocast (train.cpu_amp), side by side with fp32")
    p.add_argument("--quick", action="store_true", help="tiny ECAPA and WavLM, batch 2, one step, one thread")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.quick:
        args.threads, args.cpu_batch, args.steps, args.classes = [1], 2, 1, 100
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "wavlm_small")
        benchlib.save_wavlm(small, benchlib.WAVLM_TINY if args.quick else benchlib.WAVLM_SMALL)
        channels = 64 if args.quick else 512
        models = [(f"DINO ECAPA-TDNN {channels}", lambda: dino_task(channels, args.quick)),
                  (f"WavLM {'tiny' if args.quick else 'small'} + MHFA, AAM", lambda: wavlm_task(small, args.classes))]
        for name, build in models:
            task, make_batch, crops, train_cfg = build()
            for n in args.threads:
                torch.set_num_threads(n)
                for amp in (False, True) if args.cpu_amp else (False,):
                    sec = time_steps(task.train(), make_batch, args.cpu_batch, args.steps, "cpu", amp, train_cfg)
                    precision = "bf16 autocast" if amp else "fp32"
                    print(f"{name} threads={n} {precision}: {sec:.2f} s/step", file=sys.stderr, flush=True)
                    rows.append(f"| {name} | {n} | {precision} | {args.cpu_batch} | {sec:.2f} | "
                                f"{1 / sec:.3f} | {args.cpu_batch * crops / sec:.1f} |")
    section = "\n".join([
        f"### Training: steps/s — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_training.py')}`", "",
        "Library tasks from the VoxCeleb recipe configs (random init, random audio); crops/s = utterances x "
        f"crops per utterance (DINO 6, WavLM 1) per second; AAM-softmax over {args.classes:,} classes. "
        f"{benchlib.load_note()}", "",
        "| model | threads | precision | batch | s/step | steps/s | crops/s |", "|---|---|---|---|---|---|---|",
        *rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
