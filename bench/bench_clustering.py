#!/usr/bin/env python3
"""Benchmark: faiss k-means vs scikit-learn KMeans / MiniBatchKMeans.

Usage: python bench/bench_clustering.py [--quick] [--faiss-niter 20 5 2] [--faiss-points-per-centroid 256 32]
       [--append docs/benchmarks.md]

Synthetic 256-d unit-norm embeddings with planted clusters (``--n`` points around ``--k``
random directions, Gaussian noise ``--noise`` per dimension). Each method runs in its own
subprocess, so its wall time and peak resident memory (``getrusage`` maxrss, which counts C
allocations, unlike tracemalloc) are its own; NMI is against the planted labels. The
"data only" row is the memory of a worker that only makes the data (the floor of every row).
AHC of the centroids: ``bench_ahc.py``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import benchlib


def planted(n: int, k: int, dim: int, noise: float, seed: int = 0):
    """``(x [n, dim] float32 unit rows, labels)``: ``n`` points around ``k`` random directions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    x = centres[labels]
    x += noise * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def worker(a: dict) -> dict:
    """Run one method (``a["method"]``) in this process; returns seconds, NMI and settings."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    method = a["method"]
    x, lab = planted(a["n"], a["k"], a["dim"], a["noise"])
    if method == "data":
        return {"seconds": 0.0, "nmi": float("nan")}
    t = time.perf_counter()
    if method == "faiss":
        from sslspk.cluster.kmeans import faiss_kmeans

        ppc = a["points_per_centroid"]
        pred = faiss_kmeans(x, a["k"], niter=a["niter"], seed=1, spherical=True, max_points_per_centroid=ppc).labels
        note = (f"niter={a['niter']}, random init, spherical, trained on "
                f"{min(a['n'], ppc * a['k']):,} points ({ppc} per centroid at most)")
    elif method == "minibatch":
        from sklearn.cluster import MiniBatchKMeans

        m = MiniBatchKMeans(a["k"], batch_size=a["mb_batch"], n_init=1, random_state=1).fit(x)
        pred = m.predict(x)
        note = f"batch_size={a['mb_batch']}, n_init=1, k-means++ init, {m.n_steps_} steps ({m.n_iter_} epochs)"
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        m = KMeans(a["k"], n_init=1, max_iter=a["niter"], init="random", random_state=1).fit(x)
        pred = m.labels_
        note = f"lloyd, max_iter={a['niter']} ({m.n_iter_} run), n_init=1, random init"
    else:
        raise ValueError(method)
    return {"seconds": time.perf_counter() - t, "nmi": nmi(lab, pred), "note": note}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="points (default 100000)")
    p.add_argument("--k", type=int, default=1000, help="planted clusters = k-means k (default 1000)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--noise", type=float, default=0.1, help="per-dimension noise std (default 0.1)")
    p.add_argument("--niter", type=int, default=20, help="KMeans max_iter (default 20)")
    p.add_argument("--faiss-niter", type=int, nargs="+", default=[20],
                   help="faiss niter, one row each (default 20): the speed at a given NMI")
    p.add_argument("--faiss-points-per-centroid", type=int, nargs="+", default=[256],
                   help="faiss max_points_per_centroid values to run, each with every --faiss-niter (default 256)")
    p.add_argument("--mb-batch", type=int, default=4096, help="MiniBatchKMeans batch_size (default 4096)")
    p.add_argument("--methods", nargs="+", default=["data", "faiss", "minibatch", "kmeans"])
    p.add_argument("--quick", action="store_true", help="small sizes (20k points, 200 clusters)")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.quick:
        args.n, args.k = 20_000, 200
    a = {k: v for k, v in vars(args).items()
         if k not in ("append", "methods", "quick", "faiss_niter", "faiss_points_per_centroid")}

    rows = []
    res = {}
    faiss_runs = [(n, ppc) for ppc in args.faiss_points_per_centroid for n in args.faiss_niter]
    runs = [(f"faiss{n}_{ppc}", "faiss", n, ppc) if m == "faiss" else (m, m, args.niter, 0)
            for m in args.methods for n, ppc in (faiss_runs if m == "faiss" else [(0, 0)])]
    for key, m, niter, ppc in runs:
        r = res[key] = benchlib.run_worker("bench_clustering", "worker",
                                           {**a, "method": m, "niter": niter, "points_per_centroid": ppc},
                                           threads=benchlib.cores())
        print(f"{key}: {r}", file=sys.stderr, flush=True)
    names = {"data": "data only", "faiss": "faiss Kmeans (sslspk)", "minibatch": "sklearn MiniBatchKMeans",
             "kmeans": "sklearn KMeans"}
    ref = f"faiss{faiss_runs[0][0]}_{faiss_runs[0][1]}"
    for key, m, _, _ in runs:
        r = res[key]
        speed = (f"{r['seconds'] / res[ref]['seconds']:.1f}x" if m != "data" and ref in res else "")
        vs_mb = (f"{res['minibatch']['seconds'] / r['seconds']:.1f}x" if m == "faiss" and "minibatch" in res else "")
        rows.append(f"| {names[m]} | {r['seconds']:.1f} | {speed} | {vs_mb} | {r['maxrss_mib']:.0f} | "
                    + (f"{r['nmi']:.4f}" if m != "data" else "") + f" | {r.get('note', '')} |")
    if ref in res:   # k-means costs n x k x d per iteration; faiss trains on all of 1M points at k = 50k
        f = res[ref]
        scale = (1_000_000 / args.n) * (50_000 / args.k)
        rows += ["", f"Extrapolated to 1,000,000 x 50,000 clusters (cost grows as n x k): faiss niter "
                     f"{args.faiss_niter[0]} about {f['seconds'] * scale / 3600:.1f} h on this machine; memory: the "
                     f"{1_000_000 * args.dim * 4 / 2**20:,.0f} MiB embedding matrix + "
                     f"{50_000 * args.dim * 4 / 2**20:.0f} MiB of centroids (+ assignment batches)."]
    section = "\n".join([
        f"### Clustering: faiss k-means vs scikit-learn — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_clustering.py')}`", "",
        f"{args.n:,} unit-norm {args.dim}-d points around {args.k:,} planted directions "
        f"(noise std {args.noise} per dimension), k = {args.k:,}; time = fit + assignment of every point; "
        f"memory = peak RSS of the worker process (the data-only row is the floor). {benchlib.load_note()}", "",
        "| method | time (s) | time / first faiss row | MiniBatchKMeans time / this | peak RSS (MiB) "
        "| NMI | settings |", "|---|---|---|---|---|---|---|",
        *rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
