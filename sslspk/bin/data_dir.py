#!/usr/bin/env python3
"""Kaldi data directory tools: validate, fix, split, split-scp, combine, subset, utt2dur.

Wrapped by utils/{validate_data_dir,fix_data_dir,split_data,split_scp,combine_data,
subset_data_dir,compute_utt2dur}.sh.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence


def _validate(args: argparse.Namespace) -> int:
    from sslspk.data.validate import validate_report

    return 0 if validate_report(args.dir, check_audio=args.check_audio, nj=args.nj) else 1


def _fix(args: argparse.Namespace) -> int:
    from sslspk.data.ops import fix_data_dir

    print(fix_data_dir(args.dir))
    return 0


def _split(args: argparse.Namespace) -> int:
    from sslspk.data.ops import split_data

    split_data(args.dir, args.nj, per_spk=args.per_spk)
    return 0


def _split_scp(args: argparse.Namespace) -> int:
    from sslspk.data.ops import split_scp

    split_scp(args.input, args.outputs)
    return 0


def _combine(args: argparse.Namespace) -> int:
    from sslspk.data.ops import combine_data

    dd = combine_data(args.dest, args.srcs)
    print(f"combine: wrote {args.dest} ({len(dd.utt2spk)} utts from {len(args.srcs)} dirs)")
    return 0


def _subset(args: argparse.Namespace) -> int:
    from sslspk.data.ops import subset_data_dir

    dd = subset_data_dir(args.src, args.dest, first=args.first, last=args.last, random=args.random,
                         seed=args.seed, per_spk=args.per_spk, utt_list=args.utt_list, spk_list=args.spk_list)
    print(f"subset: wrote {args.dest} ({len(dd.utt2spk)} utts, {len(dd.spks)} speakers)")
    return 0


def _utt2dur(args: argparse.Namespace) -> int:
    from sslspk.data.durations import compute_utt2dur

    dd = compute_utt2dur(args.dir, nj=args.nj)
    total = sum((dd.utt2dur or {}).values())
    print(f"utt2dur: wrote {args.dir}/utt2dur and utt2num_samples ({len(dd.utt2spk)} utts, {total / 3600:.2f} h)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per tool."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a data dir; exit 1 listing every problem")
    p.add_argument("--check-audio", action="store_true", help="also read every wav.scp entry (pipes are run)")
    p.add_argument("--nj", type=int, default=1, help="threads for --check-audio")
    p.add_argument("dir")
    p.set_defaults(func=_validate)

    p = sub.add_parser("fix", help="sort, keep utts present in all files, regenerate spk2utt (backup in DIR/.backup)")
    p.add_argument("dir")
    p.set_defaults(func=_fix)

    p = sub.add_parser("split", help="write DIR/splitNJ/{1..NJ} sub-data-dirs (reused when up to date)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--per-utt", dest="per_spk", action="store_false", help="split utterances (default)")
    mode.add_argument("--per-spk", dest="per_spk", action="store_true", help="keep each speaker in one part")
    p.add_argument("dir")
    p.add_argument("nj", type=int)
    p.set_defaults(func=_split, per_spk=False)

    p = sub.add_parser("split-scp", help="split the lines of a table into N contiguous files")
    p.add_argument("input")
    p.add_argument("outputs", nargs="+")
    p.set_defaults(func=_split_scp)

    p = sub.add_parser("combine", help="combine data dirs (utt ids must be unique)")
    p.add_argument("dest")
    p.add_argument("srcs", nargs="+")
    p.set_defaults(func=_combine)

    p = sub.add_parser("subset", help="copy a subset of utts (and their recordings, trials) to DEST")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--first", type=int, metavar="N", help="first N utts (sorted order)")
    how.add_argument("--last", type=int, metavar="N", help="last N utts (sorted order)")
    how.add_argument("--random", type=int, metavar="N", help="N random utts (see --seed)")
    how.add_argument("--utt-list", metavar="FILE", help="utts listed in FILE (first field per line)")
    how.add_argument("--spk-list", metavar="FILE", help="all utts of the speakers listed in FILE")
    p.add_argument("--seed", type=int, default=0, help="random seed for --random (default 0)")
    p.add_argument("--per-spk", action="store_true",
                   help="with --random N: whole random speakers until they hold at least N utts")
    p.add_argument("src")
    p.add_argument("dest")
    p.set_defaults(func=_subset)

    p = sub.add_parser("utt2dur", help="write DIR/utt2dur and DIR/utt2num_samples from the audio")
    p.add_argument("--nj", type=int, default=1, help="threads (pipes are decoded)")
    p.add_argument("dir")
    p.set_defaults(func=_utt2dur)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one sub-command; known errors print ``ERROR: ...`` and exit 1 without a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from sslspk.utils.errors import SslspkError

    try:
        code = args.func(args)
    except (SslspkError, OSError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
