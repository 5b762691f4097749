#!/usr/bin/env python3
"""Logistic-regression score calibration: train on a labelled dev score file, apply to others.

Usage: calibrate.py train [--p-target 0.01] [--utt2dur F]...  DEV_SCORES CAL_JSON
       calibrate.py apply [--utt2dur F]...  CAL_JSON SCORES OUT_LLRS

``train`` fits ``llr = a*score + b`` (with ``--utt2dur``: plus weights on the min/max log
duration of the two sides, QMF-style) by prior-weighted logistic regression at prior
``--p-target`` and writes ``{"a", "b", "prior", "weights", "features"}``. ``apply`` writes the
score file with each score replaced by its LLR (labels kept). Score files are
``<enroll> <test> <score> [target|nontarget]``; ``--trials`` gives labels when absent.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fit a calibration on labelled dev scores")
    t.add_argument("scores")
    t.add_argument("cal_json")
    t.add_argument("--p-target", type=float, default=0.01, help="operating prior of the objective (default 0.01)")
    t.add_argument("--trials", help="labelled trial list, when the score file has no labels")
    t.add_argument("--utt2dur", action="append", default=[], help="utt2dur file(s): add quality measures")
    a = sub.add_parser("apply", help="map scores to LLRs")
    a.add_argument("cal_json")
    a.add_argument("scores")
    a.add_argument("out")
    a.add_argument("--utt2dur", action="append", default=[],
                   help="utt2dur file(s) (calibrations with quality measures)")
    for sp in (t, a):
        sp.add_argument("--drop-bad-trials", action="store_true",
                        help="drop repeated trials and self-pairs (enroll == test), counted, instead of stopping")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.calibration import calibrate_score_file, train_calibration_file

        if args.cmd == "train":
            train_calibration_file(args.scores, args.cal_json, p_target=args.p_target, trials=args.trials,
                                   utt2dur=args.utt2dur, drop_bad_trials=args.drop_bad_trials)
        else:
            calibrate_score_file(args.cal_json, args.scores, args.out, utt2dur=args.utt2dur,
                                 drop_bad_trials=args.drop_bad_trials)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
