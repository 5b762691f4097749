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
        from sslspk.scoring.metrics import compute_metrics
        from sslspk.scoring.report import read_scores, update_results
        from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files
        from sslspk.utils.stamp import read_stamp, stamp_path

        check_outputs_are_not_inputs([args.scores, stamp_path(args.scores), args.trials],
                                     dir_and_files(args.results_dir, ("results.json", "results.md")))

        opts = ((read_stamp(args.scores) or {}).get("options") or {}).get("score.py", "").split()
        llr = args.llr or "--calibration" in opts
        trained = opts[opts.index("--backend") + 1] if "--backend" in opts[:-1] else None   # plda, lda-cosine
        backend = args.backend or (trained or ("as-norm" if "--cohort-scp" in opts else "cosine")) \
            + ("+cal" if "--calibration" in opts else "")
        scores, labels = read_scores(args.scores, args.trials, args.drop_bad_trials)
        m = compute_metrics(scores, labels, tuple(args.p_target), args.c_miss, args.c_fa, llr=llr)
        dcf = "  ".join(f"minDCF(p={p:g}) {v:.4f}" for p, v in m.min_dcf.items())
        if m.cllr is not None:
            dcf += f"  Cllr {m.cllr:.4f}  " + "  ".join(f"actDCF(p={p:g}) {v:.4f}" for p, v in m.act_dcf.items())
        print(f"EER {100 * m.eer:.3f}%  {dcf}  ({m.num_target} target, {m.num_nontarget} nontarget trials)")
        if args.results_dir:
            update_results(args.results_dir, args.name, m, args.scores, backend=backend)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
