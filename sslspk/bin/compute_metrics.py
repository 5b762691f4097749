#!/usr/bin/env python3
"""EER and minDCF of a score file.

Usage: compute_metrics.py [--trials TRIALS] [--p-target 0.01 0.05] [--c-miss 1] [--c-fa 1]
                          [--results-dir EXP --name NAME] SCORES

SCORES lines are ``<enroll> <test> <score> [target|nontarget]``; without labels in it,
``--trials`` supplies them (matched by ``enroll test`` pair). With ``--results-dir``, the row
NAME of ``EXP/results.md`` and ``EXP/results.json`` is added or replaced.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scores")
    p.add_argument("--trials", help="labelled trial list, when SCORES has no labels")
    p.add_argument("--p-target", type=float, nargs="+", default=[0.01, 0.05],
                   help="prior(s) of a target trial for minDCF (default: 0.01 0.05)")
    p.add_argument("--c-miss", type=float, default=1.0)
    p.add_argument("--c-fa", type=float, default=1.0)
    p.add_argument("--results-dir", help="experiment dir whose results.md/json get a row")
    p.add_argument("--name", help="row name in the results table (e.g. the trial list)")
    args = p.parse_args(argv)
    if args.results_dir and not args.name:
        p.error("--results-dir needs --name")

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.metrics import compute_metrics
        from sslspk.scoring.report import read_scores, update_results

        scores, labels = read_scores(args.scores, args.trials)
        m = compute_metrics(scores, labels, tuple(args.p_target), args.c_miss, args.c_fa)
        dcf = "  ".join(f"minDCF(p={p:g}) {v:.4f}" for p, v in m.min_dcf.items())
        print(f"EER {100 * m.eer:.3f}%  {dcf}  ({m.num_target} target, {m.num_nontarget} nontarget trials)")
        if args.results_dir:
            update_results(args.results_dir, args.name, m, args.scores)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
