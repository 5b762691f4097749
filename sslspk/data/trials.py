"""Trial lists in Kaldi (``enroll test target|nontarget``) or VoxCeleb (``1 enroll test``) format:
reading, writing, sampling from an ``utt2spk`` and splitting by speaker."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import FormatError, iter_lines

_KALDI_LABELS = {"target": 1, "nontarget": 0}
TRIAL_FORMATS = "'<enroll> <test> target|nontarget', '1|0 <enroll> <test>' or '<enroll> <test>'"
#: the option that turns repeated trials and self-pairs from an error into counted, dropped lines
DROP_OPTION = "--drop-bad-trials"
log = logging.getLogger("sslspk")
_FORMAT_NAMES = {"kaldi": "Kaldi trial '<enroll> <test> target|nontarget'",
                 "voxceleb": "VoxCeleb trial '1|0 <enroll> <test>'", "unlabelled": "unlabelled trial '<enroll> <test>'"}


@dataclass
class Trials:
    """Parallel lists of enrollment and test ids, with labels (1 target, 0 nontarget) when known."""

    enroll: list[str]
    test: list[str]
    labels: np.ndarray | None  # int8 [N], or None for an unlabelled list

    def __len__(self) -> int:
        return len(self.enroll)

    @property
    def num_target(self) -> int:
        """Same-speaker trials (0 for an unlabelled list)."""
        return 0 if self.labels is None else int(self.labels.sum())


def parse_trial_line(line: str) -> tuple[str, str, int | None, str]:
    """``(enroll, test, label, format)`` of one trial line: label 1/0 (None when unlabelled), format
    ``kaldi`` (``<enroll> <test> target|nontarget``), ``voxceleb`` (``1|0 <enroll> <test>``) or
    ``unlabelled`` (``<enroll> <test>``). ValueError for any other line."""
    f = line.split()
    if len(f) == 3 and f[2] in _KALDI_LABELS:
        return f[0], f[1], _KALDI_LABELS[f[2]], "kaldi"
    if len(f) == 3 and f[0] in ("0", "1"):
        return f[1], f[2], int(f[0]), "voxceleb"
    if len(f) == 2:
        return f[0], f[1], None, "unlabelled"
    raise ValueError(f"expected {TRIAL_FORMATS}, got {line!r}")


def check_pairs(path: str | os.PathLike, pairs: Sequence[tuple[str, str]], lines: Sequence[int],
                labels: Sequence[object] | None = None, drop: bool = False) -> list[int]:
    """Indices of the trials of ``path`` to use: each ``(enroll, test)`` pair once, never a self-pair.

    A pair listed again (it would count twice in the metrics) or a self-pair (enroll == test: a
    perfect score) is a :class:`FormatError` naming the file and line (and the line of the first
    occurrence); with ``drop`` they are left out and counted in a logged warning. A pair listed
    with two different labels is an error either way. ``lines``: the line number of each pair.
    """
    first: dict[tuple[str, str], tuple[int, int]] = {}   # pair -> (line, index) of its first occurrence
    keep: list[int] = []
    repeated = selfpairs = 0
    hint = f"remove it, or pass {DROP_OPTION} to drop such lines"
    for i, (pair, n) in enumerate(zip(pairs, lines)):
        if pair[0] == pair[1]:
            if not drop:
                raise FormatError(path, n, f"self-pair: enroll and test are the same utterance {pair[0]!r} "
                                           f"(it scores as a perfect match); {hint}")
            selfpairs += 1
            continue
        if pair in first:
            line, j = first[pair]
            if labels is not None and labels[i] != labels[j]:
                raise FormatError(path, n, f"trial {pair[0]} {pair[1]} repeats line {line} with another label")
            if not drop:
                raise FormatError(path, n, f"trial {pair[0]} {pair[1]} repeats line {line} (it would count "
                                           f"twice); {hint}")
            repeated += 1
            continue
        first[pair] = (n, i)
        keep.append(i)
    if repeated or selfpairs:
        log.warning("%s: dropped %d repeated trial(s) and %d self-pair(s) of %d lines (%s)", path, repeated,
                    selfpairs, len(pairs), DROP_OPTION)
    return keep


def read_trials(path: str | os.PathLike, drop_bad_trials: bool = False) -> Trials:
    """Read a trial list; every line must have the format of the first (see :func:`parse_trial_line`).

    Malformed or mixed lines and an empty list raise :class:`FormatError` naming the file and line;
    repeated trials and self-pairs too, unless ``drop_bad_trials`` (see :func:`check_pairs`).
    """
    enroll: list[str] = []
    test: list[str] = []
    labels: list[int] = []
    numbers: list[int] = []
    fmt: str | None = None
    for n, line in iter_lines(path):
        try:
            e, t, label, line_fmt = parse_trial_line(line)
        except ValueError as err:
            line_fmt = None
            if fmt is None:
                raise FormatError(path, n, str(err)) from None
        if fmt is None:
            fmt = line_fmt
        elif line_fmt != fmt:
            raise FormatError(path, n, f"expected a {_FORMAT_NAMES[fmt]} like line 1, got {line!r}")
        enroll.append(e)
        test.append(t)
        numbers.append(n)
        if label is not None:
            labels.append(label)
    if not enroll:
        raise FormatError(path, None, "trial list is empty")
    keep = check_pairs(path, list(zip(enroll, test)), numbers, labels or None, drop_bad_trials)
    return Trials([enroll[i] for i in keep], [test[i] for i in keep],
                  None if fmt == "unlabelled" else np.asarray(labels, dtype=np.int8)[keep])


def write_trials(path: str | os.PathLike, trials: Trials) -> None:
    """Write a trial list in Kaldi format (``enroll test [target|nontarget]``), atomically."""
    from sslspk.utils.fileio import atomic_write

    names = ("nontarget", "target")
    with atomic_write(path) as f:
        for i, (e, t) in enumerate(zip(trials.enroll, trials.test)):
            f.write(f"{e} {t}" + (f" {names[trials.labels[i]]}" if trials.labels is not None else "") + "\n")


def split_by_speaker(trials: Trials, utt2spk: dict[str, str], seed: int = 0) -> tuple[Trials, Trials]:
    """Split into two speaker-disjoint halves (e.g. calibration dev / evaluation).

    The speakers of the list are shuffled with ``seed`` and halved; a trial goes to a half when
    both its enrollment and its test speaker are in it (cross-half trials are dropped), so no
    speaker (and no utterance) of one half occurs in the other.
    """
    missing = sorted({u for u in (*trials.enroll, *trials.test) if u not in utt2spk})
    if missing:
        raise MissingIdError(f"{len(missing)} trial id(s) have no speaker in utt2spk: {', '.join(missing[:5])}"
                             + (" ..." if len(missing) > 5 else ""))
    spks = sorted({utt2spk[u] for u in (*trials.enroll, *trials.test)})
    if len(spks) < 2:
        raise InputError(f"cannot split a trial list of {len(spks)} speaker(s) into two halves")
    order = np.random.default_rng(seed).permutation(len(spks))
    first = {spks[i] for i in order[: len(spks) // 2]}
    halves = []
    for want in (True, False):
        idx = [i for i, (e, t) in enumerate(zip(trials.enroll, trials.test))
               if (utt2spk[e] in first) == want and (utt2spk[t] in first) == want]
        halves.append(Trials([trials.enroll[i] for i in idx], [trials.test[i] for i in idx],
                             None if trials.labels is None else trials.labels[idx]))
    return halves[0], halves[1]


def split_trials_file(utt2spk: str, trials: str, out_dev: str, out_eval: str, seed: int = 0,
                      drop_bad_trials: bool = False) -> None:
    """``split_trials.py``: :func:`split_by_speaker` of the trial list ``trials`` by the speakers of ``utt2spk``,
    written to ``out_dev`` and ``out_eval`` (InputError when a half is empty); prints the counts."""
    from sslspk.utils.fileio import check_outputs_are_not_inputs, read_kv

    check_outputs_are_not_inputs([utt2spk, trials], [out_dev, out_eval])
    dev, ev = split_by_speaker(read_trials(trials, drop_bad_trials), read_kv(utt2spk), seed)
    for t, path in ((dev, out_dev), (ev, out_eval)):
        if len(t) == 0:
            raise InputError(f"{path}: the split of {trials} left no trials")
        write_trials(path, t)
    print(f"{len(dev)} trials -> {out_dev}, {len(ev)} trials -> {out_eval}")


def sample_trials(utt2spk: dict[str, str], num_target: int | None = None, num_nontarget: int | None = None,
                  seed: int = 0) -> Trials:
    """Distinct pairs of utterances (enroll < test, sorted), labelled:
    ``num_target`` same-speaker and ``num_nontarget`` different-speaker pairs drawn uniformly without
    replacement (deterministic for a ``seed``), or every pair of a kind whose count is None.

    ValueError when fewer pairs of a kind exist than asked for. Memory grows with the number of pairs
    (about 17 bytes each: 10,000 utterances take 0.85 GB).
    """
    utts = sorted(utt2spk)
    i, j = np.triu_indices(len(utts), k=1)
    spk = np.array([utt2spk[u] for u in utts])
    same = spk[i] == spk[j]
    tgt = np.flatnonzero(same)
    non = np.flatnonzero(~same)
    n_tgt = len(tgt) if num_target is None else num_target
    n_non = len(non) if num_nontarget is None else num_nontarget
    if n_tgt > len(tgt) or n_non > len(non):
        raise ValueError(f"asked for {n_tgt} target / {n_non} nontarget pairs, but only {len(tgt)} / {len(non)} exist")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    pick = np.concatenate([rng.choice(tgt, n_tgt, replace=False), rng.choice(non, n_non, replace=False)])
    pairs = sorted((utts[i[p]], utts[j[p]], int(same[p])) for p in pick)
    return Trials([e for e, _, _ in pairs], [t for _, t, _ in pairs],
                  np.array([lab for *_, lab in pairs], dtype=np.int8))


def count_pairs(utt2spk: dict[str, str]) -> tuple[int, int]:
    """``(same-speaker pairs, different-speaker pairs)`` of the utterances of ``utt2spk``."""
    counts = np.unique(list(utt2spk.values()), return_counts=True)[1]
    n = len(utt2spk)
    tgt = int(np.sum(counts * (counts - 1) // 2))
    return tgt, n * (n - 1) // 2 - tgt
