#!/usr/bin/env python3
"""Benchmark: training steps/s of DINO ECAPA-TDNN and WavLM fine-tuning with AAM-softmax.

Usage: python bench/bench_training.py [--quick] [--device cpu|cuda] [--threads 1 2] [--cpu-amp] [--append docs/benchmarks.md]

The tasks are the library's, built as ``sslspk.experiment.train_from_config`` builds them from
the VoxCeleb recipe configs (randomly initialised, random audio):

* DINO: ``egs/voxceleb/v1/conf/ssl_dino_ecapa1024.yaml`` (2 global crops of 4 s + 4 local of
  2 s, 65536 prototypes, SGD), with ECAPA-TDNN 512 (``--device cpu``) or 1024 channels;
* WavLM: ``egs/voxceleb/v1/conf/pseudo_wavlm_base_plus.yaml`` (MHFA head, AAM-softmax over
  ``--classes`` pseudo-speakers, 3 s crops, AdamW, full fine-tuning phase) with a small WavLM
  (4 layers of 256) or, on CUDA, one of WavLM Base+'s shapes (12 layers of 768).

One step = what the trainer does per batch: forward (under bf16 autocast with AMP), backward,
the task's pre-step hook, gradient clipping, optimizer step, the task's post-step hook (DINO:
the teacher's EMA update); optimizer from ``Trainer``. Timed over ``--steps`` steps after one
warm-up. ``--cpu-amp`` also times each CPU run under bf16 autocast (``train.cpu_amp``; fast only on
CPUs with native bf16). ``--device cuda`` times each model in fp32 and with AMP (bf16), gives the peak GPU
memory (``torch.cuda.max_memory_allocated``) and the largest batch that fits with AMP (batch
doubled from 8 until out of memory, at most ``--max-batch``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

import benchlib

CONF = os.path.join(benchlib.REPO, "egs", "voxceleb", "v1", "conf")


def dino_task(channels: int, quick: bool):
    """``(task, make_batch, crops per item, train config)`` of DINO on ECAPA-TDNN with ``channels``."""
    import torch

    from sslspk.train.dataset import parse_views
    from sslspk.models import build_model
    from sslspk.ssl import build_ssl_task
    from sslspk.utils.config import load_yaml

    cfg = load_yaml(os.path.join(CONF, "ssl_dino_ecapa1024.yaml"))
    model = {**cfg["model"], "channels": channels, "mfa_channels": 3 * channels}
    ssl = {**cfg["ssl"], "out_dim": 1024, "hidden": 256} if quick else cfg["ssl"]
    views = parse_views(cfg["data"]["views"])
    torch.manual_seed(0)
    task = build_ssl_task(ssl, build_model(model), None, cfg["train"]["epochs"])

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
        opt = Trainer(cfg, tmp)._optimizer(task)  # the trainer's parameter groups (no decay on biases/norms)
    # the epoch after the warm-up phases: DINO's frozen last layer, WavLM's head-only epochs
    epoch = max(getattr(getattr(task, "cfg", None), "freeze_last_layer_epochs", 0),
                getattr(getattr(task, "finetune", None), "freeze_backbone_epochs", 0))
    data = make_batch(batch, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for _ in range(steps + 1):
        sync()
        t = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss, _ = task(data, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        task.before_optimizer_step(epoch)
        params = [p for p in task.parameters() if p.requires_grad and p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
        opt.step()
        task.after_optimizer_step(0.5)
        sync()
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / steps


def largest_batch(task, make_batch, train_cfg: dict, limit: int) -> tuple[int, float]:
    """Largest batch (8, 16, ... up to ``limit``) whose AMP training step fits on the GPU, and its peak GiB."""
    import torch

    best, peak = 0, 0.0
    b = 8
    while b <= limit:
        try:
            torch.cuda.reset_peak_memory_stats()
            time_steps(task, make_batch, b, 1, "cuda", True, train_cfg)
            best, peak = b, torch.cuda.max_memory_allocated() / 2 ** 30
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            task.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        b *= 2
    return best, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU: torch threads (default 1 2)")
    p.add_argument("--cpu-batch", type=int, default=4, help="CPU: utterances per step (default 4)")
    p.add_argument("--steps", type=int, default=3, help="steps timed after one warm-up (default 3; cuda: x5)")
    p.add_argument("--classes", type=int, default=7500, help="AAM-softmax pseudo-speakers (default 7500)")
    p.add_argument("--max-batch", type=int, default=4096, help="cuda: largest batch tried (default 4096)")
    p.add_argument("--cpu-amp", action="store_true",
                   help="CPU: also time each model under bf16 autocast (train.cpu_amp), side by side with fp32")
    p.add_argument("--quick", action="store_true", help="tiny ECAPA and WavLM, batch 2, one step, one thread")
    p.add_argument("--append", help="markdown file to append the section to")
    args = p.parse_args()
    if args.quick:
        args.threads, args.cpu_batch, args.steps, args.classes = [1], 2, 1, 100
    import torch

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "wavlm_small")
        benchlib.save_wavlm(small, benchlib.WAVLM_TINY if args.quick else benchlib.WAVLM_SMALL)
        channels = 64 if args.quick else 512
        models = [(f"DINO ECAPA-TDNN {channels}", lambda: dino_task(channels, args.quick)),
                  (f"WavLM {'tiny' if args.quick else 'small'} + MHFA, AAM", lambda: wavlm_task(small, args.classes))]
        if gpu:
            base = os.path.join(tmp, "wavlm_base_plus_shapes")
            benchlib.save_wavlm(base, {})
            models += [("DINO ECAPA-TDNN 1024", lambda: dino_task(1024, False)),
                       ("WavLM Base+ shapes + MHFA, AAM", lambda: wavlm_task(base, args.classes))]
        for name, build in models:
            task, make_batch, crops, train_cfg = build()
            if not gpu:
                for n in args.threads:
                    torch.set_num_threads(n)
                    for amp in (False, True) if args.cpu_amp else (False,):
                        sec = time_steps(task.train(), make_batch, args.cpu_batch, args.steps, "cpu", amp, train_cfg)
                        precision = "bf16 autocast" if amp else "fp32"
                        print(f"{name} threads={n} {precision}: {sec:.2f} s/step", file=sys.stderr, flush=True)
                        rows.append(f"| {name} | cpu, {n} thread(s) | {precision} | {args.cpu_batch} | {sec:.2f} | "
                                    f"{1 / sec:.3f} | {args.cpu_batch * crops / sec:.1f} | | |")
                continue
            task = task.cuda().train()
            batch = int(train_cfg["batch_size"])
            for amp in (False, True):
                precision = "AMP bf16" if amp else "fp32"
                torch.cuda.reset_peak_memory_stats()
                try:
                    sec = time_steps(task, make_batch, batch, 5 * args.steps, "cuda", amp, train_cfg)
                except torch.cuda.OutOfMemoryError:
                    task.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                    rows.append(f"| {name} | {torch.cuda.get_device_name()} | {precision} | {batch} | "
                                "out of memory | | | | |")
                    continue
                mem = torch.cuda.max_memory_allocated() / 2 ** 30
                print(f"{name} amp={amp}: {sec:.3f} s/step, {mem:.1f} GiB", file=sys.stderr, flush=True)
                fits = ""
                if amp:
                    top, top_mem = largest_batch(task, make_batch, train_cfg, args.max_batch)
                    fits = f"{top} ({top_mem:.1f} GiB)" + (" = limit" if top == args.max_batch else "")
                rows.append(f"| {name} | {torch.cuda.get_device_name()} | {precision} | "
                            f"{batch} | {sec:.3f} | {1 / sec:.2f} | {batch * crops / sec:.0f} | {mem:.1f} | {fits} |")
            del task
            torch.cuda.empty_cache()
    section = "\n".join([
        f"### Training: steps/s — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_training.py')}`", "",
        "Library tasks from the VoxCeleb recipe configs (random init, random audio); crops/s = utterances x "
        f"crops per utterance (DINO 6, WavLM 1) per second; AAM-softmax over {args.classes:,} classes. "
        f"{benchlib.load_note()}", "",
        "| model | device | precision | batch | s/step | steps/s | crops/s | peak GPU memory (GiB) | "
        "largest batch (AMP) |", "|---|---|---|---|---|---|---|---|---|", *rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
