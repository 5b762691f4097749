"""The scoring of a trial list from embedding scps, as ``bin/score.py`` runs it: normalisation, AS-norm,
PLDA/LDA back-ends, the authors' segment protocol and calibration (see :func:`score_trial_list`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from sslspk.data.embeddings import check_same_dim, load_embeddings
from sslspk.data.trials import Trials, read_trials
from sslspk.scoring.calibration import apply_calibration
from sslspk.scoring.cosine import present_trials, score_trials
from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs


def score_trial_list(trials_file: str, enroll_scp: str, out_scores: str, *, test_scp: str | None = None,
                     mean_scp: str | None = None, var_norm: bool = False, cohort_scp: str | None = None,
                     cohort_utt2spk: str | None = None, top_n: int = 300, block: int = 4096,
                     segments_scp: str | None = None, backend: str = "cosine", backend_model: str | None = None,
                     calibration: str | None = None, utt2dur: Sequence[str] = (), drop_bad_trials: bool = False,
                     skip_missing: bool = False) -> int:
    """Score the trials of ``trials_file`` with the embeddings of ``enroll_scp`` (and ``test_scp``) into
    ``out_scores`` (``<enroll> <test> <score> [label]`` lines, written atomically); returns (and prints) the
    number of trials scored. The options are those of ``bin/score.py`` (its ``--help`` says what each does);
    InputError on options that do not combine, MissingIdError on trials without embeddings."""
    if segments_scp and (test_scp or mean_scp or var_norm or cohort_scp):
        raise InputError("--segments-scp is the authors' protocol (no mean subtraction, no AS-norm, one scp of "
                         "both sides): not combinable with --test-scp, --mean-scp, --var-norm or --cohort-scp")
    if (backend == "cosine") == bool(backend_model):
        raise InputError("--backend plda|lda-cosine needs --backend-model, and --backend-model needs one of them")
    if backend != "cosine" and (mean_scp or var_norm or cohort_scp or segments_scp):
        raise InputError(f"--backend {backend} uses the normalisation of its --backend-model: not combinable "
                         "with --mean-scp, --var-norm, --cohort-scp or --segments-scp")
    check_outputs_are_not_inputs([trials_file, enroll_scp, test_scp, mean_scp, cohort_scp,
                                  cohort_utt2spk, calibration, segments_scp, backend_model,
                                  *utt2dur], [out_scores])
    trials = read_trials(trials_file, drop_bad_trials)
    emb = load_embeddings(enroll_scp)
    test = load_embeddings(test_scp) if test_scp else None
    source = f"{enroll_scp}" + (f" / {test_scp}" if test else "")
    if segments_scp:
        from sslspk.scoring.segments import load_segment_means

        segment_means = load_segment_means(segments_scp)
    if skip_missing:
        keys = emb[0] if not segments_scp else sorted(set(emb[0]) & set(segment_means[0]))
        keep = present_trials(trials.enroll, trials.test, keys, test[0] if test else None)
        n_miss = int((~keep).sum())
        if n_miss:
            if not keep.any():
                raise MissingIdError(f"none of the {len(trials)} trials of {trials_file} have embeddings "
                                     f"in {source}")
            print(f"WARNING: skipping {n_miss} of {len(trials)} trials of {trials_file} "
                  f"with no embedding in {source}", file=sys.stderr)
            idx = np.flatnonzero(keep)
            trials = Trials([trials.enroll[i] for i in idx], [trials.test[i] for i in idx],
                            None if trials.labels is None else trials.labels[idx])
    if var_norm and not mean_scp:
        raise InputError("--var-norm needs --mean-scp (the embeddings to take the statistics from)")
    ref = load_embeddings(mean_scp)[1].astype("float64") if mean_scp else None
    c_keys, cohort = load_embeddings(cohort_scp) if cohort_scp else (None, None)
    dims = {enroll_scp: emb[1].shape[1]}   # every set that meets the enrollment side
    for path, mat in ((test_scp, test[1] if test else None), (mean_scp, ref), (cohort_scp, cohort),
                      (segments_scp, segment_means[1] if segments_scp else None)):
        if path:
            dims[path] = mat.shape[1]
    check_same_dim(dims)
    mean = ref.mean(axis=0) if ref is not None else None
    scale = ref.std(axis=0) if var_norm else None
    if backend != "cosine":
        from sslspk.scoring.plda import Backend

        scores = Backend.load(backend_model).score_trials(backend, emb, trials.enroll, trials.test,
                                                               test_emb=test, source=source)
    elif segments_scp:
        from sslspk.scoring.segments import full_and_segments_scores

        scores = full_and_segments_scores(emb, segment_means, trials.enroll, trials.test, source)
    elif cohort_scp:
        from sslspk.scoring.asnorm import asnorm_trials

        groups = None
        if cohort_utt2spk:
            from sslspk.utils.fileio import read_kv

            u2s = read_kv(cohort_utt2spk)
            missing = [k for k in c_keys if k not in u2s]
            if missing:
                raise MissingIdError(f"{len(missing)} cohort id(s) of {cohort_scp} are not in "
                               f"{cohort_utt2spk}: {', '.join(missing[:5])}")
            groups = np.array([u2s[k] for k in c_keys])
        elif ref is not None:
            r_norm = float(np.median(np.linalg.norm(ref, axis=1)))
            c_norm = float(np.median(np.linalg.norm(cohort, axis=1)))
            if not 0.5 < c_norm / max(r_norm, 1e-12) < 2.0:
                print(f"WARNING: the cohort embeddings of {cohort_scp} (median norm {c_norm:.3g}) are not in "
                      f"the domain of {mean_scp} (median norm {r_norm:.3g}) whose mean is subtracted: "
                      "length-normalised speaker means? Pass utterance embeddings with --cohort-utt2spk",
                      file=sys.stderr)
        scores = asnorm_trials(emb, trials.enroll, trials.test, cohort, top_n=top_n, mean=mean,
                               scale=scale, test_emb=test, source=source, block=block,
                               cohort_groups=groups)
    else:
        scores = score_trials(emb, trials.enroll, trials.test, mean=mean, scale=scale, test_emb=test,
                              source=source)
    if calibration:
        scores = apply_calibration(calibration, scores, trials.enroll, trials.test, utt2dur)
    names = ("nontarget", "target")
    with atomic_write(out_scores) as f:
        for i, (e, t, s) in enumerate(zip(trials.enroll, trials.test, scores)):
            label = f" {names[trials.labels[i]]}" if trials.labels is not None else ""
            f.write(f"{e} {t} {s:.6f}{label}\n")
    print(f"scored {len(scores)} trials -> {out_scores}")
    return len(scores)
