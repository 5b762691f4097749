#!/usr/bin/env python3
"""Benchmark: embedding extraction on CPU, one utterance at a time vs batched (sslspk.extraction).

Usage: python bench/bench_extraction.py [--quick] [--utts 32] [--batch-size 16] [--nj 1 2] [--append docs/benchmarks.md]

``--utts`` random-noise utterances of ``--min-seconds`` to ``--max-seconds`` (uniform; VoxCeleb1's
test utterances are 4 s and longer, 8 s on average) are embedded by randomly initialised encoders:

* ``ecapa512``: ECAPA-TDNN, 512 channels, 80 fbank (the library defaults, 6.2M parameters);
* ``wavlm-small-group``: a small WavLM (4 layers of 256, a 7-layer CNN of 256 channels with the
  real strides, MHFA head) with WavLM Base/Base+'s group-normalised CNN;
* ``wavlm-small-layer``: the same with WavLM Large's layer-normalised CNN.

Each row runs ``nj`` worker *processes* (one torch thread each, as the recipes' parallel jobs),
each embedding every nj-th utterance; time = the slowest worker's extraction time (model
loading excluded). "one by one" is ``embed_waveforms(batch_size=1)`` (the library's behaviour
before batching); "batched" sorts by length and pads ``--batch-size`` utterances per forward
pass (only equal lengths for models that cannot mask padding: WavLM with a group-norm CNN).
RTF = extraction time / audio duration. Max |diff| compares batched and one-by-one embeddings.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

import benchlib

ECAPA = {"type": "ecapa_tdnn", "channels": 512}
TINY_ECAPA = {"type": "ecapa_tdnn", "channels": 64, "mfa_channels": 192, "attention_channels": 32,
              "se_channels": 32, "embedding_dim": 128}


def utterances(a: dict):
    """The benchmark's waveforms (float32, deterministic)."""
    import numpy as np

    rng = np.random.default_rng(0)
    seconds = rng.uniform(a["min_seconds"], a["max_seconds"], a["utts"])
    return [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]


def worker(a: dict) -> dict:
    """Embed utterances ``job::nj`` with one torch thread, once per batch size of ``a["batch_sizes"]``;
    returns the audio seconds and, per batch size, the seconds taken (and the embeddings when nj = 1)."""
    import torch

    from sslspk.extraction import embed_waveforms
    from sslspk.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(a["model_cfg"]).eval()
    wavs = utterances(a)[a["job"]::a["nj"]]
    runs = []
    with torch.inference_mode():
        embed_waveforms(model, wavs[:1])  # warm-up
        for bs in a["batch_sizes"]:
            t = time.perf_counter()
            emb = embed_waveforms(model, wavs, batch_size=bs)
            runs.append({"seconds": time.perf_counter() - t,
                         "emb": [e.tolist() for e in emb] if a["nj"] == 1 else None})
    return {"audio_seconds": sum(len(w) for w in wavs) / 16000, "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=32, help="utterances (default 32)")
    p.add_argument("--min-seconds", type=float, default=4.0)
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--batch-size", type=int, default=16, help="utterances per forward pass when batched (default 16)")
    p.add_argument("--nj", type=int, nargs="+", default=[1, 2], help="parallel worker processes (default 1 2)")
    p.add_argument("--models", nargs="+", default=["ecapa512", "wavlm-small-group", "wavlm-small-layer"])
    p.add_argument("--quick", action="store_true",
                   help="tiny models (ecapa512 and wavlm-small-layer only), nj 1, 6 utterances of 1-2 s")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.quick:
        args.utts, args.min_seconds, args.max_seconds, args.batch_size = 6, 1.0, 2.0, 4
        args.nj, args.models = [1], ["ecapa512", "wavlm-small-layer"]
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == "ecapa512":
                cfg = TINY_ECAPA if args.quick else ECAPA
            else:
                norm = name.rsplit("-", 1)[1]
                path = os.path.join(tmp, name)
                benchlib.save_wavlm(path, benchlib.WAVLM_TINY if args.quick else benchlib.WAVLM_SMALL, norm)
                cfg = {"type": "wavlm", "pretrained": path, "head": "mhfa", "embedding_dim": 256}
            for nj in args.nj:
                base = {"model_cfg": cfg, "nj": nj, **{k: getattr(args, k) for k in ("utts", "min_seconds",
                                                                                        "max_seconds")}}
                # nj = 1: both modes in one worker; nj > 1: the workers of one mode run side by side.
                groups = [[1, args.batch_size]] if nj == 1 else [[1], [args.batch_size]]
                runs = []
                for sizes in groups:
                    jobs = [benchlib.start_worker("bench_extraction", "worker", {**base, "batch_sizes": sizes,
                                                                                 "job": j}) for j in range(nj)]
                    out = [benchlib.finish_worker(w) for w in jobs]
                    audio = sum(o["audio_seconds"] for o in out)
                    runs += [{"seconds": max(o["runs"][i]["seconds"] for o in out), "emb": out[0]["runs"][i]["emb"]}
                             for i in range(len(sizes))]
                res = dict(zip(("one by one", "batched"), runs))
                diff = (f"{np.abs(np.array(res['batched']['emb']) - np.array(res['one by one']['emb'])).max():.1e}"
                        if nj == 1 else "")
                for mode, r in res.items():
                    print(f"{name} nj={nj} {mode}: {r['seconds']:.2f} s", file=sys.stderr, flush=True)
                    speed = res["one by one"]["seconds"] / r["seconds"]
                    rows.append(f"| {name} | {nj} | {mode} | {args.utts / r['seconds']:.2f} | "
                                f"{r['seconds'] / audio:.4f} | {speed:.2f}x | {diff if mode == 'batched' else ''} |")
    section = "\n".join([
        f"### Extraction: one by one vs batched, CPU — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_extraction.py')}`", "",
        f"{args.utts} utterances of {args.min_seconds:g}-{args.max_seconds:g} s (uniform); batched = "
        f"{args.batch_size} per forward pass, sorted by length; nj = worker processes, one torch thread each; "
        f"speed-up is against one by one with the same nj. {benchlib.load_note()}", "",
        "| model | nj (processes) | mode | utterances/s | RTF | speed-up | max abs diff |",
        "|---|---|---|---|---|---|---|", *rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
