#!/usr/bin/env python3
"""Per-iteration table of the pseudo-label loop (markdown, to stdout).

Usage: loop_report.py [--trials test] [--start ssl] [--tag _TAG] EXP_DIR

Reads EXP_DIR/<start> (iteration 0: the model whose embeddings seeded the first clustering, the
SSL model or e.g. the statistics baseline), EXP_DIR/pl_iterN/results.json (EER, minDCF),
EXP_DIR/pl_iterN/clusters/clusters.json (#clusters, NMI, purity against the true speakers when
known) and the last DLG-LC line of EXP_DIR/pl_iterN/train.log (fractions kept, corrected: labels
changed to the model's prediction, and dropped), plus EXP_DIR/oracle (trained on the true labels)
when present.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dir")
    p.add_argument("--trials", default="test", help="result row to report (default: test)")
    p.add_argument("--start", default="ssl", help="model dir (in EXP_DIR) of iteration 0 (default: ssl)")
    p.add_argument("--tag", default="", help="name suffix of the systems: pl<TAG>_iterN, oracle<TAG> (default: none)")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.report import loop_table

        print(loop_table(args.exp_dir, args.trials, args.start, args.tag))

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
