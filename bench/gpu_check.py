#!/usr/bin/env python3
"""GPU check: the paper-scale steps on one GPU, figures for docs/benchmarks.md (run by ``bench/gpu_check.sh``).

Usage: python bench/gpu_check.py [--smoke] [--kmeans-python PY | --kmeans-skipped WHY] [--append docs/benchmarks.md]

* Training, bf16 AMP (``torch.autocast``), at the recipe's batch sizes: DINO on ECAPA-TDNN 1024
  (``egs/voxceleb/v1/conf/ssl_dino_ecapa1024.yaml``, batch 128 of 2 x 4 s + 4 x 2 s crops) and WavLM
  Base+ (randomly initialised from a ``WavLMConfig`` of Base+'s shapes: no download) + MHFA with
  AAM-softmax over 7,500 pseudo-speakers (``conf/pseudo_wavlm_base_plus.yaml``, batch 64 of 3 s): the
  trainer's step (``bench_training.time_steps``), steps/s, peak GPU memory
  (``torch.cuda.max_memory_allocated``), and the largest batch that fits (doubled from 8 until out of
  memory, at most ``--max-batch``).
* Extraction (``sslspk.extraction.embed_waveforms``, inference mode): utterances/s of both encoders
  on ``--utts`` random utterances of 4-12 s, one at a time and ``--extract-batch`` at a time.
* faiss-gpu k-means of 1,000,000 x 256 planted points into 50,000 clusters
  (``sslspk.cluster.kmeans.faiss_kmeans``, 20 iterations, then the assignment of every point), run by
  ``--kmeans-python`` (the interpreter of a venv with faiss-gpu: faiss-cpu, in the project's venv,
  provides the same module).

``--smoke``: every part at toy sizes on the CPU in seconds (tiny ECAPA and WavLM, batch 2, faiss-cpu
k-means of 2,000 points), so that the script is known to work before a GPU is lent (tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import benchlib

CONF = os.path.join(benchlib.REPO, "egs", "voxceleb", "v1", "conf")
#: WavLM Base+'s shapes (microsoft/wavlm-base-plus config.json): 12 layers of 768, a 7-layer CNN of 512.
WAVLM_BASE_PLUS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072, "conv_dim": [512] * 7}


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    """Peak GPU memory allocated since the last reset (None on the CPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def largest_batch(task, make_batch, train_cfg: dict, device: str, start: int, limit: int) -> tuple[int, float | None]:
    """Largest batch (``start``, 2 x ``start``, ... up to ``limit``) whose AMP training step runs, and its peak GiB."""
    import torch
    from bench_training import time_steps

    best, peak = 0, None
    b = start
    while b <= limit:
        reset_peak(device)
        try:
            time_steps(task, make_batch, b, 1, device, True, train_cfg)
            best, peak = b, peak_gib(device)
        except torch.OutOfMemoryError:
            break
        finally:
            task.zero_grad(set_to_none=True)
        b *= 2
    reset_peak(device)
    return best, peak


def training(device: str, smoke: bool, wavlm: str, steps: int, max_batch: int) -> list[dict]:
    """One dict per model: recipe batch, s/step with bf16 AMP, crops/s, peak GiB, largest batch."""
    from bench_training import dino_task, time_steps, wavlm_task

    models = [("DINO ECAPA-TDNN " + ("64 (smoke)" if smoke else "1024"),
               lambda: dino_task(64 if smoke else 1024, smoke)),
              ("WavLM " + ("tiny (smoke)" if smoke else "Base+") + " + MHFA, AAM", lambda: wavlm_task(wavlm, 7500))]
    out = []
    for name, build in models:
        task, make_batch, crops, train_cfg = build()
        task = task.to(device).train()
        batch = 2 if smoke else int(train_cfg["batch_size"])
        reset_peak(device)
        sec = time_steps(task, make_batch, batch, steps, device, True, train_cfg)
        row = {"model": name, "batch": batch, "s_per_step": sec, "crops_per_s": batch * crops / sec,
               "peak_gib": peak_gib(device)}
        row["largest"], row["largest_gib"] = largest_batch(task, make_batch, train_cfg, device, 2 if smoke else 8,
                                                           4 if smoke else max_batch)
        print(f"training {row}", file=sys.stderr, flush=True)
        out.append(row)
        del task
        reset_peak(device)
    return out


def extraction(device: str, smoke: bool, wavlm: str, utts: int, batch: int) -> list[dict]:
    """Utterances/s of embed_waveforms for both encoders, one at a time and ``batch`` at a time."""
    import numpy as np
    import torch
    from bench_extraction import TINY_ECAPA

    from sslspk.extraction import embed_waveforms
    from sslspk.models import build_model
    from sslspk.utils.config import load_yaml

    ecapa = TINY_ECAPA if smoke else load_yaml(os.path.join(CONF, "ssl_dino_ecapa1024.yaml"))["model"]
    wav_cfg = {**load_yaml(os.path.join(CONF, "pseudo_wavlm_base_plus.yaml"))["model"], "pretrained": wavlm}
    rng = np.random.default_rng(0)
    lo, hi = (1.0, 2.0) if smoke else (4.0, 12.0)
    wavs = [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in rng.uniform(lo, hi, utts)]
    audio = sum(len(w) for w in wavs) / 16000
    out = []
    for name, cfg in (("ECAPA-TDNN " + ("tiny" if smoke else "1024"), ecapa),
                      ("WavLM " + ("tiny" if smoke else "Base+") + " + MHFA", wav_cfg)):
        torch.manual_seed(0)
        model = build_model(cfg).to(device).eval()
        with torch.inference_mode():
            embed_waveforms(model, wavs[:2], device=device)   # warm-up
            for bs in (1, batch):
                sync(device)
                t = time.perf_counter()
                embed_waveforms(model, wavs, device=device, batch_size=bs)
                sync(device)
                sec = time.perf_counter() - t
                out.append({"model": name, "batch": bs, "utts_per_s": utts / sec, "rtf": sec / audio,
                            "pads": bool(getattr(model, "honours_lengths", False))})
                print(f"extraction {out[-1]}", file=sys.stderr, flush=True)
        del model
    return out


def kmeans_worker(a: dict) -> dict:
    """faiss k-means of ``a["n"]`` planted points (in the interpreter that has faiss-gpu): seconds, GPU used."""
    import faiss
    from bench_clustering import planted

    from sslspk.cluster.kmeans import faiss_kmeans, use_gpu

    x, _ = planted(a["n"], a["planted"], a["dim"], 0.1)
    gpu = use_gpu("yes" if a["gpu"] else "no")
    t = time.perf_counter()
    r = faiss_kmeans(x, a["k"], niter=a["niter"], seed=1, gpu=gpu)
    return {"seconds": time.perf_counter() - t, "gpu": gpu, "objective": r.objective, "faiss": faiss.__version__,
            "num_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}


def kmeans(python: str, smoke: bool) -> dict:
    """:func:`kmeans_worker` in ``python`` (a separate process: the faiss-gpu venv), with its peak RSS."""
    a = ({"n": 2000, "k": 20, "planted": 20, "dim": 32, "niter": 5, "gpu": False} if smoke else
         {"n": 1_000_000, "k": 50_000, "planted": 5_994, "dim": 256, "niter": 20, "gpu": True})
    code = ("import json, resource, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import gpu_check; "
            "r = gpu_check.kmeans_worker(json.loads(sys.argv[3])); "
            "r['maxrss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(r))")
    r = subprocess.run([python, "-c", code, benchlib.BENCH_DIR, benchlib.REPO, json.dumps(a)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"k-means in {python} failed:\n{r.stderr[-3000:]}")
    return {**a, **json.loads(r.stdout.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU, faiss-cpu (seconds)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kmeans-python", help="interpreter with faiss-gpu for the k-means part (default: this one)")
    g.add_argument("--kmeans-skipped", help="why the k-means part is not run (e.g. faiss-gpu failed to install)")
    p.add_argument("--steps", type=int, default=10, help="training steps timed after one warm-up (default 10)")
    p.add_argument("--max-batch", type=int, default=2048, help="largest training batch tried (default 2048)")
    p.add_argument("--utts", type=int, default=256, help="utterances embedded per extraction row (default 256)")
    p.add_argument("--extract-batch", type=int, default=64, help="batched extraction size (default 64)")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    import torch

    if args.smoke:
        device, args.steps, args.utts, args.extract_batch = "cpu", 1, 4, 2
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device (run with --smoke for the CPU check)")
    else:
        device = "cuda"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        wavlm = os.path.join(tmp, "wavlm")
        benchlib.save_wavlm(wavlm, benchlib.WAVLM_TINY if args.smoke else WAVLM_BASE_PLUS)
        train = training(device, args.smoke, wavlm, args.steps, args.max_batch)
        extract = extraction(device, args.smoke, wavlm, args.utts, args.extract_batch)
    km = None if args.kmeans_skipped else kmeans(args.kmeans_python or sys.executable, args.smoke)
    total = time.perf_counter() - t0

    gpu = (f"{torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
           if device == "cuda" else "no GPU: --smoke on the CPU")
    gib = lambda v: "" if v is None else f"{v:.1f}"  # noqa: E731
    train_rows = [f"| {r['model']} | {r['batch']} | {r['s_per_step']:.3f} | {1 / r['s_per_step']:.2f} | "
                  f"{r['crops_per_s']:,.0f} | {gib(r['peak_gib'])} | {r['largest']}"
                  + (f" ({gib(r['largest_gib'])} GiB)" if r["largest_gib"] is not None else "") + " |" for r in train]
    extract_rows = [f"| {r['model']} | {r['batch']}{'' if r['pads'] or r['batch'] == 1 else ' (equal lengths only)'} | "
                    f"{r['utts_per_s']:.1f} | {r['rtf']:.4f} |" for r in extract]
    if km is None:
        km_rows = [f"| not run: {args.kmeans_skipped} | | | | |"]
    else:
        km_rows = [f"| {km['n']:,} x {km['dim']} → {km['k']:,} | {km['niter']} | {'GPU' if km['gpu'] else 'CPU'} "
                   f"(faiss {km['faiss']}) | {km['seconds']:.1f} | {km['maxrss_mib'] / 1024:.1f} |"]
    section = "\n".join([
        f"### GPU check: training, extraction, faiss k-means — {datetime.date.today()}, {gpu}; {benchlib.machine()}",
        "", f"`bench/gpu_check.sh{' --smoke' if args.smoke else ''}` (torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}; {total / 60:.1f} min for the three parts)", "",
        "Training with bf16 AMP, random weights (WavLM from a config of Base+'s shapes), random audio; the "
        "trainer's step; largest batch: doubled until out of memory (or the limit).", "",
        "| model | batch (recipe) | s/step | steps/s | crops/s | peak GPU memory (GiB) | largest batch |",
        "|---|---|---|---|---|---|---|", *train_rows, "",
        f"Extraction (`embed_waveforms`, inference mode, fp32): {args.utts} random utterances of "
        f"{'1-2' if args.smoke else '4-12'} s.", "",
        "| encoder | batch | utterances/s | RTF |", "|---|---|---|---|", *extract_rows, "",
        "faiss k-means (`faiss_kmeans`: training, then the assignment of every point), planted points.", "",
        "| points → clusters | iterations | device | time (s) | peak RSS (GiB) |", "|---|---|---|---|---|",
        *km_rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
