#!/usr/bin/env python3
"""Export the encoder of an experiment dir to TorchScript (.pt/.ts) or ONNX (.onnx).

Usage: export_model.py [--example-seconds 2] [--no-check] EXP_DIR OUT.{pt,ts,onnx}

The format follows OUT's suffix. The exported model maps a waveform ``[1, T]`` at the
config's sample rate to ``[1, D]`` (batch size 1; any T). After export, embeddings of the
exported and the PyTorch model are compared (max abs difference printed; error above 1e-3).
ONNX needs ``pip install 'sslspk[export]'``; Kaldi fbank/MFCC front-ends do not export to ONNX
(see sslspk/export.py).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dir")
    p.add_argument("out")
    p.add_argument("--example-seconds", type=float, default=2.0, help="length of the tracing example")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.export import export_model_dir

        export_model_dir(args.exp_dir, args.out, args.example_seconds, args.no_check)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
