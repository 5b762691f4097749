"""Read audio named by a ``wav.scp`` entry: a file path or a Kaldi pipe ``cmd ... |``.

soundfile decodes (any rate, any channel count); torchaudio resamples. ``segments``
are honoured by cutting ``[start, end)`` seconds out of the recording. Audio that would give a
silently wrong result is an error naming the entry: no samples, NaN/inf samples, digital silence.
"""

from __future__ import annotations

import io
import logging
import subprocess

import numpy as np

from sslspk.utils.errors import InputError

CHANNELS = ("mix", "first")   # multi-channel audio: mean of the channels, or channel 0
_resampled: set[tuple[int, int]] = set()   # (from, to) rates already logged


class AudioError(InputError):
    """Audio that cannot be read; the message names the entry (file or pipe command)."""


def is_pipe(entry: str) -> bool:
    """True for a Kaldi pipe entry such as ``sox x.flac -t wav - |``."""
    return entry.rstrip().endswith("|")


def _read_bytes_from_pipe(entry: str) -> bytes:
    cmd = entry.rstrip()[:-1].strip()
    proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"pipe command failed (exit {proc.returncode}): {cmd!r}: {' / '.join(err[-3:])}")
    if not proc.stdout:
        raise AudioError(f"pipe command produced no output: {cmd!r}")
    return proc.stdout


def read_audio(entry: str, start: float = 0.0, end: float | None = None,
               channel: str = "mix") -> tuple[np.ndarray, int]:
    """Decode ``entry`` to a mono float32 array and its sample rate.

    ``start``/``end`` (seconds) select a segment of the recording; ``end=None`` reads to the end.
    ``channel``: ``mix`` averages the channels of multi-channel audio, ``first`` keeps channel 0.
    """
    import soundfile as sf

    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")

    try:
        if is_pipe(entry):
            data, sr = sf.read(io.BytesIO(_read_bytes_from_pipe(entry)), dtype="float32", always_2d=True)
            b = int(round(start * sr))
            data = data[b: None if end is None else int(round(end * sr))]
        else:
            info = sf.info(entry)
            sr = info.samplerate
            b = int(round(start * sr))
            stop = None if end is None else int(round(end * sr))
            data, sr = sf.read(entry, start=b, stop=stop, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises several types for missing/corrupt files
        raise AudioError(f"cannot read audio {entry!r}: {e}") from e
    if data.shape[0] == 0:
        raise AudioError(f"no samples in {entry!r}" + (f" for segment [{start}, {end})" if start or end else ""))
    mono = data.mean(axis=1) if data.shape[1] > 1 and channel == "mix" else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(f"{int((~np.isfinite(mono)).sum())} NaN/inf sample(s) in {entry!r}")
    if not mono.any():
        raise AudioError(f"digital silence (all {mono.size} samples are 0) in {entry!r}")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with torchaudio's band-limited sinc interpolation (no-op when rates match).

    The first resampling from each rate is logged (once per process).
    """
    if orig_sr == target_sr:
        return wav
    if (orig_sr, target_sr) not in _resampled:
        _resampled.add((orig_sr, target_sr))
        logging.getLogger("sslspk").warning("audio at %d Hz is resampled to %d Hz (logged once)", orig_sr, target_sr)
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(wav), orig_sr, target_sr).numpy()


def load_audio(entry: str, sample_rate: int | None = None, start: float = 0.0, end: float | None = None,
               channel: str = "mix") -> np.ndarray:
    """Read ``entry`` (optionally a segment) as mono float32 at ``sample_rate`` (native rate if None)."""
    wav, sr = read_audio(entry, start, end, channel)
    return wav if sample_rate is None else resample(wav, sr, sample_rate)


def num_samples(entry: str) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of an entry; cheap header read for files, full decode for pipes."""
    if not is_pipe(entry):
        import soundfile as sf

        try:
            info = sf.info(entry)
        except Exception as e:
            raise AudioError(f"cannot read audio {entry!r}: {e}") from e
        return int(info.frames), int(info.samplerate)
    wav, sr = read_audio(entry)
    return len(wav), sr
