#!/usr/bin/env python3
"""Rehearsal of recipe stage 3 at VoxCeleb2 size: synthetic embeddings through the real ``steps/cluster.sh``.

Usage: python bench/bench_stage3.py [--scale 1] [--niter 20] [--workdir DIR] [--keep] [--quick]
                                    [--append docs/benchmarks.md]

At ``--scale 1``: 1,092,009 unit-norm 256-d embeddings (VoxCeleb2 dev) of 5,994 planted speakers,
written as a Kaldi ark/scp and a data dir (``wav.scp`` with placeholder paths, ``utt2spk`` with the
planted speakers), then clustered as ``egs/voxceleb/v1/run.sh`` stage 3 does: faiss k-means 50,000 →
AHC 7,500 → clusters of fewer than 2 utterances dropped → a pseudo-label data dir, NMI against the
planted speakers. ``--scale s`` multiplies the utterances, speakers, k-means and AHC clusters by ``s``
(the work of k-means and AHC grows as s²), e.g. 0.05 to check a set-up in a few minutes. ``--niter n``
runs n k-means iterations instead of the recipe's 20 (memory is the same; the section then gives the
k-means time scaled to 20 iterations, marked as scaled), for a machine where the full run does not fit.

Planted structure: utterances per speaker log-normal (sigma ``--spk-sigma``); each speaker's
utterances in videos of ~7.3 (VoxCeleb2: 150,480 videos); an embedding is its speaker's unit
direction + its video's channel vector in a ``--nuisance-dims``-dimensional subspace shared by all
speakers (norm ~``--channel``: channel-like nuisance) + isotropic noise (norm ~``--noise``),
L2-normalised. Time = wall time of ``steps/cluster.sh``, its steps from ``clusters.json``; memory =
peak RSS of the largest process of that command (``getrusage`` of the waited children); making the
embeddings is not part of either.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib

FULL = {"utts": 1_092_009, "speakers": 5_994, "k": 50_000, "ahc": 7_500}   # VoxCeleb2 dev, the paper's clusters
UTTS_PER_VIDEO = 1_092_009 / 150_480
DIM = 256
MIN_CLUSTER_SIZE = 2   # egs/voxceleb/v1/run.sh
RECIPE_NITER = 20      # steps/cluster.sh's k-means iterations


def sizes(scale: float) -> dict[str, int]:
    """The sizes of ``FULL`` times ``scale`` (rounded, at least 2)."""
    return {k: max(2, round(v * scale)) for k, v in FULL.items()}


def make_embeddings(work: str, n_utts: int, n_spk: int, a: argparse.Namespace, chunk: int = 65536) -> str:
    """Write ``work/data/train`` (planted speakers) and ``work/exp/ssl/embeddings/train_full/embeddings.scp``;
    returns the scp. Rows are made and written ``chunk`` at a time (memory: O(chunk), not O(n))."""
    import numpy as np

    from sslspk.data.embeddings import write_embeddings
    from sslspk.data.tables import write_core_tables

    rng = np.random.default_rng(a.seed)
    share = rng.lognormal(0.0, a.spk_sigma, n_spk)
    counts = 1 + rng.multinomial(n_utts - n_spk, share / share.sum())   # n_utts in all, at least 1 each
    spk = np.repeat(np.arange(n_spk), counts)
    n_videos = np.maximum(1, np.round(counts / UTTS_PER_VIDEO)).astype(np.int64)
    video_start = np.concatenate([[0], np.cumsum(n_videos)[:-1]])
    video = video_start[spk] + rng.integers(0, n_videos[spk])           # a video of the utterance's speaker
    video = np.sort(video)   # the rows are sorted by speaker, and video ids increase with the speaker
    utts = [f"id{s:05d}-v{v:06d}-{i:07d}" for i, (s, v) in enumerate(zip(spk.tolist(), video.tolist()))]
    directions = rng.standard_normal((n_spk, DIM), dtype=np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    basis = np.linalg.qr(rng.standard_normal((DIM, a.nuisance_dims)))[0].astype(np.float32)
    channels = (rng.standard_normal((int(n_videos.sum()), a.nuisance_dims), dtype=np.float32)
                * (a.channel / a.nuisance_dims ** 0.5)) @ basis.T

    def rows():
        for b in range(0, spk.size, chunk):
            x = directions[spk[b:b + chunk]] + channels[video[b:b + chunk]]
            x += rng.standard_normal(x.shape, dtype=np.float32) * (a.noise / DIM ** 0.5)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield from zip(utts[b:b + chunk], x)

    data = os.path.join(work, "data", "train")
    write_core_tables(data, {u: f"/vox2/{u}.flac" for u in utts}, {u: u.split("-", 1)[0] for u in utts})
    emb = os.path.join(work, "exp", "ssl", "embeddings", "train_full")
    write_embeddings(os.path.join(emb, "embeddings.1.ark"), os.path.join(emb, "embeddings.scp"), rows())
    return os.path.join(emb, "embeddings.scp")


def run_stage3(work: str, scp: str, k: int, ahc: int, niter: int) -> tuple[list[str], float, float]:
    """``steps/cluster.sh`` as the recipe's stage 3 runs it, in ``work``; ``(command, seconds, peak RSS MiB)``."""
    for name in ("steps", "utils"):
        if not os.path.exists(os.path.join(work, name)):
            os.symlink(os.path.join(benchlib.REPO, name), os.path.join(work, name))
    env = dict(os.environ, LC_ALL="C", SSLSPK_PYTHON=sys.executable, PATH=os.pathsep.join(
        [os.path.dirname(sys.executable), os.path.join(benchlib.REPO, "bin"), os.environ.get("PATH", "")]))
    iters = ["--niter", str(niter)] if niter != RECIPE_NITER else []
    cmd = ["steps/cluster.sh", "--k", str(k), *iters, "--ahc-clusters", str(ahc),
           "--min-cluster-size", str(MIN_CLUSTER_SIZE),
           "--ref-utt2spk", "data/train/utt2spk", "--report-dir", "exp/pl_iter1/clusters",
           os.path.relpath(scp, work), "data/train", "exp/pl_iter1/data"]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {work}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    print(r.stdout, file=sys.stderr, flush=True)
    return cmd, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the VoxCeleb2 sizes (default 1)")
    p.add_argument("--spk-sigma", type=float, default=0.5, help="log-normal sigma of utterances per speaker")
    p.add_argument("--nuisance-dims", type=int, default=32, help="dimensions of the shared channel subspace")
    p.add_argument("--channel", type=float, default=0.8, help="norm of a video's channel vector (speaker: 1)")
    p.add_argument("--noise", type=float, default=0.8, help="norm of an utterance's isotropic noise (speaker: 1)")
    p.add_argument("--niter", type=int, default=RECIPE_NITER,
                   help=f"k-means iterations (default {RECIPE_NITER}, the recipe's; fewer: the time is scaled to it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="where the embeddings, data dirs and outputs go (default: a temporary dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    p.add_argument("--quick", action="store_true", help="scale 0.002 (2,184 utterances, k = 100): seconds")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.niter < 1:
        p.error("--niter must be at least 1")
    if args.quick:
        args.scale = 0.002
    n = sizes(args.scale)
    work = args.workdir or tempfile.mkdtemp(prefix="stage3_")
    os.makedirs(work, exist_ok=True)
    try:
        t = time.perf_counter()
        scp = make_embeddings(work, n["utts"], n["speakers"], args)
        made = time.perf_counter() - t
        print(f"{n['utts']} embeddings written in {made:.0f} s", file=sys.stderr, flush=True)
        cmd, seconds, peak = run_stage3(work, scp, n["k"], n["ahc"], args.niter)
        with open(os.path.join(work, "exp", "pl_iter1", "clusters", "clusters.json"), encoding="utf-8") as f:
            s = json.load(f)
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ref = s["reference"]
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())
    matrix = 8 * n["k"] * (n["k"] - 1) / 2 / 2 ** 30
    scaled = ""
    if args.niter != RECIPE_NITER:   # k-means time (its iterations + one assignment pass) scaled to the recipe's
        km = s["seconds"]["kmeans"] * (RECIPE_NITER + 1) / (args.niter + 1)
        total = seconds + km - s["seconds"]["kmeans"]
        scaled = (f"k-means ran {args.niter} iterations, not the recipe's {RECIPE_NITER}: scaled to "
                  f"{RECIPE_NITER} (time x {RECIPE_NITER + 1}/{args.niter + 1}, counting the final assignment as "
                  f"one more pass), k-means {km:.0f} s and the command {total:.0f} s (scaled, not measured). "
                  "Memory does not depend on the iterations; the NMI would be a little higher with more.")
    size = ("paper size" if args.scale == 1 else f"scale {args.scale:g} of the paper size")
    section = "\n".join([
        f"### Stage 3 rehearsal: VoxCeleb2-size embeddings through steps/cluster.sh — {datetime.date.today()}, "
        f"{benchlib.machine()}", "", f"`{benchlib.command('bench_stage3.py')}`", "",
        f"{size}: {n['utts']:,} synthetic {DIM}-d embeddings of {n['speakers']:,} planted speakers (channel "
        f"nuisance in {args.nuisance_dims} shared dimensions, norm {args.channel:g}; noise norm {args.noise:g}; "
        f"speaker 1), made in {made:.0f} s (not counted), then `{' '.join(cmd)}` "
        f"(faiss k-means on the CPU, {benchlib.cores()} cores). Peak memory = largest process of that command. "
        f"{benchlib.load_note()}", "",
        "| embeddings | k-means → AHC | wall time (s) | steps (clusters.json) | peak RSS (GiB) | condensed matrix "
        "(GiB) | utterances out | pseudo speakers | NMI k-means | NMI final | purity | inverse purity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {n['utts']:,} | {n['k']:,} → {n['ahc']:,} | {seconds:.0f} | {steps} | {peak / 1024:.2f} | {matrix:.2f} | "
        f"{s['num_utts_out']:,} | {s['num_clusters']:,} | {ref['kmeans']['nmi']:.4f} | {ref['final']['nmi']:.4f} | "
        f"{ref['final']['purity']:.4f} | {ref['final']['inverse_purity']:.4f} |", "",
        *([scaled, ""] if scaled else [])])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
