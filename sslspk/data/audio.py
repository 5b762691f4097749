"""Read audio named by a ``wav.scp`` entry: a file path or a Kaldi pipe ``cmd ... |``.

soundfile decodes (any rate, any channel count); torchaudio resamples. ``segments``
are honoured by cutting ``[start, end)`` seconds out of the recording. Audio that would give a
silently wrong result is an error naming the entry: no samples, NaN/inf samples, digital silence,
a segment ending well after its recording; speech (a data dir's utterance, an API input) whose
loudest 25 ms frame is below :data:`MIN_SPEECH_DBFS` (no speech). A truncated file (less audio than its header says) is
logged (once per file), or, with ``strict``, an error.

A pipe entry is run by a shell: only ``wav.scp`` entries are read as pipes (``pipes=False`` reads
any string as a path), and a ``wav.scp`` from untrusted hands can run any command. Its output gets
the checks of a file (a truncated WAV included); a non-zero exit is an error with the end of its
stderr, and a command still running after ``SSLSPK_PIPE_TIMEOUT`` seconds (default
:data:`PIPE_TIMEOUT`) is killed, with its process group, and is an error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import subprocess

import numpy as np

from sslspk.utils.errors import InputError

CHANNELS = ("mix", "first")   # multi-channel audio: mean of the channels, or channel 0
TOO_SHORT = ("repeat", "pad", "skip")   # utterances shorter than a view: see CropDataset
MIN_SECONDS = 0.025   # one analysis window (fbank frame, WavLM CNN receptive field): shorter gives no frame
#: speech audio (a data dir's utterance, an API input) whose loudest 25 ms frame is below this RMS level (dB
#: re full scale) holds no speech (check_speech); the recipes' quietest utterances are far above it
#: (docs/reliability.md); noise sources of augmentation are not checked
MIN_SPEECH_DBFS = -60.0
MAX_OVERSHOOT = 0.5   # seconds a segment may end after its recording (clipped), as Kaldi's extract-segments
PIPE_TIMEOUT = 300.0   # seconds a wav.scp pipe may run (env SSLSPK_PIPE_TIMEOUT overrides)
_resampled: set[tuple[int, int]] = set()   # (from, to) rates already logged
_truncated: set[str] = set()               # truncated files already logged
#: libsndfile's note on a WAV/AIFF whose data chunk is cut short (it then reads what is there)
_CUT_CHUNK = re.compile(r"^data\s*:\s*(\d+) \(should be (\d+)\)", re.M)
#: data sizes at and above this (or 0) are placeholders of a WAV written to a pipe (sox: 0x7ffff000,
#: ffmpeg: 0xffffffff), not a truncation
_STREAMED_SIZE = 0x7FFF0000

log = logging.getLogger("sslspk")


class AudioError(InputError):
    """Audio that cannot be read or used; the message names the entry (file or pipe command)."""


def is_pipe(entry: str) -> bool:
    """True for a Kaldi pipe entry such as ``sox x.flac -t wav - |``."""
    return entry.rstrip().endswith("|")


def pipe_timeout() -> float:
    """Seconds a ``wav.scp`` pipe may run: ``$SSLSPK_PIPE_TIMEOUT``, else :data:`PIPE_TIMEOUT`."""
    text = os.environ.get("SSLSPK_PIPE_TIMEOUT", "")
    if not text:
        return PIPE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise InputError(f"SSLSPK_PIPE_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the process group of ``proc`` (started in its own session) and reap it."""
    with contextlib.suppress(ProcessLookupError):   # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _read_bytes_from_pipe(entry: str) -> bytes:
    """Standard output of the pipe command of ``entry``; AudioError on a non-zero exit (with the end of
    its stderr), no output, or a command still running after :func:`pipe_timeout` seconds."""
    cmd = entry.rstrip()[:-1].strip()
    timeout = pipe_timeout()
    # its own session: on a timeout the whole process group (the shell and its children) is killed
    proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AudioError(f"pipe command still running after {timeout:g} s, killed: {cmd!r} (a command that waits "
                         "for input, or a slow network path? set SSLSPK_PIPE_TIMEOUT to allow more)") from None
    except BaseException:   # e.g. Ctrl-C: no command left running
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()
        raise AudioError(f"pipe command failed (exit {proc.returncode}): {cmd!r}: {' / '.join(tail[-3:])}")
    if not out:
        raise AudioError(f"pipe command produced no output: {cmd!r}")
    return out


def _truncation(entry: str, info: object, got: int, want: int) -> str | None:
    """Why file or pipe ``entry`` (``sf.info`` ``info``) gave ``got`` of the ``want`` samples asked for, if it
    is cut short."""
    cut = _CUT_CHUNK.search(getattr(info, "extra_info", ""))
    if cut and 0 < int(cut[1]) < _STREAMED_SIZE:
        return f"{entry!r} is truncated: its header announces {cut[1]} bytes of audio, the file holds {cut[2]}"
    if got < want:
        return f"{entry!r} is truncated: {got} of the {want} samples its header announces could be read"
    return None


def check_samples(mono: np.ndarray, what: str) -> None:
    """AudioError naming ``what`` for samples that would give a silently wrong result:
    none, NaN/inf, or digital silence."""
    if mono.size == 0:
        raise AudioError(f"no samples in {what}")
    if not np.isfinite(mono).all():
        raise AudioError(f"{int((~np.isfinite(mono)).sum())} NaN/inf sample(s) in {what}")
    if not mono.any():
        raise AudioError(f"digital silence (all {mono.size} samples are 0) in {what}")


def speech_level(mono: np.ndarray, sample_rate: int) -> float:
    """Level of the loudest :data:`MIN_SECONDS` (25 ms) frame of ``mono`` (non-overlapping frames; the
    whole signal when shorter): its RMS in dB relative to full scale (a full-scale sine: -3 dBFS)."""
    frame = max(1, int(MIN_SECONDS * sample_rate))
    n = len(mono) // frame
    frames = mono[:n * frame].reshape(n, frame) if n else mono[None, :]
    power = float(np.square(frames, dtype=np.float64).mean(axis=1).max())
    return 10.0 * np.log10(max(power, 1e-20))


def check_speech(mono: np.ndarray, sample_rate: int, what: str) -> None:
    """AudioError naming ``what`` when no 25 ms frame reaches :data:`MIN_SPEECH_DBFS`: near-silent audio
    (dither, a noise floor) holds no speech, and a speaker model maps all such files to about the same
    embedding (two of them score near 1: "same speaker")."""
    level = speech_level(mono, sample_rate)
    if level < MIN_SPEECH_DBFS:
        raise AudioError(f"no speech in {what}: its loudest 25 ms frame is at {level:.1f} dBFS, below "
                         f"{MIN_SPEECH_DBFS:g} dBFS (near-silent: dither or background noise only); if it holds "
                         "speech, raise its level (e.g. sox --norm)")


def segment_problem(start: float, end: float | None, length: float) -> str | None:
    """Why segment ``[start, end)`` (``end`` None: to the end) cannot be cut from a recording of
    ``length`` seconds, or None (an end up to :data:`MAX_OVERSHOOT` after the recording is clipped)."""
    if start >= length:
        return f"segment [{start}, {end}) starts after the end of the recording ({length:.3f} s)"
    if end is not None and end > length + MAX_OVERSHOOT:
        return (f"segment [{start}, {end}) ends {end - length:.3f} s after the end of the recording "
                f"({length:.3f} s; at most {MAX_OVERSHOOT} s is clipped)")
    return None


def check_length(num: int, sample_rate: int, what: str) -> None:
    """AudioError naming ``what`` when ``num`` samples are shorter than one analysis window."""
    if num < MIN_SECONDS * sample_rate:
        raise AudioError(f"{what}: {num} samples ({num / sample_rate:.3f} s) is shorter than one "
                         f"{1000 * MIN_SECONDS:g} ms analysis window: nothing to embed")


def read_audio(entry: str, start: float = 0.0, end: float | None = None, channel: str = "mix",
               pipes: bool = True, strict: bool = False) -> tuple[np.ndarray, int]:
    """Decode ``entry`` to a mono float32 array and its sample rate.

    ``start``/``end`` (seconds) select a segment of the recording; ``end=None`` reads to the end,
    and an ``end`` up to :data:`MAX_OVERSHOOT` after the end is clipped (more is an error).
    ``channel``: ``mix`` averages the channels of multi-channel audio, ``first`` keeps channel 0.
    ``pipes``: read an entry ending in ``|`` as a shell command (``wav.scp`` entries only).
    ``strict``: a truncated file is an error instead of a logged warning.
    """
    import soundfile as sf

    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    segment = f" for segment [{start}, {end})" if start or end else ""
    try:
        # a pipe's output is decoded as a file of the same bytes, with the same checks
        source = io.BytesIO(_read_bytes_from_pipe(entry)) if pipes and is_pipe(entry) else entry
        info = sf.info(source)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        sr, total = info.samplerate, info.frames
        b = int(round(start * sr))
        stop = None if end is None else int(round(end * sr))
        data, sr = sf.read(source, start=b, stop=stop, dtype="float32", always_2d=True)
        short = _truncation(entry, info, data.shape[0], min(total, stop or total) - b)
        if short and strict:
            raise AudioError(short)
        if short and entry not in _truncated:
            _truncated.add(entry)
            log.warning("%s; read what is there (logged once per file)", short)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises several types for missing/corrupt files
        raise AudioError(f"cannot read audio {entry!r}: {e}") from e
    problem = segment_problem(start, end, total / sr) if start or end is not None else None
    if problem:
        raise AudioError(f"{entry!r}: {problem}")
    mono = data.mean(axis=1) if data.shape[1] > 1 and channel == "mix" else data[:, 0]
    check_samples(mono, f"{entry!r}{segment}")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with torchaudio's band-limited sinc interpolation (no-op when rates match).

    The first resampling from each rate is logged (once per process).
    """
    if orig_sr == target_sr:
        return wav
    if (orig_sr, target_sr) not in _resampled:
        _resampled.add((orig_sr, target_sr))
        log.warning("audio at %d Hz is resampled to %d Hz (logged once)", orig_sr, target_sr)
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(wav), orig_sr, target_sr).numpy()


def load_audio(entry: str, sample_rate: int | None = None, start: float = 0.0, end: float | None = None,
               channel: str = "mix", pipes: bool = True) -> np.ndarray:
    """Read ``entry`` (optionally a segment) as mono float32 at ``sample_rate`` (native rate if None);
    ``pipes``: as :func:`read_audio`."""
    wav, sr = read_audio(entry, start, end, channel, pipes)
    return wav if sample_rate is None else resample(wav, sr, sample_rate)


def num_samples(entry: str, decode: bool = False) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of an entry: a cheap header read for files, unless ``decode``
    (then every check of :func:`read_audio`, a truncated file included, and :func:`check_speech` is an
    error); pipes are decoded."""
    if decode or is_pipe(entry):
        wav, sr = read_audio(entry, strict=True)
        if decode:
            check_speech(wav, sr, repr(entry))
        return len(wav), sr
    import soundfile as sf

    try:
        info = sf.info(entry)
    except Exception as e:
        raise AudioError(f"cannot read audio {entry!r}: {e}") from e
    return int(info.frames), int(info.samplerate)


def check_data_options(too_short: str = "repeat", channel: str = "mix", where: str = "data") -> None:
    """ConfigError unless ``too_short`` and ``channel`` (a config's ``data:`` block) are known values."""
    from sslspk.utils.config import ConfigError

    for key, value, allowed in (("too_short", too_short, TOO_SHORT), ("channel", channel, CHANNELS)):
        if value not in allowed:
            raise ConfigError(f"{where}.{key} must be one of {', '.join(allowed)}, got {value!r}")
