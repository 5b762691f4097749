#!/usr/bin/env python3
"""Benchmark: training chunks/s of the SSL data pipeline vs the training step that consumes them.

Usage: python bench/bench_dataloading.py [--quick] [--m4a] [--batch 32] [--batches 20] [--append docs/benchmarks.md]

A corpus is generated offline with ``local/make_mini_corpus.py`` (synthetic speech of 4-8 s) and
``local/prepare_augmentation.py`` (noise, music, babble and RIR sets as Kaldi data dirs) into a
temporary dir. The
pipeline is the training one: ``sslspk.train.dataset.CropDataset`` (read the WAV, one random 3 s
crop, augmentation from ``sslspk.augment``) batched by ``collate`` through a torch
``DataLoader`` with ``num_workers`` 0 (all in the main process: one core, or each batch prepared by
one thread per core: ``train.loader_threads``), 1 and 2. The fbank
front-end is not part of it: it runs in the model's forward pass, on the batch (training
step). Augmentations compared:

* ``none``;
* ``noise+reverb``: every crop reverberated and mixed with a noise at 0-15 dB SNR;
* ``recipe``: the ``augment`` block of ``egs/voxceleb/v1/conf/ssl_dino_ecapa1024.yaml``
  (probability 0.8; noise, music or babble of 3-7 speakers; reverberation with probability 0.3).

The training step (one torch thread; SimCLR, two 3 s views per utterance, AdamW; fbank included)
is timed for a tiny ECAPA-TDNN (``egs/mini`` size) and ECAPA-512 to tell how many cores of
loading one step needs. Time = after the first batch (workers started, caches warm).

``--m4a`` (a section of its own), VoxCeleb2's audio formats (needs ffmpeg): the training WAVs are
encoded to AAC m4a (``--m4a-bitrate``),
the fake VoxCeleb2, and entered in ``wav.scp`` as ``local/prepare_voxceleb.py`` enters them: ffmpeg
pipes (``--m4a pipe``: one ffmpeg process per item, on the whole file), or FLAC / WAV files that
its ``convert_all`` decoded once (timed with one job and with one job per core); chunks/s per core
(num_workers 0) for each, and the disk each takes per hour of audio.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib

SECONDS = 3.0
TARGET = 2000  # three-second chunks/s with augmentation on 16 cores


def augment_configs(data: str) -> dict[str, dict | None]:
    """The augmentation blocks compared, with sources in the generated ``data`` dir."""
    src = {k: os.path.join(data, k) for k in ("noise", "music", "babble", "rirs")}
    return {
        "none": None,
        "noise+reverb": {"prob": 1.0, "noise": {"source": src["noise"], "snr": [0, 15]},
                         "reverb": {"source": src["rirs"], "prob": 1.0}},
        "recipe": {"prob": 0.8, "noise": {"source": src["noise"], "snr": [0, 15]},
                   "music": {"source": src["music"], "snr": [5, 15]},
                   "babble": {"source": src["babble"], "snr": [13, 20], "num_speakers": [3, 7]},
                   "reverb": {"source": src["rirs"], "prob": 0.3}},
    }


def make_corpus(out: str, quick: bool) -> str:
    """Generate the corpus and its augmentation sets (local/); returns the data dir."""
    sizes = ["--num-train-speakers", "2", "--utts-per-speaker", "4"] if quick else \
        ["--num-train-speakers", "20", "--utts-per-speaker", "10"]
    aug = ["--num-noise", "2", "--num-music", "2", "--num-babble", "4", "--num-rirs", "2"] if quick else []
    data, nj = os.path.join(out, "data"), str(benchlib.cores())
    local = os.path.join(benchlib.REPO, "local")
    subprocess.run([sys.executable, os.path.join(local, "make_mini_corpus.py"), os.path.join(out, "corpus"), data,
                    "--num-test-speakers", "2", "--min-dur", "4", "--max-dur", "8", "--num-trials", "4", "--nj", nj,
                    *sizes], check=True, capture_output=True)
    subprocess.run([sys.executable, os.path.join(local, "prepare_augmentation.py"), "--nj", nj, *aug, data],
                   check=True, capture_output=True)
    return data


def loader_rate(data: str, augment: dict | None, workers: int, batch: int, batches: int, threads: int = 1) -> float:
    """Chunks/s of a DataLoader over CropDataset (3 s crops, ``augment``; each batch by ``threads``
    threads when ``workers`` is 0), after its first batch."""
    from torch.utils.data import DataLoader, RandomSampler

    from sslspk.train.dataset import CropDataset, ViewSpec, collate

    ds = CropDataset(os.path.join(data, "train"), [ViewSpec(SECONDS)], augment=augment, threads=threads)
    sampler = RandomSampler(ds, replacement=True, num_samples=batch * (batches + 1))
    loader = iter(DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate))
    next(loader)
    t = time.perf_counter()
    n = sum(b["views"][0].shape[0] for b in loader)
    return n / (time.perf_counter() - t)


def audio_formats(data: str, out: str, bitrate: str, loader: dict) -> dict[str, dict]:
    """The training WAVs of ``data`` as m4a (ffmpeg, AAC at ``bitrate``), then per format of
    ``local/prepare_voxceleb.py`` (pipe, flac, wav): a data dir, its disk bytes, the conversion's
    seconds with 1 job and with one per core, and chunks/s of :func:`loader_rate` (``loader``:
    its keyword arguments) without augmentation and with the recipe's."""
    from pathlib import Path

    sys.path.insert(0, os.path.join(benchlib.REPO, "local"))
    from prepare_voxceleb import convert_all, ffmpeg_pipe

    from sslspk.data.datadir import DataDir
    from sslspk.data.tables import write_core_tables

    train = DataDir.load(os.path.join(data, "train"))
    m4a = {}
    for u in train.utts:
        m4a[u] = Path(out, "m4a", f"{u}.m4a")
        m4a[u].parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "8", "-i", train.wav_scp[u], "-c:a", "aac", "-b:a", bitrate,
                        str(m4a[u])], check=True)
    res: dict[str, dict] = {"m4a": {"bytes": sum(p.stat().st_size for p in m4a.values())}}
    for fmt in ("pipe", "flac", "wav"):
        r = res[fmt] = {}
        if fmt == "pipe":
            scp = {u: ffmpeg_pipe(p, "ffmpeg", 16000) for u, p in m4a.items()}
        else:
            for nj in sorted({1, benchlib.cores()}):
                dst = {p: Path(out, f"{fmt}{nj}", f"{u}.{fmt}") for u, p in m4a.items()}
                t = time.perf_counter()
                convert_all(dst, "ffmpeg", 16000, nj, every=1e9)
                r[f"convert_nj{nj}"] = time.perf_counter() - t
            scp = {u: str(dst[p]) for u, p in m4a.items()}
            r["bytes"] = sum(os.path.getsize(f) for f in scp.values())
        write_core_tables(Path(out, fmt, "train"), scp, train.utt2spk)
        for aug, cfg in (("none", None), ("recipe", augment_configs(data)["recipe"])):
            r[aug] = loader_rate(os.path.join(out, fmt), cfg, 0, **loader)
            print(f"{fmt} {aug}: {r[aug]:.0f} chunks/s", file=sys.stderr, flush=True)
    res["hours"] = sum(train.load_audio(u).size for u in train.utts) / 16000 / 3600
    return res


def format_rows(res: dict[str, dict]) -> list[str]:
    """Markdown rows of :func:`audio_formats`' results (ratios to the pipes)."""
    gb_per_h = lambda fmt: res[fmt]["bytes"] / res["hours"] / 1e9  # noqa: E731
    rows = [f"| m4a (AAC), ffmpeg pipe per item | {res['pipe']['none']:.0f} | 1x | {res['pipe']['recipe']:.0f} | 1x "
            f"| | | {gb_per_h('m4a'):.3f} |"]
    n = benchlib.cores()
    for fmt in ("flac", "wav"):
        r = res[fmt]
        per_h = lambda nj: r[f"convert_nj{nj}"] / res["hours"]  # noqa: E731  seconds per hour of audio
        speedup = r['none'] / res['pipe']['none']
        rows.append(f"| {fmt.upper()} files (converted once) | {r['none']:.0f} | {speedup:.1f}x "
                    f"| {r['recipe']:.0f} | {r['recipe'] / res['pipe']['recipe']:.1f}x | {per_h(1):.0f} | "
                    f"{per_h(n):.0f} | {gb_per_h(fmt):.3f} ({r['bytes'] / res['m4a']['bytes']:.1f}x the m4a) |")
    return rows


def step_time(model_cfg: dict, batch: int, steps: int) -> tuple[float, float]:
    """Seconds per SimCLR training step on ``batch`` utterances x 2 views of 3 s (one thread), and
    seconds of the fbank front-end on those ``2 x batch`` crops (best of 5)."""
    import torch

    from sslspk.models import build_model
    from sslspk.ssl.simclr import SimCLR, SimCLRConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = SimCLR(build_model(model_cfg), SimCLRConfig()).train()
    opt = torch.optim.AdamW(task.parameters(), lr=1e-3)
    n = int(SECONDS * 16000)
    data = {"views": [0.1 * torch.randn(batch, 1, n), 0.1 * torch.randn(batch, 1, n)], "index": torch.arange(batch)}
    times = []
    for _ in range(steps + 1):  # the first step is a warm-up
        t = time.perf_counter()
        loss, _ = task(data, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    crops = torch.cat([v[:, 0] for v in data["views"]])
    fbank = []
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            task.encoder.frontend(crops)
            fbank.append(time.perf_counter() - t)
    return sum(times[1:]) / steps, min(fbank)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32, help="utterances per loader batch (default 32)")
    p.add_argument("--batches", type=int, default=20, help="batches timed per row, after one warm-up (default 20)")
    p.add_argument("--step-batch", type=int, default=8, help="utterances per training step (default 8)")
    p.add_argument("--steps", type=int, default=2, help="training steps timed, after one warm-up (default 2)")
    p.add_argument("--m4a", action="store_true",
                   help="only the VoxCeleb2 m4a comparison: ffmpeg pipes vs FLAC/WAV files (its own section)")
    p.add_argument("--m4a-bitrate", default="64k", help="AAC bitrate of the fake VoxCeleb2 m4a (default 64k)")
    p.add_argument("--quick", action="store_true", help="tiny corpus, 2 batches of 4, tiny model only")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.quick:
        args.batch, args.batches, args.step_batch, args.steps = 4, 2, 2, 1
    if args.m4a:
        return m4a_section(args)
    from sslspk.utils.config import load_yaml

    tiny = load_yaml(os.path.join(benchlib.REPO, "egs", "mini", "v1", "conf", "ssl.yaml"))["model"]
    models = {"tiny ECAPA (egs/mini)": tiny}
    if not args.quick:
        models["ECAPA-512"] = {"type": "ecapa_tdnn", "channels": 512}
    n_cores = benchlib.cores()
    rates: dict[tuple[str, int], float] = {}
    threaded: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        data = make_corpus(tmp, args.quick)
        print(f"corpus generated in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        for aug, cfg in augment_configs(data).items():
            for workers in ((0, 1, 2) if aug == "recipe" or args.quick else (0, 2)):
                rates[aug, workers] = loader_rate(data, cfg, workers, args.batch, args.batches)
                print(f"{aug} workers={workers}: {rates[aug, workers]:.0f} chunks/s", file=sys.stderr, flush=True)
            threaded[aug] = loader_rate(data, cfg, 0, args.batch, args.batches, threads=n_cores)
            print(f"{aug} workers=0 threads={n_cores}: {threaded[aug]:.0f} chunks/s", file=sys.stderr, flush=True)
    steps = {}
    for name, cfg in models.items():
        steps[name] = step_time(cfg, args.step_batch, args.steps)
        print(f"{name}: {steps[name]}", file=sys.stderr, flush=True)

    rows = []
    for aug in augment_configs("").keys():
        one = rates[aug, 0]
        all_ = rates[aug, max(w for a, w in rates if a == aug)]
        efficiency = all_ / (n_cores * one)
        one_worker = f"{rates[aug, 1]:.0f}" if (aug, 1) in rates else ""
        verdict = "" if aug == "none" else "met" if 16 * one >= TARGET else "not met"
        rows.append(f"| {aug} | {one:.0f} | {threaded[aug]:.0f} ({threaded[aug] / one:.2f}x) | {one_worker} | "
                    f"{all_:.0f} | {efficiency:.2f} | {16 * one:,.0f} | "
                    f"{16 * one * min(1.0, efficiency):,.0f} | {verdict} |")
    step_rows = []
    for name, (sec, fbank) in steps.items():
        chunks = 2 * args.step_batch / sec
        step_rows.append(f"| {name} | {sec:.2f} | {chunks:.1f} | {fbank / (2 * args.step_batch) * 1e3:.2f} | "
                         f"{chunks / rates['recipe', 0]:.2f} | {chunks / rates['noise+reverb', 0]:.2f} |")
    section = "\n".join([
        f"### Data loading: SSL training chunks/s — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_dataloading.py')}`", "",
        f"CropDataset, one {SECONDS:g} s crop per utterance, batches of {args.batch} through a torch DataLoader "
        f"({args.batches} batches timed after the first). Per core = num_workers 0 (loading in the main "
        f"process). 16-core extrapolation: per core x 16 (linear), and x 16 x the scaling efficiency measured "
        f"here on {n_cores} cores (all cores / ({n_cores} x per core), capped at 1). Target: >= {TARGET:,} "
        f"chunks/s with augmentation on 16 cores, judged on the linear figure (loader workers share nothing). "
        f"{benchlib.load_note()}", "",
        f"| augmentation | chunks/s per core (0 workers) | 0 workers, {n_cores} threads | 1 worker "
        f"| {n_cores} workers | "
        "scaling efficiency | 16 cores, linear | 16 cores, x efficiency | target |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"Training step it feeds (one thread, SimCLR, {args.step_batch} utterances x 2 views of {SECONDS:g} s, "
        "fbank front-end included): cores of loading per core of training = step chunks/s / loading chunks/s "
        "per core.", "",
        "| model | step (s) | chunks/s consumed | fbank (ms per chunk) | loading cores per step core (recipe aug) | "
        "(noise+reverb) |", "|---|---|---|---|---|---|", *step_rows, ""])
    benchlib.emit(section, args.append)


def m4a_section(args: argparse.Namespace) -> None:
    """``--m4a``: the VoxCeleb2 audio-format comparison of :func:`audio_formats`, as its own section."""
    if shutil.which("ffmpeg") is None:
        raise SystemExit("bench_dataloading.py --m4a: ffmpeg not found (apt-get install ffmpeg, or make sox as root)")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_corpus(tmp, args.quick)
        formats = audio_formats(data, os.path.join(tmp, "formats"), args.m4a_bitrate,
                                {"batch": args.batch, "batches": args.batches})
    n = benchlib.cores()
    section = "\n".join([
        f"### Data loading: VoxCeleb2 m4a pipes vs converted files — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_dataloading.py')}`", "",
        f"The training utterances of the data-loading benchmark (4-8 s) as AAC m4a at {args.m4a_bitrate}bit/s, read "
        "through `wav.scp` as `local/prepare_voxceleb.py --m4a pipe|flac|wav` enters them: CropDataset, one "
        f"{SECONDS:g} s crop per utterance, batches of {args.batch}, {args.batches} timed, loading in the main "
        "process (chunks/s per core). Conversion = `convert_all` (one ffmpeg process per file), seconds per hour "
        f"of audio with 1 job and {n} jobs; disk in GB (10^9 bytes) per hour of audio. {benchlib.load_note()}", "",
        "| wav.scp entries | chunks/s, no augmentation | vs pipe | chunks/s, recipe augmentation | vs pipe | "
        f"conversion, 1 job (s per hour) | {n} jobs (s per hour) | disk (GB per hour) |",
        "|---|---|---|---|---|---|---|---|", *format_rows(formats), ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
