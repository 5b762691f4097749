#!/usr/bin/env python3
"""Convert spk2utt to utt2spk: ``spk2utt_to_utt2spk.py [spk2utt] > utt2spk`` (stdin if no file).

Utterances are written in input order (pipe through ``LC_ALL=C sort`` if the speaker
ids are not prefixes of the utterance ids). Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO


def convert(lines: TextIO, name: str, out: TextIO) -> None:
    """Write ``<utt> <spk>`` lines for the ``<spk> <utt1> <utt2> ...`` lines read from ``lines``."""
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) < 2:
            raise ValueError(f"{name}:{n}: expected '<spk> <utt1> [<utt2> ...]', got {line.rstrip()!r}")
        for utt in fields[1:]:
            out.write(f"{utt} {fields[0]}\n")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and convert; a malformed line prints ``ERROR: file:line: ...`` and exits 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spk2utt", nargs="?", help="input file (default: stdin)")
    args = parser.parse_args(argv)
    try:
        if args.spk2utt is None:
            convert(sys.stdin, "<stdin>", sys.stdout)
        else:
            with open(args.spk2utt, encoding="utf-8") as f:
                convert(f, args.spk2utt, sys.stdout)
    except (ValueError, OSError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
