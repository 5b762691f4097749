#!/usr/bin/env python3
"""Split a trial list into two speaker-disjoint halves (e.g. calibration dev and evaluation).

Usage: split_trials.py [--seed 0] UTT2SPK TRIALS OUT_DEV OUT_EVAL

Speakers (from UTT2SPK) are shuffled with --seed and halved; a trial is kept in a half when
both of its sides belong to it (cross-half trials are dropped). Outputs are Kaldi-format lists.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("utt2spk")
    p.add_argument("trials")
    p.add_argument("out_dev")
    p.add_argument("out_eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop-bad-trials", action="store_true",
                   help="drop repeated trials and self-pairs (enroll == test), counted, instead of stopping")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.data.trials import split_trials_file

        split_trials_file(args.utt2spk, args.trials, args.out_dev, args.out_eval, args.seed, args.drop_bad_trials)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
