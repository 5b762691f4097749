#!/usr/bin/env python3
"""Score a trial list (Kaldi or VoxCeleb format) from embedding scps: cosine, AS-norm, PLDA or the authors' protocol.

Usage: score.py [--test-scp T] [--mean-scp M [--var-norm]] [--cohort-scp C [--cohort-utt2spk U] [--top-n 300]]
                [--segments-scp S] [--backend plda|lda-cosine --backend-model MODEL]
                [--calibration cal.json [--utt2dur F]... ] [--skip-missing]
                TRIALS ENROLL_SCP OUT_SCORES

Writes one line per trial: ``<enroll> <test> <score> [target|nontarget]`` (label copied
from the trial list when it has one). ``--mean-scp`` (e.g. training-set embeddings)
subtracts their mean before length normalisation (``--var-norm``: and divides by their std).
``--cohort-scp`` turns on adaptive symmetric score normalisation (AS-norm) with the ``--top-n``
closest cohort entries (clipped to the cohort size): training utterance embeddings, their
speaker means (``--cohort-utt2spk``: averaged after the trials' normalisation), or any scp
(``spk_embeddings.scp`` holds means of length-normalised embeddings: right without --mean-scp).
``--segments-scp`` (``segments.scp`` of ``extract_embeddings.sh --segments N``) scores with the
authors' protocol (theolepage/wavlm_ssl_sv:SpeakerNet.py evaluateFromList): the mean of the cosine
of the whole-utterance embeddings and of the mean cosine over all pairs of segment embeddings,
with no mean subtraction (not combinable with the normalisation options or --test-scp).
``--backend plda`` scores with Kaldi's PLDA log-likelihood ratio (one enrollment utterance) and
``--backend lda-cosine`` with the cosine after the model's mean subtraction and LDA, the model being
``--backend-model`` of ``train_backend.py`` (it holds its own normalisation: not combinable with the
other normalisation options, AS-norm or --segments-scp).
``--calibration`` maps the scores to LLRs with a model from ``calibrate.py train``.
Trial ids without an embedding are an error listing them; ``--skip-missing`` scores only the
others (with a warning giving the count). Vectorised: no loop per trial.
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
    p.add_argument("--cohort-scp", help="AS-norm cohort embeddings (e.g. training speaker means)")
    p.add_argument("--cohort-utt2spk",
                   help="AS-norm: --cohort-scp holds utterances; the cohort is the mean of each speaker's "
                        "embeddings after the same mean/var/length normalisation as the trials")
    p.add_argument("--top-n", type=int, default=300, help="AS-norm: closest cohort entries used (default 300)")
    p.add_argument("--block", type=int, default=4096,
                   help="AS-norm: embeddings scored against the cohort at a time (memory: block x cohort)")
    p.add_argument("--segments-scp",
                   help="the authors' protocol: mean of the whole-utterance cosine and of the mean cosine over "
                        "all pairs of these per-utterance segment embeddings")
    p.add_argument("--backend", choices=["cosine", "plda", "lda-cosine"], default="cosine",
                   help="cosine (default; AS-norm with --cohort-scp), or a --backend-model's plda LLR or "
                        "cosine after its LDA (lda-cosine)")
    p.add_argument("--backend-model", help="back-end of train_backend.py, for --backend plda|lda-cosine")
    p.add_argument("--calibration", help="calibration JSON (calibrate.py train): write LLRs")
    p.add_argument("--utt2dur", action="append", default=[],
                   help="utt2dur file(s), for a calibration with quality measures")
    p.add_argument("--drop-bad-trials", action="store_true",
                   help="drop repeated trials and self-pairs (enroll == test), counted, instead of stopping")
    p.add_argument("--skip-missing", action="store_true",
                   help="score only trials whose two ids have embeddings (warn with the count)")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.scoring.pipeline import score_trial_list

        score_trial_list(args.trials, args.enroll_scp, args.out_scores, test_scp=args.test_scp,
                         mean_scp=args.mean_scp, var_norm=args.var_norm, cohort_scp=args.cohort_scp,
                         cohort_utt2spk=args.cohort_utt2spk, top_n=args.top_n, block=args.block,
                         segments_scp=args.segments_scp, backend=args.backend, backend_model=args.backend_model,
                         calibration=args.calibration, utt2dur=args.utt2dur, drop_bad_trials=args.drop_bad_trials,
                         skip_missing=args.skip_missing)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
