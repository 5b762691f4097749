"""Trial lists in Kaldi (``enroll test target|nontarget``) or VoxCeleb (``1 enroll test``) format."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import FormatError, iter_lines

_KALDI_LABELS = {"target": 1, "nontarget": 0}


@dataclass
class Trials:
    """Parallel lists of enrollment and test ids, with labels (1 target, 0 nontarget) when known."""

    enroll: list[str]
    test: list[str]
    labels: np.ndarray | None  # int8 [N], or None for an unlabelled list

    def __len__(self) -> int:
        return len(self.enroll)


def read_trials(path: str | os.PathLike) -> Trials:
    """Read a trial list; the format is detected per file from its first line.

    Kaldi: ``<enroll> <test> target|nontarget`` (or ``<enroll> <test>`` unlabelled);
    VoxCeleb: ``1|0 <enroll> <test>``. Mixed or malformed lines raise :class:`FormatError`
    naming the file and line.
    """
    enroll: list[str] = []
    test: list[str] = []
    labels: list[int] = []
    fmt: str | None = None
    for n, line in iter_lines(path):
        f = line.split()
        if fmt is None:
            if len(f) == 3 and f[0] in ("0", "1") and f[2] not in _KALDI_LABELS:
                fmt = "voxceleb"
            elif len(f) == 3:
                fmt = "kaldi"
            elif len(f) == 2:
                fmt = "unlabelled"
            else:
                raise FormatError(path, n, f"expected 'enroll test target|nontarget' or '1|0 enroll test', got {line!r}")
        if fmt == "voxceleb":
            if len(f) != 3 or f[0] not in ("0", "1"):
                raise FormatError(path, n, f"expected VoxCeleb trial '1|0 enroll test', got {line!r}")
            labels.append(int(f[0]))
            enroll.append(f[1])
            test.append(f[2])
        elif fmt == "kaldi":
            if len(f) != 3 or f[2] not in _KALDI_LABELS:
                raise FormatError(path, n, f"expected Kaldi trial 'enroll test target|nontarget', got {line!r}")
            enroll.append(f[0])
            test.append(f[1])
            labels.append(_KALDI_LABELS[f[2]])
        else:
            if len(f) != 2:
                raise FormatError(path, n, f"expected unlabelled trial 'enroll test' like line 1, got {line!r}")
            enroll.append(f[0])
            test.append(f[1])
    if not enroll:
        raise FormatError(path, None, "trial list is empty")
    return Trials(enroll, test, None if fmt == "unlabelled" else np.asarray(labels, dtype=np.int8))


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
