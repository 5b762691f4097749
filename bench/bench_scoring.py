#!/usr/bin/env python3
"""Benchmark: cosine and AS-norm scoring of a VoxCeleb1-E/H-sized trial list (sslspk.scoring).

Usage: python bench/bench_scoring.py [--quick] [--blocks 512 4096 16384] [--append docs/benchmarks.md]

``--embeddings`` random 256-d embeddings (ids ``u000000``...), ``--trials`` random pairs of
them, and an AS-norm cohort of ``--cohort`` embeddings (top ``--top-n`` 300). Every row runs
in its own process, so its time and peak resident memory (``getrusage`` maxrss) are its own;
the "data only" row is the floor (the process that only makes the data). AS-norm is timed
at several ``--blocks`` (embeddings scored against the cohort at a time: the
``block x cohort`` score matrix is the only one of that shape). Compared in the same run:

* unblocked AS-norm (``block`` = all the embeddings: one ``embeddings x cohort`` matrix, what
  an implementation without blocking does) beside the default block, both on a list scaled
  down by ``--unblocked-fraction`` (embeddings and trials), the unblocked memory extrapolated
  linearly to the full size (the full-size matrix would need several GiB on this shared machine);
* a per-trial Python loop (each trial: two cohort products, two top-n sorts), on
  ``--loop-trials`` trials and extrapolated to the whole list.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import benchlib

#: score_trials' trials-at-a-time default before this benchmark (compared side by side).
OLD_PAIR_BLOCK = 1 << 18


def make_data(a: dict):
    """``(keys, emb [N, dim] float32, enroll ids, test ids, cohort [C, dim] float32)``."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = a["embeddings"]
    keys = [f"u{i:06d}" for i in range(n)]
    emb = rng.standard_normal((n, a["dim"]), dtype=np.float32)
    pairs = rng.integers(0, n, (a["trials"], 2))
    enroll = [keys[i] for i in pairs[:, 0]]
    test = [keys[i] for i in pairs[:, 1]]
    cohort = rng.standard_normal((a["cohort"], a["dim"]), dtype=np.float32)
    return keys, emb, enroll, test, cohort


def worker(a: dict) -> dict:
    """One row (``a["method"]``) in this process: returns seconds (and the extrapolation factor)."""
    import numpy as np

    from sslspk.scoring.asnorm import asnorm_trials
    from sslspk.scoring.cosine import score_trials

    keys, emb, enroll, test, cohort = make_data(a)
    method = a["method"]
    t = time.perf_counter()
    if method == "data":
        return {"seconds": 0.0}
    if method == "cosine":
        score_trials((keys, emb), enroll, test, block=a["block"])
    elif method == "asnorm":
        asnorm_trials((keys, emb), enroll, test, cohort, top_n=a["top_n"], block=a["block"] or len(emb))
    elif method in ("loop_cosine", "loop_asnorm"):
        index = {k: i for i, k in enumerate(keys)}
        coh = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
        top_n = a["top_n"]
        n = min(a["loop_trials"], len(enroll))
        for e_id, t_id in zip(enroll[:n], test[:n]):
            e, x = emb[index[e_id]], emb[index[t_id]]
            e, x = e / np.linalg.norm(e), x / np.linalg.norm(x)
            s = float(e @ x)
            if method == "loop_asnorm":
                e_top = np.sort(coh @ e)[-top_n:]
                t_top = np.sort(coh @ x)[-top_n:]
                s = 0.5 * ((s - e_top.mean()) / e_top.std() + (s - t_top.mean()) / t_top.std())
        return {"seconds": time.perf_counter() - t, "scale": len(enroll) / n}
    else:
        raise ValueError(method)
    return {"seconds": time.perf_counter() - t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", type=int, default=145_000, help="distinct embeddings (default 145000)")
    p.add_argument("--trials", type=int, default=580_000, help="trials (default 580000, Vox1-E size)")
    p.add_argument("--cohort", type=int, default=6000, help="AS-norm cohort size (default 6000)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--top-n", type=int, default=300)
    p.add_argument("--blocks", type=int, nargs="+", default=[512, 4096, 16384],
                   help="AS-norm block sizes to time (default 512 4096 16384; 4096 is score.py's default)")
    p.add_argument("--unblocked-fraction", type=float, default=0.1,
                   help="fraction of the embeddings the unblocked row scores (default 0.1)")
    p.add_argument("--loop-trials", type=int, default=2000, help="trials the per-trial loops score (default 2000)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads of each worker (default 1)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (5k embeddings, 20k trials, 500 cohort)")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.quick:
        args.embeddings, args.trials, args.cohort, args.loop_trials, args.blocks = 5000, 20_000, 500, 200, [512, 4096]
    base = {k: getattr(args, k) for k in ("embeddings", "trials", "cohort", "dim", "top_n", "unblocked_fraction",
                                          "loop_trials")}

    def run(method: str, **extra) -> dict:
        r = benchlib.run_worker("bench_scoring", "worker", {**base, "method": method, **extra}, args.threads)
        print(f"{method} {extra}: {r}", file=sys.stderr, flush=True)
        return r

    floor = run("data")["maxrss_mib"]
    from sslspk.scoring.cosine import PAIR_BLOCK

    cosine = {b: run("cosine", block=b) for b in (PAIR_BLOCK, OLD_PAIR_BLOCK)}
    asnorm = {b: run("asnorm", block=b) for b in args.blocks}
    default_block = 4096 if 4096 in asnorm else args.blocks[0]
    ref = asnorm[default_block]["seconds"]
    f = args.unblocked_fraction
    small = {"embeddings": max(1, round(f * args.embeddings)), "trials": max(1, round(f * args.trials))}
    small_floor = run("data", **small)["maxrss_mib"]
    small_blocked = run("asnorm", block=default_block, **small)
    small_unblocked = run("asnorm", block=0, **small)
    loop_cos, loop_as = run("loop_cosine"), run("loop_asnorm")

    def secs(x: float) -> str:
        return f"{x:.2f}" if x < 10 else f"{x:.0f}"

    def mem(r: dict, low: float = floor) -> str:
        return f"{r['maxrss_mib']:.0f} | {r['maxrss_mib'] - low:.0f}"

    coh_mib = lambda rows: rows * args.cohort * 8 / 2 ** 20  # noqa: E731  float64 block x cohort matrix
    growth = (small_unblocked["maxrss_mib"] - small_floor) / f
    t_cos = loop_cos["seconds"] * loop_cos["scale"]
    ref_cos = cosine[PAIR_BLOCK]["seconds"]
    t_as = loop_as["seconds"] * loop_as["scale"]
    rows = [
        f"| data only (floor) | | | {floor:.0f} | 0 | |",
        *(f"| cosine (`score_trials`), {b:,} trials at a time{' (default)' if b == PAIR_BLOCK else ' (old default)'}"
          f" | {secs(r['seconds'])} | {r['seconds'] / ref_cos:.2f}x the cosine default | {mem(r)} | |"
          for b, r in cosine.items()),
        *(f"| AS-norm (`asnorm_trials`), block {b:,} | {secs(r['seconds'])} | {r['seconds'] / ref:.2f}x | "
          f"{mem(r)} | {coh_mib(b):.0f} |" for b, r in asnorm.items()),
        f"| per-trial Python loop, cosine ({args.loop_trials:,} trials, extrapolated) | ~{secs(t_cos)} | "
        f"{t_cos / ref_cos:.0f}x the cosine default | | | |",
        f"| per-trial Python loop, AS-norm ({args.loop_trials:,} trials, extrapolated) | ~{secs(t_as)} | "
        f"{t_as / ref:.0f}x | | | |",
    ]
    small_rows = [
        f"| data only (floor) | | {small_floor:.0f} | 0 | |",
        f"| block {default_block:,} | {secs(small_blocked['seconds'])} | {mem(small_blocked, small_floor)} | "
        f"{coh_mib(min(default_block, small['embeddings'])):.0f} |",
        f"| unblocked (block = {small['embeddings']:,}) | {secs(small_unblocked['seconds'])} | "
        f"{mem(small_unblocked, small_floor)} | {coh_mib(small['embeddings']):.0f} |",
        f"| unblocked, extrapolated to {args.embeddings:,} embeddings | | | ~{growth:.0f} | "
        f"{coh_mib(args.embeddings):.0f} |",
    ]
    section = "\n".join([
        f"### Scoring: cosine and AS-norm, VoxCeleb1-E/H size — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_scoring.py')}`", "",
        f"{args.trials:,} trials over {args.embeddings:,} random {args.dim}-d embeddings; AS-norm cohort "
        f"{args.cohort:,} embeddings, top {args.top_n}; {args.threads} BLAS thread(s) per worker. Time = the "
        "scoring call (id look-up, normalisation, cohort statistics, scores); memory = peak RSS of the "
        f"worker, and above the data-only floor. Ratios are to AS-norm at block {default_block:,}. "
        f"{benchlib.load_note()}", "",
        "| method | time (s) | time / AS-norm | peak RSS (MiB) | above floor (MiB) | block x cohort float64 (MiB) |",
        "|---|---|---|---|---|---|", *rows, "",
        f"Blocked vs unblocked AS-norm, side by side on a list scaled by {f:g} ({small['trials']:,} trials over "
        f"{small['embeddings']:,} embeddings, same cohort):", "",
        "| AS-norm | time (s) | peak RSS (MiB) | above floor (MiB) | block x cohort float64 (MiB) |",
        "|---|---|---|---|---|", *small_rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
