#!/usr/bin/env python3
"""Make a Kaldi trial list (``<enroll> <test> target|nontarget``) from an ``utt2spk`` file.

Usage: utils/make_trials.py [--num-target N] [--num-nontarget M] [--seed S] utt2spk trials

Without counts every unordered pair of distinct utterances is written (n(n-1)/2 lines: small
sets only). With ``--num-target`` / ``--num-nontarget`` that many distinct pairs of each kind are
sampled uniformly (deterministic for a given ``--seed``). Pairs are written sorted, enroll < test.
"""

from __future__ import annotations

import argparse
import random
import sys
from itertools import combinations
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sslspk.utils.fileio import FormatError, atomic_write, read_table  # noqa: E402


def all_pairs(utt2spk: dict[str, str]) -> list[tuple[str, str, str]]:
    """Every unordered pair of distinct utterances with its label."""
    return [(a, b, "target" if utt2spk[a] == utt2spk[b] else "nontarget") for a, b in combinations(sorted(utt2spk), 2)]


def sample_pairs(utt2spk: dict[str, str], num_target: int, num_nontarget: int, seed: int) -> list[tuple[str, str, str]]:
    """``num_target`` same-speaker and ``num_nontarget`` different-speaker distinct pairs, sampled uniformly.

    Raises ValueError when fewer pairs of a kind exist than requested.
    """
    utts = sorted(utt2spk)
    by_spk: dict[str, list[str]] = {}
    for u in utts:
        by_spk.setdefault(utt2spk[u], []).append(u)
    n = len(utts)
    n_tgt = sum(len(v) * (len(v) - 1) // 2 for v in by_spk.values())
    n_non = n * (n - 1) // 2 - n_tgt
    if num_target > n_tgt or num_nontarget > n_non:
        raise ValueError(f"asked for {num_target} target / {num_nontarget} nontarget pairs, "
                         f"but only {n_tgt} / {n_non} exist")
    rng = random.Random(seed)
    spks = sorted(by_spk)
    weights = [len(by_spk[s]) * (len(by_spk[s]) - 1) // 2 for s in spks]
    chosen: set[tuple[str, str]] = set()
    if num_target > n_tgt // 2:  # dense: enumerate, then sample
        pool = [(a, b) for s in spks for a, b in combinations(by_spk[s], 2)]
        chosen.update(rng.sample(pool, num_target))
    else:                         # sparse: rejection sampling of pairs, uniform over target pairs
        while len(chosen) < num_target:
            s = rng.choices(spks, weights)[0]
            a, b = sorted(rng.sample(by_spk[s], 2))
            chosen.add((a, b))
    targets = set(chosen)
    if num_nontarget > n_non // 2:
        pool = [(a, b) for a, b in combinations(utts, 2) if utt2spk[a] != utt2spk[b]]
        chosen.update(rng.sample(pool, num_nontarget))
    else:
        while len(chosen) - len(targets) < num_nontarget:
            a, b = sorted(rng.sample(utts, 2))
            if utt2spk[a] != utt2spk[b]:
                chosen.add((a, b))
    return [(a, b, "target" if utt2spk[a] == utt2spk[b] else "nontarget") for a, b in sorted(chosen)]


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
        utt2spk = {u: f[0] for u, f in read_table(args.utt2spk, 2, 2).items()}
    except (FormatError, OSError) as e:
        raise SystemExit(f"error: {e}") from e
    if (args.num_target is None) != (args.num_nontarget is None):
        raise SystemExit("error: give both --num-target and --num-nontarget, or neither (all pairs)")
    try:
        trials = (all_pairs(utt2spk) if args.num_target is None
                  else sample_pairs(utt2spk, args.num_target, args.num_nontarget, args.seed))
    except ValueError as e:
        raise SystemExit(f"error: {args.utt2spk}: {e}") from e
    with atomic_write(args.trials) as f:
        f.writelines(f"{a} {b} {lab}\n" for a, b, lab in trials)
    n_tgt = sum(lab == "target" for *_, lab in trials)
    print(f"make_trials: wrote {args.trials} ({len(trials)} trials, {n_tgt} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
