#!/usr/bin/env python3
"""Self-supervised training of a speaker encoder (DINO, SimCLR, MoCo; optional SSPS).

Usage: train_ssl.py --config conf/ssl.yaml --data data/train --exp-dir exp/ssl [--force]

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
    p.add_argument("--data", required=True, help="Kaldi data dir of the (unlabelled) training audio")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--force", action="store_true", help="train again even if EXP_DIR/model.pt exists")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.experiment import train_from_config
        from sslspk.train.distributed import die_with_launcher

        die_with_launcher()   # a kill -9 of the launcher stops this worker too
        train_from_config(args.config, args.data, args.exp_dir, kind="ssl", force=args.force)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
