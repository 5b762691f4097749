#!/usr/bin/env python3
"""One markdown table of the result rows of several experiments (e.g. systems, or iterations).

Usage: compare_results.py [--trials test]... [--sort eer] [--json] EXP_DIR|results.json ...

Reads every ``results.json`` in (or below) each argument, in natural order (``iter2`` before
``iter10``), and prints one row per (experiment, trial list): back-end, EER, minDCF, Cllr and
actDCF where present, and the config hash. ``--trials`` keeps only the named rows.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", help="experiment dirs (searched recursively) or results.json files")
    p.add_argument("--trials", action="append", help="only this result row (trial-list name); repeatable")
    p.add_argument("--sort", choices=["none", "eer", "exp"], default="none",
                   help="row order (default: as found)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.report import compare_results

        print(compare_results(args.dirs, args.trials, args.sort, args.json), end="")

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
