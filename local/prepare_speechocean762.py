#!/usr/bin/env python3
"""Prepare Kaldi data dirs for speechocean762 (egs/speechocean762/v1 stage 0).

Usage: local/prepare_speechocean762.py [--dev-speakers N] CORPUS_DIR DATA_DIR

speechocean762 (Zhang et al., Interspeech 2021; OpenSLR resource 101) is read English by 250
native Mandarin speakers, about half of them children, 16 kHz, split by its authors into 125 train
and 125 other test speakers. Two layouts of CORPUS_DIR are read:

* the public release (``local/download_speechocean762.sh``): ``WAVE/SPEAKER<spk>/<utt>.WAV`` and
  ``{train,test}/utt2spk`` (20 utterances per speaker);
* the copy in ``../shared/data/speechocean762``: ``audio/SPEAKER<spk>/<utt>.flac``,
  ``{train,test}/utt2spk`` (12 + 8 utterances per speaker) and ``test/trials.txt``.

Utterance ids are the corpus's (``000010011``: speaker ``0001``, so utterances sort by speaker).
Outputs::

    DATA_DIR/train/{wav.scp,utt2spk,spk2utt}   the train speakers (labels: oracle and diagnostics only)
    DATA_DIR/test/{wav.scp,utt2spk,spk2utt}    the test speakers
    DATA_DIR/test/trials                        test/trials.txt as it is (``1|0 <enroll> <test>``), or
                                                every same-speaker pair and four times as many
                                                different-speaker pairs (seed 0) when it is absent
    DATA_DIR/train_dev/..., DATA_DIR/dev/...     with --dev-speakers N: N train speakers (seed 0) held
                                                out as a dev set (dev/trials: its pairs, as above) and
                                                the others (train_dev), to choose hyper-parameters
                                                without the test speakers
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sslspk.data.tables import MANAGED_FILES, write_core_tables  # noqa: E402
from sslspk.data.trials import count_pairs, sample_trials, write_trials  # noqa: E402
from sslspk.utils.errors import InputError  # noqa: E402
from sslspk.utils.fileio import FormatError, check_outputs_are_not_inputs, dir_and_files, read_table  # noqa: E402

AUDIO_LAYOUTS = (("audio", ".flac"), ("WAVE", ".WAV"), ("WAVE", ".wav"))


def read_utt2spk(path: Path) -> dict[str, str]:
    """``{utt: speaker}`` of a corpus ``utt2spk`` (errors name the file and line)."""
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: is {path.parent.parent} speechocean762?")
    try:
        return {u: f[0] for u, f in read_table(path, 2, 2).items()}
    except FormatError as e:
        raise SystemExit(f"error: {e}") from e


def audio_paths(corpus: Path, utt2spk: dict[str, str]) -> dict[str, str]:
    """Absolute audio path of every utterance, in the first layout of :data:`AUDIO_LAYOUTS` that has them."""
    for folder, ext in AUDIO_LAYOUTS:
        paths = {u: corpus / folder / f"SPEAKER{s}" / f"{u}{ext}" for u, s in utt2spk.items()}
        missing = [u for u, p in paths.items() if not p.is_file()]
        if not missing:
            return {u: str(p.resolve()) for u, p in paths.items()}
        if len(missing) < len(paths):
            raise SystemExit(f"error: {len(missing)} of {len(paths)} audio files missing below {corpus / folder}, "
                             f"e.g. {paths[missing[0]]}")
    raise SystemExit(f"error: no audio below {corpus} (expected audio/SPEAKER<spk>/<utt>.flac or "
                     "WAVE/SPEAKER<spk>/<utt>.WAV)")


def write_speaker_trials(path: Path, utt2spk: dict[str, str]) -> int:
    """Every same-speaker pair and four times as many different-speaker ones (seed 0); returns the count."""
    num_target, num_nontarget = count_pairs(utt2spk)
    trials = sample_trials(utt2spk, num_target, min(4 * num_target, num_nontarget), seed=0)
    write_trials(path, trials)
    return len(trials)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", type=Path, help="speechocean762 (train/, test/ and audio/ or WAVE/ below it)")
    p.add_argument("data_dir", type=Path, help="where the Kaldi data dirs go (e.g. data/so762)")
    p.add_argument("--dev-speakers", type=int, default=0, help="train speakers held out as a dev set (0: none)")
    args = p.parse_args(argv)
    try:
        corpus = ("utt2spk", "trials.txt")
        check_outputs_are_not_inputs(
            [f for split in ("train", "test") for f in dir_and_files(args.corpus_dir / split, corpus)],
            [f for split in ("train", "test", "dev", "train_dev") for f in dir_and_files(args.data_dir / split,
                                                                                          MANAGED_FILES)])
    except InputError as e:
        raise SystemExit(f"error: {e}") from e
    for split in ("train", "test"):
        utt2spk = read_utt2spk(args.corpus_dir / split / "utt2spk")
        write_core_tables(args.data_dir / split, audio_paths(args.corpus_dir, utt2spk), utt2spk)
        print(f"speechocean762 {split}: {len(utt2spk)} utts, {len(set(utt2spk.values()))} speakers "
              f"-> {args.data_dir / split}")
    official = args.corpus_dir / "test" / "trials.txt"
    if official.is_file():
        shutil.copyfile(official, args.data_dir / "test" / ".trials.tmp")
        (args.data_dir / "test" / ".trials.tmp").replace(args.data_dir / "test" / "trials")
        print(f"trials: {official} -> {args.data_dir / 'test' / 'trials'}")
    else:
        n = write_speaker_trials(args.data_dir / "test" / "trials", read_utt2spk(args.corpus_dir / "test" / "utt2spk"))
        print(f"trials: {n} pairs of the test speakers -> {args.data_dir / 'test' / 'trials'}")
    if args.dev_speakers:
        utt2spk = read_utt2spk(args.corpus_dir / "train" / "utt2spk")
        spks = sorted(set(utt2spk.values()))
        if not 2 <= args.dev_speakers < len(spks):
            raise SystemExit(f"error: --dev-speakers must be in [2, {len(spks) - 1}], got {args.dev_speakers}")
        dev = set(random.Random(0).sample(spks, args.dev_speakers))
        paths = audio_paths(args.corpus_dir, utt2spk)
        for name, keep in (("dev", True), ("train_dev", False)):
            sub = {u: s for u, s in utt2spk.items() if (s in dev) == keep}
            write_core_tables(args.data_dir / name, {u: paths[u] for u in sub}, sub)
        n = write_speaker_trials(args.data_dir / "dev" / "trials", {u: s for u, s in utt2spk.items() if s in dev})
        print(f"dev: {args.dev_speakers} train speakers held out -> {args.data_dir / 'dev'} ({n} trials), "
              f"the other {len(spks) - args.dev_speakers} -> {args.data_dir / 'train_dev'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
