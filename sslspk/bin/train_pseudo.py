#!/usr/bin/env python3
"""Supervised training on pseudo speaker labels (AAM-softmax, optional DLG-LC).

Usage: train_pseudo.py --config conf/pseudo.yaml --data data/train_pl_iter1 --exp-dir exp/pl_iter1
                       [--init exp/ssl] [--ref-utt2spk data/train/utt2spk] [--force]

Labels are the speakers of DATA's utt2spk: clustering output for pseudo-labels, or the true
speakers for the supervised (oracle) reference. --init starts from a trained model dir (the SSL
model, or the previous iteration) and inherits its model block; a WavLM config instead names
its pretrained checkpoint in model.pretrained. --ref-utt2spk (true speakers) is used only for
diagnostics (how many DLG-LC corrections were right). Resumes like train_ssl.py.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML with data, loss, train (+ model, init, finetune, dlg_lc)")
    p.add_argument("--data", required=True, help="Kaldi data dir whose utt2spk holds the (pseudo) labels")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--init", help="model dir to initialise the encoder from (inherits its model block)")
    p.add_argument("--ref-utt2spk", help="true speakers, for diagnostics only")
    p.add_argument("--force", action="store_true", help="train again even if EXP_DIR/model.pt exists")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.experiment import train_from_config
        from sslspk.train.distributed import die_with_launcher

        die_with_launcher()   # a kill -9 of the launcher stops this worker too
        train_from_config(args.config, args.data, args.exp_dir, kind="pseudo", force=args.force,
                          init=args.init, ref_utt2spk=args.ref_utt2spk)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
