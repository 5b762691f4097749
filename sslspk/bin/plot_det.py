#!/usr/bin/env python3
"""DET curves of one or several systems on one plot (normal-deviate axes), plus their points.

Usage: plot_det.py --out det.png [--points det.txt] [--trials TRIALS] [--title T] NAME=SCORES ...

Each SCORES is a score file ``<enroll> <test> <score> [target|nontarget]`` (``--trials`` gives
labels when absent); a bare path is named by its file stem. The points (``system p_miss p_fa
threshold``, the corners of each curve) go to ``--points`` (default: the PNG path with ``.txt``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("systems", nargs="+", metavar="NAME=SCORES")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--points", help="text file of the curve points (default: OUT with .txt)")
    p.add_argument("--trials", help="labelled trial list, for score files without labels")
    p.add_argument("--title")
    p.add_argument("--drop-bad-trials", action="store_true",
                   help="drop repeated trials and self-pairs (enroll == test), counted, instead of stopping")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.det import plot_det_files

        plot_det_files(args.systems, args.out, points=args.points, trials=args.trials, title=args.title,
                       drop_bad_trials=args.drop_bad_trials)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
