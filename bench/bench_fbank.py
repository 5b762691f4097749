#!/usr/bin/env python3
"""Benchmark: batched Kaldi fbank (sslspk.frontend.KaldiFbank) vs a per-utterance loop over
torchaudio.compliance.kaldi.fbank, on the same batch; prints times and the largest difference.

Usage: python bench/bench_fbank.py [--batch 64] [--seconds 2] [--threads 1 2] [--device cpu]
                                   [--append docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import time

import benchlib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()

    import torch
    import torchaudio.compliance.kaldi as K

    from sslspk.frontend import Frontend, FrontendConfig

    torch.manual_seed(0)
    wav = (0.1 * torch.randn(args.batch, int(args.seconds * 16000))).to(args.device)
    fe = Frontend(FrontendConfig(type="fbank", cmn=False)).to(args.device)

    def loop() -> torch.Tensor:
        return torch.stack([K.fbank(w[None] * 32768, num_mel_bins=80, dither=0.0) for w in wav])

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(args.repeats):
            if args.device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if args.device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return min(times)

    diff = (fe(wav) - loop()).abs().max().item()
    rows = []
    for n in args.threads:
        torch.set_num_threads(n)
        b, l_ = best(lambda: fe(wav)), best(loop)
        rows.append(f"| {n} | {b * 1e3:.1f} | {l_ * 1e3:.1f} | {l_ / b:.2f}x |")
    section = "\n".join([
        f"### Fbank: batched KaldiFbank vs per-utterance torchaudio loop — {datetime.date.today()}, "
        f"{benchlib.machine()}", "", f"`{benchlib.command('bench_fbank.py')}`", "",
        f"Batch of {args.batch} x {args.seconds:g} s on {args.device}, best of {args.repeats}; "
        f"max abs difference of the log-fbank: {diff:.2e}. {benchlib.load_note()}", "",
        "| threads | batched (ms) | loop (ms) | speed-up |", "|---|---|---|---|", *rows, ""])
    benchlib.emit(section, args.append)

if __name__ == "__main__":
    main()
