#!/usr/bin/env python3
"""Self-supervised training of a speaker encoder (DINO, SimCLR, MoCo; optional SSPS).

Usage: train_ssl.py --config conf/ssl.yaml --data data/train --exp-dir exp/ssl [--force]
       [--set KEY.PATH=VALUE ...] [--print-config]

Launch through steps/train.sh (torchrun) for several GPUs/nodes; alone it trains in one
process. The config is validated before any work and copied to EXP_DIR/config.yaml; training
resumes from the latest checkpoint of EXP_DIR; a finished run (EXP_DIR/model.pt) is not redone
unless --force. Logs: EXP_DIR/train.log and EXP_DIR/tensorboard/.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML with sample_rate, model, data, ssl, train blocks")
    p.add_argument("--data", help="(required unless --print-config) Kaldi data dir of the (unlabelled) training audio")
    p.add_argument("--exp-dir", help="experiment dir (required unless --print-config)")
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
            print_config(args.config, "ssl", args.overrides)
            return
        die_with_launcher()   # a kill -9 of the launcher stops this worker too
        train_from_config(args.config, args.data, args.exp_dir, kind="ssl", force=args.force,
                          overrides=args.overrides)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
