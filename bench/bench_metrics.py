#!/usr/bin/env python3
"""Benchmark: EER + minDCF of sslspk vs a sklearn.metrics.roc_curve computation.

Usage: python bench/bench_metrics.py [--sizes 1000000 10000000] [--append docs/benchmarks.md]

Both are timed in the same run on the same scores; the table gives the times, their ratio
and the largest disagreement of EER and minDCF.
"""

from __future__ import annotations

import argparse
import datetime
import time

import benchlib


def sklearn_metrics(scores, labels, p_target=0.01):
    """EER and minDCF from sklearn's ROC (the usual voxceleb_trainer-style computation)."""
    import numpy as np
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    d = fnr - fpr
    i = int(np.argmax(d <= 0))
    t = d[i - 1] / (d[i - 1] - d[i])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    dcf = np.min(p_target * fnr + (1 - p_target) * fpr) / min(p_target, 1 - p_target)
    return eer, dcf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--append", help="markdown file the section goes to (replacing this benchmark's section)")
    args = p.parse_args()

    import numpy as np

    from sslspk.scoring.metrics import compute_metrics

    rows = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        labels = (rng.random(n) < 0.01).astype(np.int8)
        scores = rng.normal(size=n).astype(np.float32) + 2.5 * labels
        t0 = time.perf_counter()
        m = compute_metrics(scores, labels, (0.01,))
        t1 = time.perf_counter()
        eer, dcf = sklearn_metrics(scores, labels)
        t2 = time.perf_counter()
        rows.append(f"| {n:,} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t2 - t1) / (t1 - t0):.2f}x | "
                    f"{abs(m.eer - eer):.1e} | {abs(m.min_dcf[0.01] - dcf):.1e} |")
    section = "\n".join([
        f"### Metrics: EER + minDCF(0.01) — {datetime.date.today()}, {benchlib.machine()}",
        "", f"`{benchlib.command('bench_metrics.py')}`", "", benchlib.load_note(), "",
        "| trials | sslspk (s) | sklearn roc_curve (s) | speed-up | EER diff | minDCF diff |",
        "|---|---|---|---|---|---|", *rows, ""])
    benchlib.emit(section, args.append)


if __name__ == "__main__":
    main()
