#!/usr/bin/env python3
"""Convert utt2spk to spk2utt: ``utt2spk_to_spk2utt.py [utt2spk] > spk2utt`` (stdin if no file).

Speakers appear in order of first occurrence, utterances in input order (a sorted
utt2spk therefore gives the usual sorted spk2utt). Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO


def convert(lines: TextIO, name: str, out: TextIO) -> None:
    """Write ``<spk> <utt1> <utt2> ...`` lines for the ``<utt> <spk>`` lines read from ``lines``."""
    spk2utt: dict[str, list[str]] = {}
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{name}:{n}: expected '<utt> <spk>', got {line.rstrip()!r}")
        spk2utt.setdefault(fields[1], []).append(fields[0])
    for spk, utts in spk2utt.items():
        out.write(f"{spk} {' '.join(utts)}\n")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and convert; a malformed line prints ``ERROR: file:line: ...`` and exits 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("utt2spk", nargs="?", help="input file (default: stdin)")
    args = parser.parse_args(argv)
    try:
        if args.utt2spk is None:
            convert(sys.stdin, "<stdin>", sys.stdout)
        else:
            with open(args.utt2spk, encoding="utf-8") as f:
                convert(f, args.utt2spk, sys.stdout)
    except (ValueError, OSError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
