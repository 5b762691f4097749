#!/usr/bin/env python3
"""Cosine scoring of a trial list (Kaldi or VoxCeleb format) from Kaldi embedding scps.

Usage: score.py [--test-scp T] [--mean-scp M [--var-norm]] TRIALS ENROLL_SCP OUT_SCORES

Writes one line per trial: ``<enroll> <test> <score> [target|nontarget]`` (label copied
from the trial list when it has one). ``--mean-scp`` (e.g. training-set embeddings)
subtracts their mean before length normalisation (``--var-norm``: and divides by their std). Vectorised: no loop per trial.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", help="'enroll test target|nontarget' or '1|0 enroll test' lines")
    p.add_argument("enroll_scp", help="embeddings of the enrollment side (and of the test side without --test-scp)")
    p.add_argument("out_scores")
    p.add_argument("--test-scp", help="embeddings of the test side, when stored apart")
    p.add_argument("--mean-scp", help="subtract the mean of these embeddings (e.g. the training set)")
    p.add_argument("--var-norm", action="store_true",
                   help="also divide each dimension by its standard deviation over --mean-scp")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.data.embeddings import load_embeddings
        from sslspk.scoring.cosine import score_trials
        from sslspk.scoring.trials import read_trials
        from sslspk.utils.fileio import atomic_write

        trials = read_trials(args.trials)
        emb = load_embeddings(args.enroll_scp)
        test = load_embeddings(args.test_scp) if args.test_scp else None
        if args.var_norm and not args.mean_scp:
            raise ValueError("--var-norm needs --mean-scp (the embeddings to take the statistics from)")
        ref = load_embeddings(args.mean_scp)[1].astype("float64") if args.mean_scp else None
        mean = ref.mean(axis=0) if ref is not None else None
        scale = ref.std(axis=0) if args.var_norm else None
        scores = score_trials(emb, trials.enroll, trials.test, mean=mean, scale=scale, test_emb=test,
                              source=f"{args.enroll_scp}" + (f" / {args.test_scp}" if test else ""))
        names = ("nontarget", "target")
        with atomic_write(args.out_scores) as f:
            for i, (e, t, s) in enumerate(zip(trials.enroll, trials.test, scores)):
                label = f" {names[trials.labels[i]]}" if trials.labels is not None else ""
                f.write(f"{e} {t} {s:.6f}{label}\n")
        print(f"scored {len(scores)} trials -> {args.out_scores}")

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
