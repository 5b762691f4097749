#!/usr/bin/env python3
"""Same speaker or not? Cosine score of two recordings and a decision; prints JSON.

Usage: verify.py [--threshold T] [--device cpu] MODEL AUDIO_A AUDIO_B

The threshold is --threshold, else MODEL/threshold.json (``SpeakerEmbedder.calibrate_threshold``);
without either, only the score is printed (``"same_speaker": null``).
Prints ``{"score": s, "threshold": t, "same_speaker": true|false|null}``. AUDIO_A and AUDIO_B are
file paths, never run as commands (only wav.scp entries are pipes).
Audio with no speech (no 25 ms frame at -60 dBFS or louder: silence, dither, a noise floor) is an
error, not a score: two near-silent files would otherwise score as the same speaker.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("audio_a")
    p.add_argument("audio_b")
    p.add_argument("--threshold", type=float)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        import json

        from sslspk.api import verify_files

        print(json.dumps(verify_files(args.model, args.audio_a, args.audio_b, args.threshold, args.device)))

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
