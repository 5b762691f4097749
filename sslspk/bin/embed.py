#!/usr/bin/env python3
"""Embed audio files with a trained model; prints JSON.

Usage: embed.py [--device cpu] MODEL AUDIO ...

MODEL is an experiment dir (config.yaml + model.pt) or a checkpoint beside its config.yaml.
AUDIO are file paths: a path ending in '|' is a path too, never run as a command (only wav.scp
entries are pipes).
Prints ``{"model": ..., "sample_rate": ..., "dim": D, "embeddings": {"<audio>": [...], ...}}``.
Audio with no speech (no 25 ms frame at -60 dBFS or louder: silence, dither, a noise floor) is an
error naming the file. MODEL without model.pt (an unfinished training) is an error, unless its
model has no weights to learn or the dir holds an UNTRAINED file (initial weights on purpose).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("audio", nargs="+", help="audio files (any rate; resampled to the model's)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        import json

        from sslspk.api import embed_files

        print(json.dumps(embed_files(args.model, args.audio, args.device)))

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
