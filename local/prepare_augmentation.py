#!/usr/bin/env python3
"""Augmentation sources for a recipe: noise, music, babble and room impulse responses as data dirs.

Usage: local/prepare_augmentation.py [--musan-dir DIR] [--rirs-dir DIR] [--audio-dir DIR] [options] DATA_DIR

Writes ``DATA_DIR/{noise,music,babble,rirs}/{wav.scp,utt2spk,spk2utt}`` (each id maps to itself),
what the ``augment:`` block of a training config names as ``source``. Two kinds of sets:

* real ones, when you have them: MUSAN (``--musan-dir``: its ``noise/``, ``music/`` and ``speech/``,
  the last for babble) and RIRS_NOISES (``--rirs-dir``: its ``simulated_rirs/``), listed in place;
* otherwise synthetic stand-ins, made offline and deterministically (``--seed``) under ``--audio-dir``:
  coloured, filtered and modulated noises (5 s), "music" (harmonic tones in a rhythm over a bass line,
  with percussive bursts, 8 s), babble sources (3 s of clean speech by extra voices ``mbb*`` of the
  mini corpus's synthesizer, ``local/make_mini_corpus.py``) and room impulse responses (pre-delay,
  direct-path peak, exponentially decaying noise tail with RT60 0.2-0.8 s). They stand in for
  MUSAN/RIRS_NOISES in the recipes sized for this machine; real sets are closer to real recordings.

A stamp (``AUDIO_DIR.stamp``, sslspk/utils/stamp.py: the options) makes a re-run with the same options a no-op.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOCAL = Path(__file__).resolve().parent
REPO_ROOT = LOCAL.parent
for p in (REPO_ROOT, LOCAL):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from make_mini_corpus import (  # noqa: E402
    NOISE_KINDS,
    Speaker,
    draw_speakers,
    make_noise,
    make_rir,
    random_eq,
    synthesize_utterance,
)

from sslspk.data.tables import write_core_tables  # noqa: E402
from sslspk.utils.config import parse_bool  # noqa: E402
from sslspk.utils.errors import InputError  # noqa: E402
from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs  # noqa: E402
from sslspk.utils.stamp import Stamp, remove_stamp  # noqa: E402

SETS = ("noise", "music", "babble", "rirs")
NOISE_SECONDS, MUSIC_SECONDS, BABBLE_SECONDS = 5.0, 8.0, 3.0
BABBLE_UTTS_PER_SPEAKER = 2
VERSION = 1   # of the synthetic sets: bump when their synthesis changes


def make_aug_noise(num_samples: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Coloured noise through 1-2 random EQs, optionally amplitude-modulated and with a tonal hum."""
    from scipy.signal import lfilter

    kind = str(rng.choice(NOISE_KINDS))
    x = make_noise(num_samples, kind, rng)
    info: dict = {"kind": kind, "eq": []}
    for _ in range(int(rng.integers(1, 3))):
        b, a, desc = random_eq(sr, rng)
        x = lfilter(b, a, x)
        info["eq"].append(desc)
    t = np.arange(num_samples) / sr
    if rng.uniform() < 0.5:
        rate, depth = float(rng.uniform(0.5, 4.0)), float(rng.uniform(0.3, 0.9))
        x = x * (1.0 - depth * 0.5 * (1.0 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))))
        info["am"] = [round(rate, 2), round(depth, 2)]
    if rng.uniform() < 0.3:
        f0 = float(rng.uniform(50.0, 120.0))
        hum = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
        x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) + hum * float(rng.uniform(0.2, 1.0))
        info["hum_hz"] = round(f0, 1)
    return x, info


def make_music(num_samples: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Harmonic tones (pentatonic melody and chords) on a beat grid over a bass line, with percussive bursts."""
    bpm = float(rng.uniform(80.0, 160.0))
    beat = int(round(60.0 / bpm * sr))
    root = float(110.0 * 2.0 ** (rng.integers(0, 12) / 12.0))
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    n_harm = int(rng.integers(3, 9))
    rolloff = float(rng.uniform(0.7, 2.0))  # harmonic k has amplitude k**-rolloff
    decay = float(rng.uniform(2.0, 8.0))  # note envelope decay rate (1/s)
    y = np.zeros(num_samples + 4 * beat)

    def note(start: int, length: int, freq: float, amp: float) -> None:
        t = np.arange(length) / sr
        env = np.minimum(t / 0.01, 1.0) * np.exp(-decay * t)
        tone = sum(np.sin(2 * np.pi * k * freq * t) * k ** -rolloff for k in range(1, n_harm + 1)
                   if k * freq < 0.45 * sr)
        y[start:start + length] += amp * env * tone

    for b in range(num_samples // beat + 1):
        pos = b * beat
        if rng.uniform() < 0.85:  # melody
            dur = beat * int(rng.choice([1, 1, 2]))
            note(pos, dur, 2 * root * 2.0 ** (scale[rng.integers(len(scale))] / 12.0), 1.0)
        if b % 2 == 0:  # bass on every other beat
            note(pos, 2 * beat, root / 2 * 2.0 ** (scale[rng.integers(3)] / 12.0), 0.8)
        if b % 4 == 0 and rng.uniform() < 0.6:  # chord
            for step in rng.choice(scale[:5], size=2, replace=False):
                note(pos, 4 * beat, root * 2.0 ** (step / 12.0), 0.4)
        n = min(int(0.05 * sr), len(y) - pos)  # percussion: decaying noise burst on each beat
        y[pos:pos + n] += 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.01 * sr))
    return y[:num_samples], {"bpm": round(bpm, 1), "root_hz": round(root, 1), "harmonics": n_harm}


def make_aug_rir(sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """RIR with RT60 in 0.2-0.8 s, a 0-10 ms pre-delay and a direct path that is the largest |sample|."""
    rt60 = float(rng.uniform(0.2, 0.8))
    drr = float(rng.uniform(-3.0, 6.0))
    delay = int(rng.integers(0, int(0.01 * sr) + 1))
    h = np.concatenate([np.zeros(delay), make_rir(rt60, sr, rng, drr_db=drr)])
    return h, {"rt60": round(rt60, 3), "drr_db": round(drr, 2), "delay_samples": delay}


@dataclass
class AugJob:
    """One augmentation file to render: set, id, length, RNG seed, output path (babble: its speaker)."""

    kind: str  # noise | music | babble | rirs
    key: str
    num_samples: int
    seed: list[int]
    path: str
    sample_rate: int
    speaker: Speaker | None = None


def render_aug(job: AugJob) -> tuple[str, dict]:
    """Synthesise and atomically write one augmentation file (peak -6 dBFS; RIR peak 0.9); returns ``(key, info)``."""
    import soundfile as sf

    rng = np.random.default_rng(np.random.SeedSequence(job.seed))
    sr = job.sample_rate
    if job.kind == "noise":
        y, info = make_aug_noise(job.num_samples, sr, rng)
    elif job.kind == "music":
        y, info = make_music(job.num_samples, sr, rng)
    elif job.kind == "babble":
        y, info = synthesize_utterance(job.speaker, job.num_samples, sr, rng), {"speaker": job.speaker.spk}
    else:
        y, info = make_aug_rir(sr, rng)
    y = y * ((0.9 if job.kind == "rirs" else 0.5) / (np.max(np.abs(y)) + 1e-12))
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sr, format="WAV", subtype="PCM_16")
    with atomic_write(job.path, "wb") as f:
        f.write(buf.getvalue())
    return job.key, {"set": job.kind, **info}


def plan_synthetic(counts: dict[str, int], seed: int, sample_rate: int, audio_dir: Path) -> list[AugJob]:
    """Jobs of the synthetic sets (ids ``noise-0001``, ``music-0001``, ``mbb0001-0001``, ``rir-0001``)."""
    sr = sample_rate
    jobs: list[AugJob] = []
    for set_id, (kind, seconds) in enumerate([("noise", NOISE_SECONDS), ("music", MUSIC_SECONDS)]):
        jobs += [AugJob(kind, f"{kind}-{i + 1:04d}", int(seconds * sr), [seed, 10 + set_id, i],
                        str(audio_dir / "noise" / kind / f"{kind}-{i + 1:04d}.wav"), sr) for i in range(counts[kind])]
    n_spk = -(-counts["babble"] // BABBLE_UTTS_PER_SPEAKER)
    spks = draw_speakers("mbb", n_spk, np.random.SeedSequence([seed, 12]))
    for i in range(counts["babble"]):
        spk, u = spks[i // BABBLE_UTTS_PER_SPEAKER], i % BABBLE_UTTS_PER_SPEAKER
        key = f"{spk.spk}-{u + 1:04d}"
        jobs.append(AugJob("babble", key, int(BABBLE_SECONDS * sr), [seed, 12, i],
                           str(audio_dir / "noise" / "babble" / f"{key}.wav"), sr, spk))
    jobs += [AugJob("rirs", f"rir-{i + 1:04d}", 0, [seed, 13, i], str(audio_dir / "rirs" / f"rir-{i + 1:04d}.wav"),
                    sr) for i in range(counts["rirs"])]
    return jobs


def make_synthetic(kinds: list[str], counts: dict[str, int], seed: int, sample_rate: int, audio_dir: Path,
                   data_dir: Path, nj: int, force: bool) -> None:
    """Render the synthetic sets ``kinds`` under ``audio_dir`` (unless complete) and write their data dirs."""
    jobs = [j for j in plan_synthetic(counts, seed, sample_rate, audio_dir) if j.kind in kinds]
    marker = {"version": VERSION, "seed": seed, "sample_rate": sample_rate, **{k: counts[k] for k in kinds}}
    stamp, legacy = Stamp(options=marker), audio_dir / ".done"   # .done: the record of sets made before stamps
    if stamp.adopt(audio_dir, legacy.is_file() and json.loads(legacy.read_text()) == marker):
        legacy.unlink()
    complete = (stamp.is_fresh(audio_dir) and all(Path(j.path).is_file() for j in jobs)
                and (audio_dir / "augment.json").is_file())
    if force or not complete:
        start = time.time()
        remove_stamp(audio_dir)
        legacy.unlink(missing_ok=True)
        for sub in ("noise", "rirs"):
            shutil.rmtree(audio_dir / sub, ignore_errors=True)
        for j in jobs:
            Path(j.path).parent.mkdir(parents=True, exist_ok=True)
        if nj > 1:
            from multiprocessing import get_context

            with get_context("fork").Pool(nj) as pool:
                info = dict(pool.imap_unordered(render_aug, jobs, chunksize=2))
        else:
            info = dict(map(render_aug, jobs))
        with atomic_write(audio_dir / "augment.json") as f:
            json.dump(info, f, indent=1, sort_keys=True)
            f.write("\n")
        stamp.write(audio_dir)
        print(f"synthetic augmentation sets: {', '.join(f'{counts[k]} {k}' for k in kinds)} "
              f"in {time.time() - start:.1f} s -> {audio_dir}")
    for kind in kinds:
        sel = {j.key: j.path for j in jobs if j.kind == kind}
        write_core_tables(data_dir / kind, sel, {k: k for k in sel})


def list_audio(root: Path, out: Path) -> int:
    """A data dir (id -> id) of every ``*.wav`` below ``root``; ids are the relative paths without extension."""
    files = {p.relative_to(root).with_suffix("").as_posix(): str(p.resolve()) for p in root.rglob("*.wav")}
    if not files:
        raise SystemExit(f"error: no .wav files below {root}")
    write_core_tables(out, files, {k: k for k in files})
    return len(files)


def get_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=Path, help="where the data dirs noise/ music/ babble/ rirs/ go")
    p.add_argument("--musan-dir", type=Path, help="MUSAN (noise/, music/, speech/ below it): real noise, music, babble")
    p.add_argument("--rirs-dir", type=Path, help="RIRS_NOISES (simulated_rirs/ below it): real room responses")
    p.add_argument("--audio-dir", type=Path, help="where the synthetic sets' audio goes (default DATA_DIR/audio)")
    p.add_argument("--num-noise", type=int, default=20, help=f"synthetic noise files ({NOISE_SECONDS:g} s)")
    p.add_argument("--num-music", type=int, default=10, help=f"synthetic music files ({MUSIC_SECONDS:g} s)")
    p.add_argument("--num-babble", type=int, default=20,
                   help=f"synthetic babble utterances ({BABBLE_SECONDS:g} s, {BABBLE_UTTS_PER_SPEAKER} per voice)")
    p.add_argument("--num-rirs", type=int, default=30, help="synthetic room impulse responses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--nj", type=int, default=min(4, os.cpu_count() or 1), help="parallel worker processes")
    p.add_argument("--force", type=parse_bool, default=False, metavar="true|false",
                   help="synthesise again even if complete (default false)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = get_parser().parse_args(argv)
    counts = {"noise": args.num_noise, "music": args.num_music, "babble": args.num_babble, "rirs": args.num_rirs}
    if min(counts.values()) < 1:
        raise SystemExit("--num-noise/--num-music/--num-babble/--num-rirs must be >= 1")
    real = {}
    if args.musan_dir:
        real.update(noise=args.musan_dir / "noise", music=args.musan_dir / "music", babble=args.musan_dir / "speech")
    if args.rirs_dir:
        real["rirs"] = args.rirs_dir / "simulated_rirs"
    try:
        check_outputs_are_not_inputs([args.musan_dir, args.rirs_dir, *real.values()],
                                     [args.audio_dir, *(args.data_dir / kind for kind in SETS)])
    except InputError as e:
        raise SystemExit(f"error: {e}") from e
    for kind, root in real.items():
        print(f"{kind}: {list_audio(root, args.data_dir / kind)} files of {root} -> {args.data_dir / kind}")
    synthetic = [k for k in SETS if k not in real]
    if synthetic:
        audio_dir = (args.audio_dir or args.data_dir / "audio").resolve()
        make_synthetic(synthetic, counts, args.seed, args.sample_rate, audio_dir, args.data_dir, args.nj, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
