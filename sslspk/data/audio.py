"""Read audio named by a ``wav.scp`` entry: a file path or a Kaldi pipe ``cmd ... |``.

soundfile decodes (any rate, any channel count); torchaudio resamples. ``segments``
are honoured by cutting ``[start, end)`` seconds out of the recording.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np


class AudioError(RuntimeError):
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


def read_audio(entry: str, start: float = 0.0, end: float | None = None) -> tuple[np.ndarray, int]:
    """Decode ``entry`` to a mono float32 array (channels averaged) and its sample rate.

    ``start``/``end`` (seconds) select a segment of the recording; ``end=None`` reads to the end.
    """
    import soundfile as sf

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
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with torchaudio's band-limited sinc interpolation (no-op when rates match)."""
    if orig_sr == target_sr:
        return wav
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(wav), orig_sr, target_sr).numpy()


def load_audio(entry: str, sample_rate: int | None = None, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Read ``entry`` (optionally a segment) as mono float32 at ``sample_rate`` (native rate if None)."""
    wav, sr = read_audio(entry, start, end)
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
