#!/usr/bin/env python3
"""Supervised training on pseudo speaker labels (AAM-softmax, optional DLG-LC).

Usage: train_pseudo.py --config conf/pseudo.yaml --data data/train_pl_iter1 --exp-dir exp/pl_iter1
                       [--init exp/ssl] [--ref-utt2spk data/train/utt2spk] [--force true]
                       [--set KEY.PATH=VALUE ...] [--print-config]

Labels are the speakers of DATA's utt2spk: clustering output for pseudo-labels, or the true
speakers for the supervised (oracle) reference. --init starts from a trained model dir (the SSL
model, or the previous iteration) and inherits its model block; a WavLM config instead names
its pretrained checkpoint in model.pretrained. --ref-utt2spk (true speakers) is used only for
diagnostics (how many DLG-LC corrections were right). Resumes like train_ssl.py.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from sslspk.bin.training_cli import run_training, training_parser

    p = training_parser(__doc__, "YAML with data, loss, train (+ model, init, finetune, dlg_lc)",
                        "Kaldi data dir whose utt2spk holds the (pseudo) labels")
    p.add_argument("--init", help="model dir to initialise the encoder from (inherits its model block)")
    p.add_argument("--ref-utt2spk", help="true speakers, for diagnostics only")
    args = p.parse_args(argv)
    run_training(p, args, "pseudo", init=args.init, ref_utt2spk=args.ref_utt2spk)


if __name__ == "__main__":
    main(sys.argv[1:])
