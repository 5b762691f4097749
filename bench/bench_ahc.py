#!/usr/bin/env python3
"""Benchmark: AHC of k-means centroids, in place (sslspk, fastcluster) vs scipy's linkage, time and peak memory.

Usage: python bench/bench_ahc.py [--quick] [--sizes 5000 10000 20000 50000] [--scipy-max 20000]
       [--append docs/benchmarks.md]

Synthetic k-means-like centroids: ``--ratio`` centroids per planted speaker (50k → 7.5k in the
paper's recipe), unit-norm 256-d, noise ``--noise`` per dimension around each speaker's direction,
cut into as many clusters as speakers, average linkage on cosine distances. Methods, each in its
own process (time and peak RSS, ``getrusage``, are its own):

* ``sslspk``: ``sslspk.cluster.ahc.ahc_centroids`` (blockwise condensed float64 distances,
  fastcluster's linkage working inside that matrix: one matrix at the peak);
* ``scipy``: the same distances through ``scipy.cluster.hierarchy.linkage`` (the path before: it
  copies the matrix, two at the peak), up to ``--scipy-max`` centroids.

Where both ran, their labels are compared (identical, and NMI of one against the other); NMI to
the planted speakers is the clustering's own quality.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

import benchlib


def worker(a: dict) -> dict:
    """AHC of ``a["k"]`` planted centroids by ``a["method"]``; labels saved to ``a["out"]``."""
    import numpy as np
    from bench_clustering import planted
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from sslspk.cluster.ahc import ahc_centroids, condensed_distances, cut_linkage

    num_spk = int(round(a["k"] / a["ratio"]))
    c, lab = planted(a["k"], num_spk, 256, a["noise"], seed=1)
    if a["method"] == "data":
        return {"seconds": 0.0}
    t = time.perf_counter()
    if a["method"] == "scipy":
        from scipy.cluster.hierarchy import linkage

        pred = cut_linkage(linkage(condensed_distances(c, "cosine"), method="average"), a["k"], num_spk)
    else:
        pred = ahc_centroids(c, num_spk, linkage="average")
    seconds = time.perf_counter() - t
    np.save(a["out"], pred)
    return {"seconds": seconds, "nmi": nmi(lab, pred), "clusters": int(pred.max()) + 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 50000],
                   help="numbers of centroids (default 5000 10000 20000 50000)")
    p.add_argument("--scipy-max", type=int, default=20000,
                   help="largest size scipy's linkage runs at (default 20000: 3.3 GiB; 50k would need ~19 GiB)")
    p.add_argument("--ratio", type=float, default=50000 / 7500, help="centroids per speaker (default 50k/7.5k)")
    p.add_argument("--noise", type=float, default=0.03, help="noise of the centroids around their speaker")
    p.add_argument("--quick", action="store_true", help="sizes 1000 and 2000")
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()
    if args.quick:
        args.sizes, args.scipy_max = [1000, 2000], 2000
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score as nmi

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.sizes:
            base = {"k": k, "ratio": args.ratio, "noise": args.noise}
            floor = benchlib.run_worker("bench_ahc", "worker", {**base, "method": "data"})["maxrss_mib"]
            res = {}
            for method in ("sslspk", "scipy") if k <= args.scipy_max else ("sslspk",):
                out = os.path.join(tmp, f"{method}{k}.npy")
                res[method] = benchlib.run_worker("bench_ahc", "worker", {**base, "method": method, "out": out})
                res[method]["labels"] = np.load(out)
                print(f"{k} {method}: {res[method]['seconds']:.1f} s, {res[method]['maxrss_mib']:.0f} MiB",
                      file=sys.stderr, flush=True)
            same = ""
            if "scipy" in res:
                a, b = res["sslspk"]["labels"], res["scipy"]["labels"]
                same = f"{'yes' if np.array_equal(a, b) else 'no'} (NMI {nmi(a, b):.6f})"
            matrix = 8 * k * (k - 1) / 2 / 2 ** 20
            for method, r in res.items():
                name = "sslspk (fastcluster, in place)" if method == "sslspk" else "scipy linkage (copies)"
                rows.append(f"| {k:,} → {r['clusters']:,} | {name} | {r['seconds']:.1f} | {r['maxrss_mib']:.0f} | "
                            f"{r['maxrss_mib'] - floor:.0f} | {(r['maxrss_mib'] - floor) / matrix:.2f} | "
                            f"{matrix:,.0f} | {r['nmi']:.4f} | {same if method == 'scipy' else ''} |")
    section = "\n".join([
        f"### AHC of k-means centroids: in place vs scipy — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_ahc.py')}`", "",
        f"Synthetic centroids, {args.ratio:.2f} per planted speaker (noise std {args.noise}), cut into as many "
        "clusters as speakers; average linkage, cosine distances; one process per row. Memory = peak RSS, and "
        "above the floor of a process that only makes the centroids; matrices = that excess in condensed "
        f"float64 distance matrices. {benchlib.load_note()}", "",
        "| centroids → clusters | linkage | time (s) | peak RSS (MiB) | above floor (MiB) | matrices | "
        "condensed matrix (MiB) | NMI to planted | same labels as sslspk |",
        "|---|---|---|---|---|---|---|---|---|", *rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
