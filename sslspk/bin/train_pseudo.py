#!/usr/bin/env python3
"""Supervised training on pseudo speaker labels (AAM-softmax, optional DLG-LC).

Usage: train_pseudo.py --config conf/pseudo.yaml --data data/train_pl_iter1 --exp-dir exp/pl_iter1
                       [--init exp/ssl] [--ref-utt2spk data/train/utt2spk] [--force]
                       [--set KEY.PATH=VALUE ...] [--print-config]

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
    p.add_argument("--data", help="Kaldi data dir whose utt2spk holds the (pseudo) labels "
                                  "(required unless --print-config)")
    p.add_argument("--exp-dir", help="experiment dir (required unless --print-config)")
    p.add_argument("--init", help="model dir to initialise the encoder from (inherits its model block)")
    p.add_argument("--ref-utt2spk", help="true speakers, for diagnostics only")
    p.add_argument("--force", action="store_true",
                   help="train again even if EXP_DIR/model.pt exists, or EXP_DIR holds a training with another config")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                   help="override a config value (VALUE read as YAML, checked like the YAML; repeatable), "
                        "e.g. --set train.lr=2e-5 --set model.head=mhfa; EXP_DIR/config.yaml records the result")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged, checked config with its defaults as YAML and exit (writes nothing)")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    if not args.print_config and (args.data is None or args.exp_dir is None):
        p.error("--data and --exp-dir are required (unless --print-config)")

    def work() -> None:
        from sslspk.experiment import print_config, train_from_config
        from sslspk.train.distributed import die_with_launcher

        if args.print_config:
            print_config(args.config, "pseudo", args.overrides, args.init)
            return
        die_with_launcher()   # a kill -9 of the launcher stops this worker too
        train_from_config(args.config, args.data, args.exp_dir, kind="pseudo", force=args.force,
                          init=args.init, ref_utt2spk=args.ref_utt2spk, overrides=args.overrides)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
