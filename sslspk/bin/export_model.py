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
        from sslspk.export import ExportError, export_onnx, export_torchscript, max_abs_diff
        from sslspk.extraction import MODEL_FILES, load_encoder
        from sslspk.utils.errors import InputError
        from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files

        check_outputs_are_not_inputs(dir_and_files(args.exp_dir, MODEL_FILES), [args.out])

        model, cfg = load_encoder(args.exp_dir)
        n = int(args.example_seconds * cfg.get("sample_rate", 16000))
        if args.out.endswith(".onnx"):
            export_onnx(model, args.out, n)
        elif args.out.endswith((".pt", ".ts")):
            export_torchscript(model, args.out, n)
        else:
            raise InputError(f"{args.out}: suffix must be .pt, .ts (TorchScript) or .onnx")
        msg = f"exported {args.exp_dir} -> {args.out}"
        if not args.no_check:
            diff = max_abs_diff(model, args.out)
            if diff > 1e-3:
                raise ExportError(f"{args.out}: exported embeddings differ from PyTorch by {diff:.3g}")
            msg += f" (max |diff| vs PyTorch {diff:.2g})"
        print(msg)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
