"""Embeddings saved by other code as ``torch.save`` of ``{relative audio path: tensor}`` → Kaldi ark/scp.

theolepage/wavlm_ssl_sv publishes the DINO embeddings that seed its first clustering in this form
(README.md: a ``Dict[str, torch.Tensor]`` over all VoxCeleb2 samples, keys such as
``id00012/21Uxsk56VDQ/00001.wav``; SpeakerNet.py:generate_embeddings saves the model's ``[1, D]``
output per file). :func:`import_torch_embeddings` maps each key onto an utterance of a data dir by
its last three path components without the extension (``<speaker>/<video>/<file>``): the utterance
id itself, or the audio file its ``wav.scp`` entry reads (a path, or the ``-i`` input of an ffmpeg
pipe), so m4a converted to flac or wav still matches.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from sslspk.data.datadir import DataDir, DataDirError
from sslspk.data.embeddings import write_embeddings
from sslspk.utils.errors import InputError

log = logging.getLogger(__name__)

#: Path components that identify a file: ``<speaker>/<video>/<file>`` for VoxCeleb.
SUFFIX_PARTS = 3


@dataclass
class ImportReport:
    """What :func:`import_torch_embeddings` matched: counts and a few examples of each mismatch."""

    num_keys: int
    num_utts: int
    num_written: int
    dim: int
    unmatched_keys: list[str]
    missing_utts: list[str]


def path_suffix(path: str, parts: int = SUFFIX_PARTS) -> str:
    """The last ``parts`` components of ``path`` with the file's extension removed (``a/b/c.wav`` → ``a/b/c``)."""
    p = PurePosixPath(path.replace("\\", "/"))
    return "/".join(p.with_suffix("").parts[-parts:]) if p.name else ""


def _audio_path(entry: str) -> str:
    """The audio file a ``wav.scp`` entry reads: the entry itself, or the ``-i`` input of a command ``... |``."""
    if not entry.rstrip().endswith("|"):
        return entry
    try:
        words = shlex.split(entry.rstrip()[:-1])
    except ValueError:
        return ""
    return words[words.index("-i") + 1] if "-i" in words[:-1] else ""


def utt_suffixes(dd: DataDir) -> dict[str, str]:
    """``{suffix: utt}`` of every utterance: its id's suffix and its audio file's (``DataDirError`` when two clash)."""
    out: dict[str, str] = {}
    for utt in dd.utts:
        names = {path_suffix(utt)}
        if dd.segments is None:   # a whole recording: its file names the utterance
            names.add(path_suffix(_audio_path(dd.wav_scp.get(utt, ""))))
        for name in names - {""}:
            if out.setdefault(name, utt) != utt:
                raise DataDirError(f"utterances {out[name]!r} and {utt!r} both end in {name!r}: keys cannot be "
                                   "matched by path")
    return out


def _vector(key: str, value, path: str) -> np.ndarray:
    """The ``[D]`` float32 vector of a ``[D]`` or ``[1, D]`` tensor (``InputError`` naming the key otherwise)."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise InputError(f"{path}: the value of {key!r} is a {type(value).__name__}, not a tensor")
    if value.dim() == 2 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 1 or value.numel() == 0:
        raise InputError(f"{path}: the embedding of {key!r} has shape {list(value.shape)}, expected [D] or [1, D]")
    return value.detach().to("cpu", torch.float32).numpy()


def import_torch_embeddings(pt: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                            allow_missing: bool = False) -> ImportReport:
    """Write ``out_dir/embeddings.{ark,scp}`` (keyed by ``data_dir``'s utterance ids, in their order) from ``pt``.

    Keys of ``pt`` that match no utterance are ignored (reported); an utterance without an
    embedding is an error unless ``allow_missing`` (then it is left out of the scp).
    """
    import torch

    pt, out_dir = str(pt), os.fspath(out_dir)
    if not os.path.isfile(pt):
        raise FileNotFoundError(f"{pt}: embeddings file not found")
    dd = DataDir.load(data_dir)
    suffixes = utt_suffixes(dd)
    try:
        table = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip or unpickling-policy errors alike
        raise InputError(f"{pt}: not a torch.save file of a dict of tensors ({e})") from e
    if not isinstance(table, dict) or not table:
        raise InputError(f"{pt}: expected a non-empty dict {{audio path: tensor}}, got {type(table).__name__}")
    found: dict[str, str] = {}   # utt -> key
    unmatched: list[str] = []
    for key in table:
        utt = suffixes.get(path_suffix(str(key)))
        if utt is None:
            unmatched.append(str(key))
        elif found.setdefault(utt, key) != key:
            raise InputError(f"{pt}: keys {found[utt]!r} and {key!r} both match utterance {utt!r}")
    if not found:
        raise InputError(f"{pt}: no key matches an utterance of {data_dir} (e.g. key {unmatched[:1]}, "
                         f"utterance {dd.utts[:1]}; matched on <speaker>/<video>/<file> without extension)")
    missing = [u for u in dd.utts if u not in found]
    if missing and not allow_missing:
        raise InputError(f"{pt}: {len(missing)} of the {len(dd.utts)} utterances of {data_dir} have no embedding, "
                         f"e.g. {missing[:5]} ({len(unmatched)} keys matched no utterance, e.g. {unmatched[:5]})")
    dims: set[int] = set()

    def items():
        for utt in dd.utts:
            if utt in found:
                vec = _vector(found[utt], table[found[utt]], pt)
                dims.add(vec.size)
                if len(dims) > 1:
                    raise InputError(f"{pt}: embeddings of different sizes {sorted(dims)} (e.g. {found[utt]!r})")
                yield utt, vec

    n = write_embeddings(os.path.join(out_dir, "embeddings.ark"), os.path.join(out_dir, "embeddings.scp"), items())
    return ImportReport(len(table), len(dd.utts), n, dims.pop(), unmatched, missing)


def import_embeddings_file(pt: str, data_dir: str, out_dir: str, allow_missing: bool = False) -> ImportReport:
    """``import_embeddings.py``: :func:`import_torch_embeddings` after checking that no output overwrites an
    input, printing what matched (a few examples of each mismatch) and what was written."""
    from sslspk.data.tables import MANAGED_FILES
    from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files

    check_outputs_are_not_inputs([pt, *dir_and_files(data_dir, MANAGED_FILES)],
                                 dir_and_files(out_dir, ("embeddings.ark", "embeddings.scp")))
    r = import_torch_embeddings(pt, data_dir, out_dir, allow_missing=allow_missing)
    if r.unmatched_keys:
        print(f"{len(r.unmatched_keys)} of the {r.num_keys} keys of {pt} match no utterance of "
              f"{data_dir} (ignored), e.g. {r.unmatched_keys[:5]}")
    if r.missing_utts:
        print(f"{len(r.missing_utts)} of the {r.num_utts} utterances have no embedding (left out, "
              f"--allow-missing), e.g. {r.missing_utts[:5]}")
    print(f"wrote {out_dir}/embeddings.scp: {r.num_written} of {r.num_utts} utterances, dim {r.dim}")
    return r
