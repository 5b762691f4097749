#!/usr/bin/env python3
"""Self-supervised training of a speaker encoder (DINO, SimCLR, MoCo; optional SSPS).

Usage: train_ssl.py --config conf/ssl.yaml --data data/train --exp-dir exp/ssl [--force true]
       [--set KEY.PATH=VALUE ...] [--print-config]

Launch through steps/train.sh (torchrun) for several GPUs/nodes; alone it trains in one
process. The config is validated before any work and copied to EXP_DIR/config.yaml; training
resumes from the latest checkpoint of EXP_DIR; a finished run (EXP_DIR/model.pt) is not redone
unless --force true. Logs: EXP_DIR/train.log and EXP_DIR/tensorboard/.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from sslspk.bin.training_cli import run_training, training_parser

    p = training_parser(__doc__, "YAML with sample_rate, model, data, ssl, train blocks",
                        "Kaldi data dir of the (unlabelled) training audio")
    run_training(p, p.parse_args(argv), "ssl")


if __name__ == "__main__":
    main(sys.argv[1:])
