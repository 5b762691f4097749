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
        from sslspk.bin.score import apply_calibration
        from sslspk.scoring.report import read_score_file
        from sslspk.utils.fileio import check_outputs_are_not_inputs

        if args.cmd == "train":
            check_outputs_are_not_inputs([args.scores, args.trials, *args.utt2dur], [args.cal_json])
            from sslspk.scoring.calibration import cllr, quality_features, read_durations, train_calibration
            from sslspk.scoring.report import read_scores

            scores, labels = read_scores(args.scores, args.trials, args.drop_bad_trials)
            quality = None
            if args.utt2dur:
                pairs = read_score_file(args.scores, args.drop_bad_trials)[0]
                quality = quality_features([e for e, _ in pairs], [t for _, t in pairs],
                                           read_durations(args.utt2dur))
            cal = train_calibration(scores, labels, prior=args.p_target, quality=quality)
            cal.save(args.cal_json)
            after = cllr(cal.apply(scores, quality), labels)
            print(f"calibration a={cal.a:.4g} b={cal.b:.4g}" + (f" w={cal.weights}" if cal.weights else "")
                  + f" (prior {cal.prior:g}); dev Cllr {after:.4f} -> {args.cal_json}")
        else:
            from sslspk.utils.fileio import atomic_write

            check_outputs_are_not_inputs([args.cal_json, args.scores, *args.utt2dur], [args.out])
            pairs, scores, labels = read_score_file(args.scores, args.drop_bad_trials)
            llr = apply_calibration(args.cal_json, scores, [e for e, _ in pairs], [t for _, t in pairs],
                                    args.utt2dur)
            with atomic_write(args.out) as f:
                for (e, t), s, lab in zip(pairs, llr, labels):
                    f.write(f"{e} {t} {s:.6f}" + (f" {lab}" if lab else "") + "\n")
            print(f"calibrated {len(llr)} scores -> {args.out}")

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
