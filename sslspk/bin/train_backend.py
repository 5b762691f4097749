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
An ``--lda-dim`` above the embeddings' dimension is lowered to it (LDA without reduction), with a note: one
recipe's systems may differ in dimension under one ``--lda-dim``.
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
        from sslspk.scoring.plda import train_backend_files

        train_backend_files(args.emb_scp, args.utt2spk, args.out_model, lda_dims=args.lda_dim,
                            dev_trials=args.dev_trials, dev_scp=args.dev_scp, num_em_iters=args.num_em_iters,
                            labels_of=args.labels)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
