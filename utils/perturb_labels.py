#!/usr/bin/env python3
"""Copy a Kaldi data dir with a fraction of its speaker labels moved to random other speakers.

Usage: utils/perturb_labels.py [--fraction F] [--seed S] <src-data-dir> <dest-data-dir>

``round(F x #utts)`` utterances, drawn uniformly without replacement, each get a speaker drawn
uniformly among the *other* speakers of the data dir; every other table is copied unchanged and
``spk2utt`` is rebuilt. Deterministic for a given ``--seed``. For studies of training on labels of
known lowered quality (e.g. DLG-LC on vs off: docs/results.md); the utterances moved are listed
in ``<dest-data-dir>/perturbed_utts``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def perturb(utt2spk: dict[str, str], fraction: float, seed: int) -> dict[str, str]:
    """``utt2spk`` with ``round(fraction * n)`` random utterances moved to a random other speaker."""
    import numpy as np

    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    utts = sorted(utt2spk)
    spks = sorted(set(utt2spk.values()))
    num = int(round(fraction * len(utts)))
    if num and len(spks) < 2:
        raise ValueError("need at least 2 speakers to move labels")
    rng = np.random.default_rng(seed)
    out = dict(utt2spk)
    index = {s: i for i, s in enumerate(spks)}
    for i in np.sort(rng.choice(len(utts), size=num, replace=False)):
        u = utts[int(i)]
        j = int(rng.integers(len(spks) - 1))             # an index among the other speakers
        out[u] = spks[j + (j >= index[utt2spk[u]])]
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("--fraction", type=float, default=0.4, help="fraction of utterances relabelled (default 0.4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)

    import dataclasses

    from sslspk.data.datadir import DataDir
    from sslspk.data.tables import MANAGED_FILES
    from sslspk.utils.errors import InputError
    from sslspk.utils.fileio import FormatError, atomic_write, check_outputs_are_not_inputs, dir_and_files

    try:
        check_outputs_are_not_inputs(dir_and_files(args.src, MANAGED_FILES),
                                     dir_and_files(args.dest, (*MANAGED_FILES, "perturbed_utts")))
    except InputError as e:
        raise SystemExit(f"error: {e}") from e
    try:
        src = DataDir.load(args.src)
        new = perturb(src.utt2spk, args.fraction, args.seed)
    except (FormatError, OSError, ValueError) as e:
        raise SystemExit(f"error: {args.src}: {e}") from e
    dataclasses.replace(src, utt2spk=new).save(args.dest)
    moved = [u for u in sorted(new) if new[u] != src.utt2spk[u]]
    with atomic_write(Path(args.dest) / "perturbed_utts") as f:
        f.writelines(u + "\n" for u in moved)
    print(f"perturb_labels: {len(moved)} of {len(new)} utterances moved to another speaker -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
