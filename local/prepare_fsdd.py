#!/usr/bin/env python3
"""Prepare Kaldi data dirs for the Free Spoken Digit Dataset (FSDD).

FSDD holds 3,000 real 8 kHz recordings ``{digit}_{speaker}_{take}.wav`` of 6 speakers.
Utterance ids follow the Kaldi convention of a speaker prefix,
``<speaker>-<digit>_<speaker>_<take>`` (e.g. ``george-0_george_0``), so utterances
sort by speaker.

Outputs::

    DATA_DIR/train/{wav.scp,utt2spk,spk2utt}   all recordings
    DATA_DIR/test/{wav.scp,utt2spk,spk2utt}    all recordings
    DATA_DIR/test/trials                        "<enroll-utt> <test-utt> target|nontarget"

FSDD is a sanity corpus for checking that the pipeline learns speaker identity from
real speech: train and test hold the *same* recordings (SSL training uses no labels,
but scores on it are not a held-out benchmark). The trials are converted from
``trials.txt`` (VoxCeleb format ``1|0 <enroll> <test>``, ids are file names without
``.wav``) beside the ``recordings`` folder; without it a deterministic list is made.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sslspk.data.tables import MANAGED_FILES, write_core_tables  # noqa: E402
from sslspk.data.trials import Trials, check_pairs, count_pairs, sample_trials, write_trials  # noqa: E402
from sslspk.utils.errors import InputError  # noqa: E402
from sslspk.utils.fileio import FormatError, check_outputs_are_not_inputs, dir_and_files, iter_lines  # noqa: E402

NAME_RE = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9]+)_(?P<take>\d+)$")


def find_recordings(corpus_dir: Path) -> Path:
    """The ``recordings`` folder: ``corpus_dir`` itself or ``corpus_dir/recordings``."""
    sub = corpus_dir / "recordings"
    return sub if sub.is_dir() else corpus_dir


def scan(rec_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Map natural ids (file stems) to absolute paths and speakers; report and skip odd names."""
    if not rec_dir.is_dir():
        raise SystemExit(f"error: FSDD recordings folder not found: {rec_dir}")
    paths: dict[str, str] = {}
    speakers: dict[str, str] = {}
    skipped = []
    for p in sorted(rec_dir.iterdir()):
        m = NAME_RE.match(p.stem) if p.suffix == ".wav" and p.is_file() else None
        if m is None:
            skipped.append(p.name)
            continue
        paths[p.stem] = str(p.resolve())
        speakers[p.stem] = m["speaker"]
    if skipped:
        print(f"warning: skipped {len(skipped)} entries not named {{digit}}_{{speaker}}_{{take}}.wav in {rec_dir}: "
              f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", file=sys.stderr)
    if not paths:
        raise SystemExit(f"error: no {{digit}}_{{speaker}}_{{take}}.wav files in {rec_dir}")
    return paths, speakers


def utt_id(natural: str, speakers: dict[str, str]) -> str:
    """Speaker-prefixed Kaldi utterance id of a natural FSDD id."""
    return f"{speakers[natural]}-{natural}"


def convert_trials(path: Path, speakers: dict[str, str]) -> Trials:
    """Read VoxCeleb-format trials, with the recipe's utterance ids.

    Raises :class:`FormatError` on malformed lines, unknown ids, labels that contradict the speakers, a
    repeated trial or a self-pair.
    """
    enrolls, tests, labels = [], [], []
    for n, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise FormatError(path, n, f"expected '1|0 <enroll> <test>', got {line!r}")
        label, enroll, test = fields
        for u in (enroll, test):
            if u not in speakers:
                raise FormatError(path, n, f"utterance {u!r} is not among the recordings")
        if (label == "1") != (speakers[enroll] == speakers[test]):
            raise FormatError(path, n, f"label {label} contradicts speakers of {enroll!r} and {test!r}")
        enrolls.append(utt_id(enroll, speakers))
        tests.append(utt_id(test, speakers))
        labels.append(int(label))
    check_pairs(path, list(zip(enrolls, tests)), range(1, len(enrolls) + 1))   # no repeated trial, no self-pair
    return Trials(enrolls, tests, np.array(labels, dtype=np.int8))


def generate_trials(speakers: dict[str, str], num_target: int, num_nontarget: int,
                    seed: int) -> Trials:
    """Sampled trials (:func:`sslspk.data.trials.sample_trials`), at most as many of a kind as exist."""
    utt2spk = {utt_id(n, speakers): s for n, s in speakers.items()}
    have_target, have_nontarget = count_pairs(utt2spk)
    return sample_trials(utt2spk, min(num_target, have_target), min(num_nontarget, have_nontarget), seed)


def write_data_dir(out: Path, paths: dict[str, str], speakers: dict[str, str]) -> None:
    """Write sorted ``wav.scp``, ``utt2spk`` and ``spk2utt`` with speaker-prefixed utterance ids."""
    write_core_tables(out, {utt_id(n, speakers): p for n, p in paths.items()},
                      {utt_id(n, speakers): s for n, s in speakers.items()})


def get_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", help="the FSDD 'recordings' folder or its parent")
    p.add_argument("data_dir", help="where the Kaldi data dirs train/ and test/ go")
    p.add_argument("--trials", help="VoxCeleb-format trial list (default: trials.txt beside 'recordings')")
    p.add_argument("--num-target", type=int, default=2000, help="without a trial list: same-speaker pairs")
    p.add_argument("--num-nontarget", type=int, default=10000, help="without a trial list: other-speaker pairs")
    p.add_argument("--seed", type=int, default=0, help="without a trial list: random seed")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = get_parser().parse_args(argv)
    rec_dir = find_recordings(Path(args.corpus_dir))
    paths, speakers = scan(rec_dir)
    trials_path = Path(args.trials) if args.trials else rec_dir.parent / "trials.txt"
    if args.trials and not trials_path.is_file():
        raise SystemExit(f"error: trial list not found: {trials_path}")
    data_dir = Path(args.data_dir)
    try:
        check_outputs_are_not_inputs([rec_dir, trials_path], [f for split in ("train", "test")
                                                              for f in dir_and_files(data_dir / split, MANAGED_FILES)])
    except InputError as e:
        raise SystemExit(f"error: {e}") from e
    if trials_path.is_file():
        try:
            trials = convert_trials(trials_path, speakers)
        except FormatError as e:
            raise SystemExit(f"error: {e}") from e
        source = f"converted from {trials_path}"
    else:
        trials = generate_trials(speakers, args.num_target, args.num_nontarget, args.seed)
        source = f"generated (no {trials_path})"

    for split in ("train", "test"):
        write_data_dir(data_dir / split, paths, speakers)
    write_trials(data_dir / "test" / "trials", trials)
    print(f"FSDD: {len(paths)} utts, {len(set(speakers.values()))} speakers -> {data_dir}/{{train,test}} "
          f"(same recordings); {len(trials)} trials ({trials.num_target} target) {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
