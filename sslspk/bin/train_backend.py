#!/usr/bin/env python3
"""Train an LDA + PLDA back-end (kaldi-asr/kaldi:egs/voxceleb/v2/run.sh) on embeddings and speaker labels.

Usage: train_backend.py [--lda-dim 200 [N ...] --dev-trials T --dev-scp S] [--num-em-iters 10] [--labels TEXT]
                        EMB_SCP UTT2SPK OUT_MODEL

The training mean is subtracted, LDA (``ivector-compute-lda``, within-class covariance made unit)
reduces to ``--lda-dim`` dimensions (0: no LDA), the result is length-normalised to norm sqrt(dim), and a
two-covariance PLDA is trained by EM (``ivector-compute-plda``); see sslspk/scoring/plda.py. UTT2SPK gives
the labels: in the recipe, a pseudo-label data dir's (never the true labels of a label-free system).
Embeddings with no UTT2SPK entry are skipped (with their count, as Kaldi warns). OUT_MODEL (.npz) records
EMB_SCP, UTT2SPK and ``--labels`` (what the labels are); ``score.py --backend plda|lda-cosine`` uses it.
With several ``--lda-dim`` values, the one whose PLDA scores have the lowest EER on ``--dev-trials``
(embeddings ``--dev-scp``) is kept, and the model records each value's dev EER.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("emb_scp", help="training embeddings (e.g. the system's embeddings of the training data)")
    p.add_argument("utt2spk", help="their (pseudo-)speaker labels")
    p.add_argument("out_model", help="back-end model file (.npz)")
    p.add_argument("--lda-dim", type=int, nargs="+", default=[200],
                   help="LDA output dimension (default 200, Kaldi's egs/voxceleb/v2; 0: no LDA); several: "
                        "the best on --dev-trials")
    p.add_argument("--dev-trials", help="labelled trials choosing among several --lda-dim values")
    p.add_argument("--dev-scp", help="embeddings of the --dev-trials")
    p.add_argument("--num-em-iters", type=int, default=10, help="PLDA EM iterations (default 10, Kaldi's)")
    p.add_argument("--labels", default="",
                   help="what UTT2SPK holds (e.g. 'pseudo-labels of pl_iter2', 'true'), recorded in the model")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        import os

        from sslspk.data.embeddings import load_embeddings
        from sslspk.scoring.plda import train_backend, train_backend_on_dev
        from sslspk.utils.errors import InputError, MissingIdError
        from sslspk.utils.fileio import check_outputs_are_not_inputs, read_kv

        check_outputs_are_not_inputs([args.emb_scp, args.utt2spk, args.dev_trials, args.dev_scp], [args.out_model])
        if len(args.lda_dim) > 1 and not (args.dev_trials and args.dev_scp):
            raise InputError("several --lda-dim values need --dev-trials and --dev-scp to choose among them")
        keys, mat = load_embeddings(args.emb_scp)
        u2s = read_kv(args.utt2spk)
        rows = [i for i, k in enumerate(keys) if k in u2s]
        if not rows:
            raise MissingIdError(f"none of the {len(keys)} embeddings of {args.emb_scp} has a label in {args.utt2spk}")
        if len(rows) < len(keys):
            print(f"WARNING: {len(keys) - len(rows)} of the {len(keys)} embeddings of {args.emb_scp} have no label "
                  f"in {args.utt2spk}: skipped", file=sys.stderr)
        info = {"embeddings": os.path.abspath(args.emb_scp), "utt2spk": os.path.abspath(args.utt2spk),
                "labels": args.labels}
        x, labels = mat[rows], [u2s[keys[i]] for i in rows]
        if len(args.lda_dim) > 1:
            from sslspk.data.trials import read_trials

            dev = read_trials(args.dev_trials)
            if dev.labels is None:
                raise InputError(f"{args.dev_trials}: the dev trials need target/nontarget labels")
            backend = train_backend_on_dev(x, labels, args.lda_dim, load_embeddings(args.dev_scp), dev.enroll,
                                           dev.test, dev.labels, args.num_em_iters, info)
            print("dev EER by LDA dimension: " + ", ".join(f"{d} {100 * e:.2f}%"
                                                           for d, e in backend.info["dev_eer"].items()))
        else:
            backend = train_backend(x, labels, args.lda_dim[0], args.num_em_iters, info)
        backend.save(args.out_model)
        print(f"back-end of {backend.info['num_embeddings']} embeddings, {backend.info['num_speakers']} speakers "
              f"(LDA {backend.info['lda_dim'] or 'none'}, PLDA) -> {args.out_model}")

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
