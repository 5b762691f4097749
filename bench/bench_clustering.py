#!/usr/bin/env python3
"""Benchmark: faiss k-means vs scikit-learn KMeans / MiniBatchKMeans, and AHC of centroids.

Usage: python bench/bench_clustering.py [--quick] [--faiss-niter 20 5 2] [--faiss-points-per-centroid 256 32]
       [--append docs/benchmarks.md]

Synthetic 256-d unit-norm embeddings with planted clusters (``--n`` points around ``--k``
random directions, Gaussian noise ``--noise`` per dimension). Each method runs in its own
subprocess, so its wall time and peak resident memory (``getrusage`` maxrss, which counts C
allocations, unlike tracemalloc) are its own; NMI is against the planted labels. The
"data only" row is the memory of a worker that only makes the data (the floor of every row).
AHC runs on synthetic k-means-like centroids (``--ahc-sizes``; ``--ahc-ratio`` centroids
per planted speaker, 50k → 7.5k in the paper), average linkage on cosine distances.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
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


def worker(method: str, a: dict) -> dict:
    """Run one method in this process; returns seconds, NMI and settings."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    if method == "ahc":
        from sslspk.cluster.ahc import ahc_centroids

        num_spk = int(round(a["ahc_k"] / a["ahc_ratio"]))
        c, lab = planted(a["ahc_k"], num_spk, a["dim"], a["ahc_noise"], seed=1)
        t = time.perf_counter()
        pred = ahc_centroids(c, num_spk, linkage="average")
        return {"seconds": time.perf_counter() - t, "nmi": nmi(lab, pred), "clusters": int(pred.max()) + 1}
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


def run_worker(method: str, a: dict) -> dict:
    """Run :func:`worker` in a subprocess; adds its peak RSS (MiB)."""
    code = ("import json, resource, sys; sys.path.insert(0, sys.argv[1]); "
            "import bench_clustering as b; r = b.worker(sys.argv[2], json.loads(sys.argv[3])); "
            "r['maxrss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(r))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), method,
                          json.dumps(a)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


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
    p.add_argument("--ahc-sizes", type=int, nargs="*", default=[5000, 10000, 20000],
                   help="numbers of centroids for AHC (default 5000 10000 20000)")
    p.add_argument("--ahc-ratio", type=float, default=50000 / 7500, help="centroids per speaker (default 50k/7.5k)")
    p.add_argument("--ahc-noise", type=float, default=0.03, help="noise of centroids around their speaker")
    p.add_argument("--quick", action="store_true", help="small sizes (20k points, 200 clusters, AHC 2k/4k)")
    p.add_argument("--append", help="markdown file to append the tables to")
    args = p.parse_args()
    if args.quick:
        args.n, args.k, args.ahc_sizes = 20_000, 200, [2000, 4000]
    a = {k: v for k, v in vars(args).items()
         if k not in ("append", "methods", "quick", "ahc_sizes", "faiss_niter", "faiss_points_per_centroid")}

    rows = []
    res = {}
    faiss_runs = [(n, ppc) for ppc in args.faiss_points_per_centroid for n in args.faiss_niter]
    runs = [(f"faiss{n}_{ppc}", "faiss", n, ppc) if m == "faiss" else (m, m, args.niter, 0)
            for m in args.methods for n, ppc in (faiss_runs if m == "faiss" else [(0, 0)])]
    for key, m, niter, ppc in runs:
        r = res[key] = run_worker(m, {**a, "niter": niter, "points_per_centroid": ppc})
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
    ahc_rows = []
    for size in args.ahc_sizes:
        r = run_worker("ahc", {**a, "ahc_k": size})
        print(f"ahc {size}: {r}", file=sys.stderr, flush=True)
        ahc_rows.append((size, r))
    ahc_lines = [f"| {s:,} → {r['clusters']:,} | {r['seconds']:.1f} | {r['maxrss_mib']:.0f} | "
                 f"{8 * s * (s - 1) / 2 / 2**20:.0f} | {r['nmi']:.4f} |" for s, r in ahc_rows]
    extra = []
    if len(ahc_rows) >= 2:
        (s1, r1), (s2, r2) = ahc_rows[-2], ahc_rows[-1]
        e_t = r2["seconds"] * (50000 / s2) ** 2
        slope = (r2["maxrss_mib"] - r1["maxrss_mib"]) / (s2 ** 2 - s1 ** 2)
        e_m = r2["maxrss_mib"] + slope * (50000 ** 2 - s2 ** 2)
        extra = ["", f"Extrapolated to 50,000 → 7,500 (time and memory grow as k², from the two largest sizes): "
                     f"about {e_t:.0f} s and {e_m / 1024:.1f} GiB peak memory "
                     f"(the condensed float64 distance matrix alone is {8 * 50000 * 49999 / 2 / 2**30:.1f} GiB)."]
    cmd = " ".join(["python bench/bench_clustering.py", *(shlex.quote(x) for x in sys.argv[1:])])
    table = "\n".join([
        f"### Clustering: faiss k-means vs scikit-learn, AHC of centroids — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{cmd}`", "",
        f"k-means: {args.n:,} unit-norm {args.dim}-d points around {args.k:,} planted directions "
        f"(noise std {args.noise} per dimension), k = {args.k:,}; time = fit + assignment of every point; "
        "memory = peak RSS of the worker process (the data-only row is the floor).", "",
        f"| method | time (s) | time / first faiss row | MiniBatchKMeans time / this | peak RSS (MiB) "
        "| NMI | settings |", "|---|---|---|---|---|---|---|",
        *rows, "",
        *([f"AHC (sslspk.cluster.ahc, average linkage, cosine) of synthetic centroids: "
           f"{args.ahc_ratio:.2f} centroids per planted speaker, noise std {args.ahc_noise}.", "",
           "| centroids → clusters | time (s) | peak RSS (MiB) | condensed matrix (MiB) | NMI |",
           "|---|---|---|---|---|", *ahc_lines, *extra, ""] if ahc_rows else [])])
    print(table)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
