#!/usr/bin/env python3
"""Generate the embedded ``egs/mini`` corpus: synthetic multi-speaker speech, offline and deterministic.

Each speaker is a set of voice parameters drawn once (F0 level and range, vocal-tract
length factor scaling the formants, glottal pulse shape and spectral tilt, jitter,
shimmer, breathiness, formant bandwidths, per-vowel formant idiosyncrasies, speaking
rate). Utterances are random syllable sequences (fricative noise bursts, vowels with
smooth formant transitions and intonation, pauses) rendered by source-filter
synthesis, so only the voice identifies the speaker. Every recording then passes
through its own random channel (EQ, optional synthetic reverberation, additive
white/pink/brown noise at a random SNR, random gain): the channel is shared by all
crops of a recording and differs between recordings.

Augmentation sets (MUSAN/RIRS_NOISES stand-ins) are made by ``local/prepare_augmentation.py``,
whose babble is speech of this generator's voices.

Outputs::

    CORPUS_DIR/wav/<spk>/<utt>.wav      16-bit mono WAV
    CORPUS_DIR/speakers.json            voice parameters per speaker
    CORPUS_DIR/channels.json            channel (EQ, RT60, noise, SNR, peak level) per utterance
    CORPUS_DIR.stamp                    its stamp (sslspk/utils/stamp.py: the arguments), written last
    DATA_DIR/{train,test}/{wav.scp,utt2spk,spk2utt}
    DATA_DIR/test/trials                "<enroll-utt> <test-utt> target|nontarget"

Speaker ids are ``mtr0001`` (train) and ``mts0001`` (test); utterance ids are
``<spk>-<index>`` (e.g. ``mtr0001-0003``), so utterances sort by speaker. The same
``--seed`` gives byte-identical output whatever ``--nj``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sslspk.augment.augmenter import biquad  # noqa: E402
from sslspk.data.tables import write_core_tables  # noqa: E402
from sslspk.data.trials import count_pairs, sample_trials, write_trials  # noqa: E402
from sslspk.utils.config import parse_bool  # noqa: E402
from sslspk.utils.fileio import atomic_write  # noqa: E402
from sslspk.utils.stamp import Stamp, remove_stamp  # noqa: E402

# Bump when the synthesis changes so that existing corpora are regenerated.
GENERATOR_VERSION = 3

# Vowel formant targets F1-F4 (Hz) for an adult male voice (vocal-tract factor 1.0).
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (270, 2290, 3010, 3700),
    "I": (390, 1990, 2550, 3600),
    "E": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3500),
    "a": (730, 1090, 2440, 3400),
    "O": (570, 840, 2410, 3300),
    "U": (440, 1020, 2240, 3300),
    "u": (300, 870, 2240, 3300),
}
VOWEL_TABLE = np.array(list(VOWELS.values()), dtype=np.float64)
BASE_BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0])
NOISE_KINDS = ("white", "pink", "brown")
HOP_SECONDS = 0.008  # control-track and STFT hop


@dataclass
class Speaker:
    """Voice parameters of one synthetic speaker (drawn once, shared by all its utterances)."""

    spk: str
    f0_mean: float  # Hz
    f0_range: float  # std of the intonation contour, semitones
    vtl_factor: float  # multiplies all formant frequencies
    open_quotient: float  # open phase / period of the glottal pulse
    speed_quotient: float  # opening / closing duration
    tilt_db_per_oct: float  # extra spectral tilt
    jitter: float  # relative per-cycle F0 perturbation (std)
    shimmer: float  # relative per-cycle amplitude perturbation (std)
    breathiness: float  # aspiration noise level relative to the glottal pulses
    bandwidth_scale: float  # multiplies the formant bandwidths
    rate: float  # syllable duration scale (>1: slower)
    vowel_offsets: list[list[float]]  # per-vowel multiplicative F1-F4 idiosyncrasies


def draw_speakers(prefix: str, num: int, seed_seq: np.random.SeedSequence) -> list[Speaker]:
    """Draw ``num`` speakers; F0 means are stratified on a log scale over 85-250 Hz, vocal-tract
    factors drawn independently over 0.75-1.25 (version 3: wider speaker traits, idiosyncratic
    formants of 10% per vowel, a per-utterance key of 0.75 semitones; version 2's voices were too
    alike for any learned encoder: a supervised oracle reached only 28.7% EER)."""
    rng = np.random.default_rng(seed_seq)
    strata = (rng.permutation(num) + rng.uniform(size=num)) / max(num, 1)
    speakers = []
    for i, u in enumerate(strata):
        vtl = 0.75 + 0.5 * float(rng.uniform())
        speakers.append(Speaker(
            spk=f"{prefix}{i + 1:04d}",
            f0_mean=float(85.0 * (250.0 / 85.0) ** u),
            f0_range=float(rng.uniform(1.0, 3.5)),
            vtl_factor=vtl,
            open_quotient=float(rng.uniform(0.4, 0.8)),
            speed_quotient=float(rng.uniform(1.5, 4.0)),
            tilt_db_per_oct=float(rng.uniform(-4.0, 6.0)),
            jitter=float(rng.uniform(0.003, 0.02)),
            shimmer=float(rng.uniform(0.02, 0.1)),
            breathiness=float(rng.uniform(0.02, 0.4)),
            bandwidth_scale=float(rng.uniform(0.7, 1.6)),
            rate=float(rng.uniform(0.8, 1.25)),
            vowel_offsets=np.round(np.exp(rng.normal(0.0, 0.10, size=VOWEL_TABLE.shape)), 4).tolist(),
        ))
    return speakers


# ---------------------------------------------------------------------------------------------
# Source-filter synthesis


def _ramp(track: np.ndarray, start: int, end: int, level: float, ramp: int) -> None:
    """Raise ``track`` on frames ``[start, end)`` to a plateau of ``level`` with raised-cosine edges."""
    n = end - start
    if n <= 0:
        return
    env = np.full(n, level)
    r = min(ramp, n // 2)
    if r > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
        env[:r] *= edge
        env[n - r:] *= edge[::-1]
    track[start:end] = np.maximum(track[start:end], env)


def control_tracks(spk: Speaker, num_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frame-rate tracks of one utterance: voicing/frication amplitude, F0, formants, fricative centre."""
    av = np.zeros(num_frames)
    af = np.zeros(num_frames)
    fric_fc = np.full(num_frames, 4000.0)
    formant_t: list[float] = []
    formant_v: list[np.ndarray] = []
    f0_t: list[float] = []
    f0_v: list[float] = []

    def frames(sec: float) -> int:
        return max(1, int(round(sec * spk.rate / HOP_SECONDS)))

    pos = frames(rng.uniform(0.05, 0.2))
    end = num_frames - frames(rng.uniform(0.05, 0.2))
    while pos < end:
        if rng.uniform() < 0.5:  # fricative onset
            n = frames(rng.uniform(0.05, 0.12))
            _ramp(af, pos, min(pos + n, end), float(10 ** (rng.uniform(-18, -6) / 20)), 2)
            fric_fc[pos:pos + n] = rng.uniform(2500.0, 7000.0) * spk.vtl_factor
            pos += n
        n = frames(rng.uniform(0.12, 0.3))
        stop = min(pos + n, end)
        if stop - pos >= 4:
            v = int(rng.integers(len(VOWEL_TABLE)))
            target = VOWEL_TABLE[v] * np.asarray(spk.vowel_offsets[v]) * spk.vtl_factor
            glide = np.exp(rng.normal(0.0, 0.04, size=4))  # slight diphthongisation
            _ramp(av, pos, stop, float(rng.uniform(0.6, 1.0)), 3)
            formant_t += [pos + 0.25 * (stop - pos), pos + 0.75 * (stop - pos)]
            formant_v += [target, target * glide]
            accent = rng.normal(0.0, 1.0)
            decl = 1.0 - 2.0 * pos / num_frames  # declination, semitones in units of the range
            f0_t += [pos, 0.5 * (pos + stop), stop]
            f0_v += [decl + accent, decl + accent + 0.5 * rng.normal(), decl - 0.3 + accent]
        pos = stop
        if rng.uniform() < 0.35:  # pause
            pos += frames(rng.uniform(0.05, 0.2))
    t = np.arange(num_frames, dtype=np.float64)
    if not formant_t:  # too short for a vowel: a neutral tract
        formant_t, formant_v = [0.0], [VOWEL_TABLE.mean(axis=0) * spk.vtl_factor]
        f0_t, f0_v = [0.0], [0.0]
    fv = np.stack(formant_v)
    formants = np.stack([np.interp(t, formant_t, fv[:, k]) for k in range(4)], axis=1)
    semitones = np.interp(t, f0_t, f0_v) * spk.f0_range * 0.6 + rng.normal(0.0, 0.75)  # per-utterance key
    semitones += np.cumsum(rng.normal(0.0, 0.05, num_frames)) * 0.3  # slow drift
    f0 = spk.f0_mean * 2.0 ** (semitones / 12.0)
    return {"av": av, "af": af, "f0": np.clip(f0, 50.0, 500.0), "formants": formants, "fric_fc": fric_fc}


def glottal_source(spk: Speaker, f0: np.ndarray, av: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Sample-rate glottal flow derivative (Rosenberg pulses, jitter, shimmer) plus aspiration noise."""
    phase = np.cumsum(f0 / sr)
    n_cycles = int(1.25 * phase[-1]) + 2  # room for the cycles added by jitter
    jit = np.clip(1.0 + spk.jitter * rng.standard_normal(n_cycles), 0.8, 1.2)
    phase = np.cumsum(f0 * jit[phase.astype(np.int64)] / sr)
    cycle = phase.astype(np.int64)
    u = phase - cycle
    tp = spk.open_quotient * spk.speed_quotient / (1.0 + spk.speed_quotient)
    tn = spk.open_quotient / (1.0 + spk.speed_quotient)
    flow = np.where(u < tp, 0.5 - 0.5 * np.cos(np.pi * u / tp),
                    np.where(u < tp + tn, np.cos(0.5 * np.pi * (u - tp) / tn), 0.0))
    shim = np.clip(1.0 + spk.shimmer * rng.standard_normal(n_cycles), 0.5, 1.5)
    pulses = np.diff(flow, prepend=0.0) * shim[cycle] * av
    voiced = av > 0.3
    scale = float(np.sqrt(np.mean(pulses[voiced] ** 2))) if voiced.any() else 1.0
    aspiration = rng.standard_normal(len(f0)) * av * (0.3 + 0.7 * flow) * spk.breathiness * scale
    return pulses + aspiration


def resonator_response(freq: np.ndarray, bw: np.ndarray, omega: np.ndarray, sr: int) -> np.ndarray:
    """Complex response of 2-pole resonators (unit DC gain): ``freq``/``bw`` (frames, 1), ``omega`` (bins,)."""
    r = np.exp(-np.pi * bw / sr)
    r = np.where(freq < 0.45 * sr, r, 0.0)  # resonances above the band are left out
    c = 2.0 * r * np.cos(2.0 * np.pi * freq / sr)
    z1 = np.exp(-1j * omega)
    return (1.0 - c + r * r) / (1.0 - c * z1 + (r * r) * z1 * z1)


def synthesize_utterance(spk: Speaker, num_samples: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render one clean utterance of random content in ``spk``'s voice (float64, unit RMS)."""
    from scipy.signal import istft, stft

    hop = max(1, int(round(HOP_SECONDS * sr)))
    nperseg = 4 * hop
    num_frames = num_samples // hop + 1
    tr = control_tracks(spk, num_frames, rng)
    t_frames = np.arange(num_frames) * hop
    t_samples = np.arange(num_samples)
    f0 = np.interp(t_samples, t_frames, tr["f0"])
    av = np.interp(t_samples, t_frames, tr["av"])
    source = glottal_source(spk, f0, av, sr, rng)
    noise = rng.standard_normal(num_samples)

    kw = dict(fs=sr, window="hann", nperseg=nperseg, noverlap=nperseg - hop)
    freqs, times, src_spec = stft(source, **kw)
    _, _, noise_spec = stft(noise, **kw)
    frame_idx = np.clip(np.round(times * sr / hop).astype(np.int64), 0, num_frames - 1)
    omega = 2.0 * np.pi * freqs / sr

    formants = tr["formants"][frame_idx]
    bws = BASE_BANDWIDTHS * spk.bandwidth_scale * (1.0 + 0.1 * formants / 1000.0)
    tract = np.ones((len(frame_idx), len(freqs)), dtype=np.complex128)
    for k in range(4):
        tract *= resonator_response(formants[:, k:k + 1], bws[:, k:k + 1], omega, sr)
    tilt = 10.0 ** (spk.tilt_db_per_oct / 20.0 * np.log2(np.maximum(freqs, 100.0) / 1000.0))
    voiced_spec = src_spec * tract.T * tilt[:, None]

    fc = tr["fric_fc"][frame_idx][None, :]
    fric_env = 1.0 / (1.0 + ((freqs[:, None] - fc) / (0.35 * fc)) ** 2)
    fric_env *= (freqs[:, None] / (freqs[:, None] + 0.5 * fc)) ** 2
    fric_spec = noise_spec * fric_env * tr["af"][frame_idx][None, :]

    voiced_frames = tr["av"][frame_idx] > 0.5
    v_energy = np.mean(np.abs(voiced_spec[:, voiced_frames]) ** 2) if voiced_frames.any() else 1.0
    fric_frames = tr["af"][frame_idx] > 0.0
    if fric_frames.any():
        af = tr["af"][frame_idx][fric_frames]
        f_energy = np.mean(np.abs(fric_spec[:, fric_frames]) ** 2) / np.mean(af ** 2)
        fric_spec *= np.sqrt(v_energy / max(f_energy, 1e-20))
    _, y = istft(voiced_spec + fric_spec, **kw)
    y = y[:num_samples]
    if len(y) < num_samples:
        y = np.pad(y, (0, num_samples - len(y)))
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


# ---------------------------------------------------------------------------------------------
# Channel: EQ, reverberation, noise, gain (the noise, RIR and EQ generators also make the augmentation sets)


def make_noise(num_samples: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS coloured noise: ``white`` (flat), ``pink`` (1/f power) or ``brown`` (1/f^2 power)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
    spec = np.fft.rfft(rng.standard_normal(num_samples))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-alpha / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n=num_samples)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def make_rir(rt60: float, sr: int, rng: np.random.Generator, drr_db: float = 3.0) -> np.ndarray:
    """Synthetic room impulse response: a direct-path impulse plus exponentially decaying noise.

    ``rt60`` (s) is the 60 dB decay time; ``drr_db`` the direct-to-reverberant energy ratio.
    """
    n = max(2, int(rt60 * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail[0] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail ** 2))
    tail[0] = 1.0
    return tail / np.sqrt(np.sum(tail ** 2))


def random_eq(sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """A random biquad (RBJ shelf/peaking) or band-pass filter: ``(b, a, description)``."""
    from scipy.signal import butter

    kind = str(rng.choice(["lowshelf", "highshelf", "peaking", "bandpass"]))
    nyq = 0.5 * sr
    if kind == "bandpass":
        lo, hi = rng.uniform(80.0, 400.0), min(rng.uniform(3000.0, 7000.0), 0.9 * nyq)
        b, a = butter(2, [lo, hi], btype="bandpass", fs=sr)
        return b, a, f"bandpass {lo:.0f}-{hi:.0f} Hz"
    gain_db = float(rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 12.0))
    f0 = {"lowshelf": rng.uniform(100.0, 500.0), "highshelf": rng.uniform(1500.0, 5000.0),
          "peaking": rng.uniform(300.0, 4000.0)}[kind]
    f0 = min(f0, 0.8 * nyq)
    q = rng.uniform(0.5, 2.0) if kind == "peaking" else 0.707
    b, a = biquad(kind, f0, q, gain_db, sr)
    return b, a, f"{kind} {f0:.0f} Hz {gain_db:+.1f} dB"


def apply_channel(x: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Pass ``x`` through a random recording channel; returns the int16-ready float signal and its description."""
    from scipy.signal import fftconvolve, lfilter

    info: dict = {"eq": []}
    for _ in range(int(rng.integers(1, 3))):
        b, a, desc = random_eq(sr, rng)
        x = lfilter(b, a, x)
        info["eq"].append(desc)
    if rng.uniform() < 0.5:
        rt60 = float(rng.uniform(0.1, 0.5))
        x = fftconvolve(x, make_rir(rt60, sr, rng, drr_db=float(rng.uniform(-2.0, 8.0))))[:len(x)]
        info["rt60"] = round(rt60, 3)
    kind = str(rng.choice(NOISE_KINDS))
    snr = float(rng.uniform(5.0, 30.0))
    power = np.mean(x ** 2)
    x = x + make_noise(len(x), kind, rng) * np.sqrt(power / 10.0 ** (snr / 10.0))
    peak_db = float(rng.uniform(-25.0, -1.0))
    x = x * (10.0 ** (peak_db / 20.0) / (np.max(np.abs(x)) + 1e-12))
    info.update(noise=kind, snr_db=round(snr, 2), peak_dbfs=round(peak_db, 2))
    return x, info


# ---------------------------------------------------------------------------------------------
# Corpus layout


@dataclass
class UttJob:
    """One utterance to render: identity, voice, length, RNG seed and output path."""

    utt: str
    speaker: Speaker
    num_samples: int
    seed: list[int]
    path: str
    sample_rate: int


def render(job: UttJob) -> tuple[str, dict]:
    """Synthesise, pass through a channel and atomically write one WAV file; returns ``(utt, channel)``."""
    import soundfile as sf

    rng = np.random.default_rng(np.random.SeedSequence(job.seed))
    clean = synthesize_utterance(job.speaker, job.num_samples, job.sample_rate, rng)
    y, channel = apply_channel(clean, job.sample_rate, rng)
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, job.sample_rate, format="WAV", subtype="PCM_16")
    with atomic_write(job.path, "wb") as f:
        f.write(buf.getvalue())
    return job.utt, channel


def plan(args: argparse.Namespace, corpus_dir: Path) -> tuple[list[Speaker], list[UttJob]]:
    """All speakers and utterance jobs implied by the arguments (independent of ``--nj``)."""
    speakers: list[Speaker] = []
    jobs: list[UttJob] = []
    for split_id, (prefix, num) in enumerate([("mtr", args.num_train_speakers), ("mts", args.num_test_speakers)]):
        spks = draw_speakers(prefix, num, np.random.SeedSequence([args.seed, split_id]))
        for s_idx, spk in enumerate(spks):
            dur_rng = np.random.default_rng(np.random.SeedSequence([args.seed, split_id, s_idx, 1 << 20]))
            durs = dur_rng.uniform(args.min_dur, args.max_dur, size=args.utts_per_speaker)
            for u_idx, dur in enumerate(durs):
                utt = f"{spk.spk}-{u_idx + 1:04d}"
                jobs.append(UttJob(utt, spk, int(round(dur * args.sample_rate)), [args.seed, split_id, s_idx, u_idx],
                                   str(corpus_dir / "wav" / spk.spk / f"{utt}.wav"), args.sample_rate))
        speakers += spks
    return speakers, jobs


def marker_content(args: argparse.Namespace, data_dir: Path) -> dict:
    """What the stamp records: everything that determines the output."""
    keys = ["num_train_speakers", "num_test_speakers", "utts_per_speaker", "min_dur", "max_dur", "seed",
            "sample_rate", "num_trials"]
    return {"version": GENERATOR_VERSION, "data_dir": str(data_dir), **{k: getattr(args, k) for k in keys}}


def is_complete(corpus_dir: Path, data_dir: Path, marker: dict, jobs: list[UttJob]) -> bool:
    """True when the corpus's stamp records ``marker`` and every output file exists (a corpus made before
    stamps, whose ``.done`` marker holds ``marker``, is stamped once)."""
    stamp = Stamp(options=marker)
    legacy = corpus_dir / ".done"
    try:
        old = json.loads(legacy.read_text()) if legacy.is_file() else None
    except (OSError, ValueError):
        old = None
    if stamp.adopt(corpus_dir, old == marker):
        legacy.unlink()
    if not stamp.is_fresh(corpus_dir):
        return False
    needed = [data_dir / s / f for s in ("train", "test") for f in ("wav.scp", "utt2spk", "spk2utt")]
    needed += [data_dir / "test" / "trials", corpus_dir / "speakers.json", corpus_dir / "channels.json"]
    needed += [Path(j.path) for j in jobs]
    return all(p.is_file() for p in needed)


def generate(args: argparse.Namespace) -> bool:
    """Create the corpus and data dirs unless complete; returns False when it was skipped."""
    start = time.time()
    corpus_dir = Path(args.corpus_dir).resolve()
    data_dir = Path(args.data_dir).resolve()
    speakers, jobs = plan(args, corpus_dir)
    marker = marker_content(args, data_dir)
    if not args.force and is_complete(corpus_dir, data_dir, marker, jobs):
        print(f"{corpus_dir}: complete for these arguments, nothing to do (--force true to regenerate)")
        return False
    remove_stamp(corpus_dir)
    (corpus_dir / ".done").unlink(missing_ok=True)
    shutil.rmtree(corpus_dir / "wav", ignore_errors=True)
    for spk in speakers:
        (corpus_dir / "wav" / spk.spk).mkdir(parents=True, exist_ok=True)
    if args.nj > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(args.nj) as pool:
            channels = dict(pool.imap_unordered(render, jobs, chunksize=4))
    else:
        channels = dict(map(render, jobs))

    for name, obj in (("speakers.json", {s.spk: asdict(s) for s in speakers}), ("channels.json", channels)):
        with atomic_write(corpus_dir / name) as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
    for split, prefix in (("train", "mtr"), ("test", "mts")):
        sel = [j for j in jobs if j.utt.startswith(prefix)]
        write_core_tables(data_dir / split, {j.utt: j.path for j in sel}, {j.utt: j.speaker.spk for j in sel})
    test_utt2spk = {j.utt: j.speaker.spk for j in jobs if j.utt.startswith("mts")}
    num_tgt, num_non = count_pairs(test_utt2spk)   # half target (or all there are), the rest nontarget
    num_tgt = min(num_tgt, args.num_trials // 2)
    trials = sample_trials(test_utt2spk, num_tgt, min(num_non, args.num_trials - num_tgt), args.seed)
    write_trials(data_dir / "test" / "trials", trials)
    Stamp(options=marker).write(corpus_dir)

    hours = sum(j.num_samples for j in jobs) / args.sample_rate / 3600.0
    n_tgt = trials.num_target
    print(f"mini corpus: {args.num_train_speakers} train + {args.num_test_speakers} test speakers, "
          f"{len(jobs)} utts, {hours:.3f} h, {len(trials)} trials ({n_tgt} target) "
          f"in {time.time() - start:.1f} s -> {corpus_dir}, {data_dir}")
    return True


def get_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", help="where audio and speakers.json go (its stamp: CORPUS_DIR.stamp)")
    p.add_argument("data_dir", help="where the Kaldi data dirs train/ and test/ go")
    p.add_argument("--num-train-speakers", type=int, default=40)
    p.add_argument("--num-test-speakers", type=int, default=30)
    p.add_argument("--utts-per-speaker", type=int, default=16)
    p.add_argument("--min-dur", type=float, default=2.0, help="minimum utterance duration (s)")
    p.add_argument("--max-dur", type=float, default=4.0, help="maximum utterance duration (s)")
    p.add_argument("--num-trials", type=int, default=20000,
                   help="trials in test/trials (at most half target; fewer when there are fewer pairs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--nj", type=int, default=min(4, os.cpu_count() or 1), help="parallel worker processes")
    p.add_argument("--force", type=parse_bool, default=False, metavar="true|false",
                   help="regenerate even if complete (default false)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = get_parser().parse_args(argv)
    if args.num_train_speakers < 1 or args.num_test_speakers < 2 or args.utts_per_speaker < 2:
        raise SystemExit("need >= 1 train speaker, >= 2 test speakers and >= 2 utterances per speaker")
    if not 0.5 <= args.min_dur <= args.max_dur:
        raise SystemExit(f"need 0.5 <= --min-dur <= --max-dur, got {args.min_dur}, {args.max_dur}")
    if args.seed < 0:
        raise SystemExit(f"--seed must be >= 0, got {args.seed}")
    if args.sample_rate < 8000:
        raise SystemExit(f"--sample-rate must be >= 8000, got {args.sample_rate}")
    generate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
