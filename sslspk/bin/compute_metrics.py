#!/usr/bin/env python3
"""EER and minDCF of a score file (and Cllr, actDCF of LLR scores).

Usage: compute_metrics.py [--trials TRIALS] [--p-target 0.01 0.05] [--c-miss 1] [--c-fa 1] [--llr]
                          [--results-dir EXP --name NAME [--backend cosine]] SCORES

SCORES lines are ``<enroll> <test> <score> [target|nontarget]``; without labels in it,
``--trials`` supplies them (matched by ``enroll test`` pair). With ``--results-dir``, the row
NAME of ``EXP/results.md`` and ``EXP/results.json`` is added or replaced. ``--llr`` (the
scores are log-likelihood ratios, e.g. from ``--calibration``) adds Cllr and actDCF (decisions
at the Bayes threshold ``log((1-p) c_fa / (p c_miss))`` of each p_target); it is implied when
SCORES has a stamp ``SCORES.stamp`` whose ``score.py`` options name ``--calibration`` (written by steps/score.sh).
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
    p.add_argument("--drop-bad-trials", action="store_true",
                   help="drop repeated trials and self-pairs (enroll == test), counted, instead of stopping")
    p.add_argument("--results-dir", help="experiment dir whose results.md/json get a row")
    p.add_argument("--name", help="row name in the results table (e.g. the trial list)")
    p.add_argument("--llr", action="store_true", help="scores are LLRs: also report Cllr and actDCF")
    p.add_argument("--backend", default=None,
                   help="scoring back-end recorded in the results row (default: from SCORES.stamp, else cosine)")
    args = p.parse_args(argv)
    if args.results_dir and not args.name:
        p.error("--results-dir needs --name")

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.report import score_file_metrics

        score_file_metrics(args.scores, trials=args.trials, p_target=args.p_target, c_miss=args.c_miss,
                           c_fa=args.c_fa, drop_bad_trials=args.drop_bad_trials, results_dir=args.results_dir,
                           name=args.name, llr=args.llr, backend=args.backend)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
