#!/usr/bin/env python3
"""Make a Kaldi trial list (``<enroll> <test> target|nontarget``) from an ``utt2spk`` file.

Usage: utils/make_trials.py [--num-target N] [--num-nontarget M] [--seed S] utt2spk trials

Without counts every unordered pair of distinct utterances is written (n(n-1)/2 lines: small
sets only). With ``--num-target`` / ``--num-nontarget`` that many distinct pairs of each kind are
sampled uniformly (deterministic for a given ``--seed``; ``sslspk.data.trials.sample_trials``, which
also makes the mini corpus's list). Pairs are written sorted, enroll < test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sslspk.data.trials import sample_trials, write_trials  # noqa: E402
from sslspk.utils.errors import InputError  # noqa: E402
from sslspk.utils.fileio import check_outputs_are_not_inputs, read_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("utt2spk")
    p.add_argument("trials")
    p.add_argument("--num-target", type=int, help="sampled same-speaker pairs (default: all pairs)")
    p.add_argument("--num-nontarget", type=int, help="sampled different-speaker pairs (default: all pairs)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    args = p.parse_args(argv)
    try:
        check_outputs_are_not_inputs([args.utt2spk], [args.trials])
        utt2spk = {u: f[0] for u, f in read_table(args.utt2spk, 2, 2).items()}
    except (InputError, OSError) as e:
        raise SystemExit(f"error: {e}") from e
    if (args.num_target is None) != (args.num_nontarget is None):
        raise SystemExit("error: give both --num-target and --num-nontarget, or neither (all pairs)")
    try:
        trials = sample_trials(utt2spk, args.num_target, args.num_nontarget, args.seed)
    except ValueError as e:
        raise SystemExit(f"error: {args.utt2spk}: {e}") from e
    write_trials(args.trials, trials)
    print(f"make_trials: wrote {args.trials} ({len(trials)} trials, {trials.num_target} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
