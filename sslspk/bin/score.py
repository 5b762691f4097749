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
        import numpy as np

        from sslspk.data.embeddings import check_same_dim, load_embeddings
        from sslspk.data.trials import Trials, read_trials
        from sslspk.scoring.cosine import present_trials, score_trials
        from sslspk.utils.errors import InputError, MissingIdError
        from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs

        if args.segments_scp and (args.test_scp or args.mean_scp or args.var_norm or args.cohort_scp):
            raise InputError("--segments-scp is the authors' protocol (no mean subtraction, no AS-norm, one scp of "
                             "both sides): not combinable with --test-scp, --mean-scp, --var-norm or --cohort-scp")
        if (args.backend == "cosine") == bool(args.backend_model):
            raise InputError("--backend plda|lda-cosine needs --backend-model, and --backend-model needs one of them")
        if args.backend != "cosine" and (args.mean_scp or args.var_norm or args.cohort_scp or args.segments_scp):
            raise InputError(f"--backend {args.backend} uses the normalisation of its --backend-model: not combinable "
                             "with --mean-scp, --var-norm, --cohort-scp or --segments-scp")
        check_outputs_are_not_inputs([args.trials, args.enroll_scp, args.test_scp, args.mean_scp, args.cohort_scp,
                                      args.cohort_utt2spk, args.calibration, args.segments_scp, args.backend_model,
                                      *args.utt2dur], [args.out_scores])
        trials = read_trials(args.trials, args.drop_bad_trials)
        emb = load_embeddings(args.enroll_scp)
        test = load_embeddings(args.test_scp) if args.test_scp else None
        source = f"{args.enroll_scp}" + (f" / {args.test_scp}" if test else "")
        if args.segments_scp:
            from sslspk.scoring.segments import load_segment_means

            segment_means = load_segment_means(args.segments_scp)
        if args.skip_missing:
            keys = emb[0] if not args.segments_scp else sorted(set(emb[0]) & set(segment_means[0]))
            keep = present_trials(trials.enroll, trials.test, keys, test[0] if test else None)
            n_miss = int((~keep).sum())
            if n_miss:
                if not keep.any():
                    raise MissingIdError(f"none of the {len(trials)} trials of {args.trials} have embeddings "
                                         f"in {source}")
                print(f"WARNING: skipping {n_miss} of {len(trials)} trials of {args.trials} "
                      f"with no embedding in {source}", file=sys.stderr)
                idx = np.flatnonzero(keep)
                trials = Trials([trials.enroll[i] for i in idx], [trials.test[i] for i in idx],
                                None if trials.labels is None else trials.labels[idx])
        if args.var_norm and not args.mean_scp:
            raise InputError("--var-norm needs --mean-scp (the embeddings to take the statistics from)")
        ref = load_embeddings(args.mean_scp)[1].astype("float64") if args.mean_scp else None
        c_keys, cohort = load_embeddings(args.cohort_scp) if args.cohort_scp else (None, None)
        dims = {args.enroll_scp: emb[1].shape[1]}   # every set that meets the enrollment side
        for path, mat in ((args.test_scp, test[1] if test else None), (args.mean_scp, ref), (args.cohort_scp, cohort),
                          (args.segments_scp, segment_means[1] if args.segments_scp else None)):
            if path:
                dims[path] = mat.shape[1]
        check_same_dim(dims)
        mean = ref.mean(axis=0) if ref is not None else None
        scale = ref.std(axis=0) if args.var_norm else None
        if args.backend != "cosine":
            from sslspk.scoring.plda import Backend

            scores = Backend.load(args.backend_model).score_trials(args.backend, emb, trials.enroll, trials.test,
                                                                   test_emb=test, source=source)
        elif args.segments_scp:
            from sslspk.scoring.segments import full_and_segments_scores

            scores = full_and_segments_scores(emb, segment_means, trials.enroll, trials.test, source)
        elif args.cohort_scp:
            from sslspk.scoring.asnorm import asnorm_trials

            groups = None
            if args.cohort_utt2spk:
                from sslspk.utils.fileio import read_kv

                u2s = read_kv(args.cohort_utt2spk)
                missing = [k for k in c_keys if k not in u2s]
                if missing:
                    raise MissingIdError(f"{len(missing)} cohort id(s) of {args.cohort_scp} are not in "
                                   f"{args.cohort_utt2spk}: {', '.join(missing[:5])}")
                groups = np.array([u2s[k] for k in c_keys])
            elif ref is not None:
                r_norm = float(np.median(np.linalg.norm(ref, axis=1)))
                c_norm = float(np.median(np.linalg.norm(cohort, axis=1)))
                if not 0.5 < c_norm / max(r_norm, 1e-12) < 2.0:
                    print(f"WARNING: the cohort embeddings of {args.cohort_scp} (median norm {c_norm:.3g}) are not in "
                          f"the domain of {args.mean_scp} (median norm {r_norm:.3g}) whose mean is subtracted: "
                          "length-normalised speaker means? Pass utterance embeddings with --cohort-utt2spk",
                          file=sys.stderr)
            scores = asnorm_trials(emb, trials.enroll, trials.test, cohort, top_n=args.top_n, mean=mean,
                                   scale=scale, test_emb=test, source=source, block=args.block,
                                   cohort_groups=groups)
        else:
            scores = score_trials(emb, trials.enroll, trials.test, mean=mean, scale=scale, test_emb=test,
                                  source=source)
        if args.calibration:
            scores = apply_calibration(args.calibration, scores, trials.enroll, trials.test, args.utt2dur)
        names = ("nontarget", "target")
        with atomic_write(args.out_scores) as f:
            for i, (e, t, s) in enumerate(zip(trials.enroll, trials.test, scores)):
                label = f" {names[trials.labels[i]]}" if trials.labels is not None else ""
                f.write(f"{e} {t} {s:.6f}{label}\n")
        print(f"scored {len(scores)} trials -> {args.out_scores}")

    run_cli(work)


def apply_calibration(cal_path: str, scores, enroll: list[str], test: list[str], utt2dur: list[str]):
    """LLRs of ``scores`` with the calibration JSON ``cal_path`` (durations from ``utt2dur`` files)."""
    from sslspk.scoring.calibration import Calibration, quality_features, read_durations

    cal = Calibration.load(cal_path)
    quality = quality_features(enroll, test, read_durations(utt2dur)) if cal.weights else None
    return cal.apply(scores, quality)


if __name__ == "__main__":
    main(sys.argv[1:])
