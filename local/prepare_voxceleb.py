#!/usr/bin/env python3
"""Prepare Kaldi data dirs for VoxCeleb1/2 (egs/voxceleb/v1 stage 0; MUSAN and RIRS_NOISES are listed by
local/prepare_augmentation.py).

Expected layout (what the official archives unpack to; every part is optional)::

    VOX1_DIR/wav/<spk>/<video>/<n>.wav        VoxCeleb1 dev + test (vox1_dev_wav.zip, vox1_test_wav.zip)
    VOX1_DIR/veri_test2.txt                    Vox1-O (cleaned), list_test_all2.txt (E), list_test_hard2.txt (H)
    VOX2_DIR/dev/aac/<spk>/<video>/<n>.m4a     VoxCeleb2 dev (vox2_dev_aac.zip); .wav files are taken as they are

Utterance ids are the path below the ``wav/`` or ``aac/`` root without extension
(``id10270/5r0dWxy17C8/00001``); the speaker is the first component. Outputs::

    DATA_DIR/vox2_dev/{wav.scp,utt2spk,spk2utt}    m4a converted to FLAC (default) or WAV files, or ffmpeg pipes
    DATA_DIR/vox1_all/{wav.scp,utt2spk,spk2utt}    all of VoxCeleb1 (the utterances of Vox1-E/H)
    DATA_DIR/vox1_test/{...}                       the speakers of the Vox1-O list
    DATA_DIR/vox1_test/trials/vox1_O               Kaldi format ``<enroll> <test> target|nontarget``
    DATA_DIR/vox1_all/trials/vox1_{E,H}

Official trial lines ``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav`` are checked
(label against the speakers, ids present in the data dir) and errors name the file and line.

VoxCeleb2's m4a (AAC) are decoded once, by ``--nj`` parallel ffmpeg processes, to 16-bit mono FLAC
(``--m4a flac``, default) or WAV files below ``--convert-dir`` (default: beside the VoxCeleb2 folder,
``<vox2-dir>_flac``), and ``wav.scp`` names those files: training then reads a file per crop instead of
starting an ffmpeg process on the whole recording (``--m4a pipe``: ``ffmpeg ... - |`` entries, no
conversion; many times fewer chunks/s per loader core, docs/benchmarks.md). Disk for VoxCeleb2 dev
(2,300 h): WAV 265 GB, FLAC measured at about 0.6 of that (docs/scaling.md). The conversion resumes:
each file is written under a temporary name and renamed when complete, files already converted are
skipped, and a failed file is reported (with ffmpeg's message) after all the others are done.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sslspk.data.tables import write_core_tables  # noqa: E402
from sslspk.data.trials import Trials, check_pairs, write_trials  # noqa: E402
from sslspk.utils.errors import InputError  # noqa: E402
from sslspk.utils.fileio import FormatError, check_outputs_are_not_inputs, iter_lines  # noqa: E402

M4A_MODES = ("flac", "wav", "pipe")
TRIAL_LISTS = {"vox1_O": "veri_test2.txt", "vox1_E": "list_test_all2.txt", "vox1_H": "list_test_hard2.txt"}


def audio_root(base: Path, candidates: tuple[str, ...]) -> Path:
    """The first of ``base/<candidate>`` that is a directory, else ``base`` itself."""
    for c in candidates:
        if (base / c).is_dir():
            return base / c
    if not base.is_dir():
        raise SystemExit(f"error: directory not found: {base}")
    return base


def scan_utts(root: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """``{<spk>/<video>/<n>: path}`` of the files ``root/*/*/*.<ext>`` (the first extension wins)."""
    found: dict[str, Path] = {}
    for ext in exts:
        for p in root.glob(f"*/*/*.{ext}"):
            utt = p.relative_to(root).with_suffix("").as_posix()
            found.setdefault(utt, p.resolve())
    if not found:
        raise SystemExit(f"error: no <spk>/<video>/<n>.{{{','.join(exts)}}} files below {root}")
    return found


def speaker(utt: str) -> str:
    """The speaker of a VoxCeleb utterance id (its first path component)."""
    return utt.split("/", 1)[0]


def convert_trials(path: Path, utts: set[str]) -> Trials:
    """Official ``1|0 <enroll>.wav <test>.wav`` lines, with the recipe's utterance ids (``.wav`` dropped).

    Raises :class:`FormatError` on a malformed line, an id missing from ``utts``, a label that
    contradicts the speakers, a repeated trial or a self-pair.
    """
    enrolls, tests, labels = [], [], []
    for n, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise FormatError(path, n, f"expected '1|0 <enroll>.wav <test>.wav', got {line!r}")
        label, *pair = fields
        ids = [p[:-4] if p.endswith(".wav") else p for p in pair]
        for u in ids:
            if u not in utts:
                raise FormatError(path, n, f"utterance {u!r} is not in the VoxCeleb1 audio")
        if (label == "1") != (speaker(ids[0]) == speaker(ids[1])):
            raise FormatError(path, n, f"label {label} contradicts the speakers of {ids[0]!r} and {ids[1]!r}")
        enrolls.append(ids[0])
        tests.append(ids[1])
        labels.append(int(label))
    check_pairs(path, list(zip(enrolls, tests)), range(1, len(enrolls) + 1))   # no repeated trial, no self-pair
    return Trials(enrolls, tests, np.array(labels, dtype=np.int8))


def prepare_vox1(vox1_dir: Path, trials_dir: Path, data: Path) -> None:
    """``vox1_all``, ``vox1_test`` (speakers of Vox1-O) and the converted trial lists."""
    files = scan_utts(audio_root(vox1_dir, ("wav",)), ("wav",))
    utt2spk = {u: speaker(u) for u in files}
    o_list = trials_dir / TRIAL_LISTS["vox1_O"]
    if not o_list.is_file():
        raise SystemExit(f"error: {o_list} not found: the Vox1-O list defines the test speakers "
                         f"(download it with local/download_voxceleb.sh or pass --trials-dir)")
    write_core_tables(data / "vox1_all", {u: str(p) for u, p in files.items()}, utt2spk)
    for name, fname in TRIAL_LISTS.items():
        src = trials_dir / fname
        if not src.is_file():
            print(f"warning: {src} not found: trial list {name} skipped", file=sys.stderr)
            continue
        try:
            trials = convert_trials(src, set(files))
        except FormatError as e:
            raise SystemExit(f"error: {e}") from e
        if name == "vox1_O":
            test_spks = {speaker(u) for u in (*trials.enroll, *trials.test)}
            test = {u: s for u, s in utt2spk.items() if s in test_spks}
            write_core_tables(data / "vox1_test", {u: str(files[u]) for u in test}, test)
            out = data / "vox1_test" / "trials" / name
        else:
            out = data / "vox1_all" / "trials" / name
        write_trials(out, trials)  # in the official order
        print(f"{name}: {len(trials)} trials ({trials.num_target} target) from {src} -> {out}")
    print(f"VoxCeleb1: {len(files)} utts, {len(set(utt2spk.values()))} speakers -> {data}/vox1_all")


def ffmpeg_pipe(path: Path, ffmpeg: str, sample_rate: int) -> str:
    """The ``wav.scp`` pipe decoding ``path`` to mono WAV at ``sample_rate``."""
    return f"{ffmpeg} -v 8 -i {shlex.quote(str(path))} -f wav -ar {sample_rate} -ac 1 - |"


def convert_one(src: Path, dst: Path, ffmpeg: str, sample_rate: int) -> None:
    """Decode ``src`` to a 16-bit mono ``dst`` (``.flac`` or ``.wav``: by its suffix), written under a
    temporary name beside it and then renamed (never half-written); nothing to do when ``dst`` exists."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{dst.suffix}")
    codec = ["-c:a", "flac", "-sample_fmt", "s16"] if dst.suffix == ".flac" else ["-c:a", "pcm_s16le"]
    r = subprocess.run([ffmpeg, "-nostdin", "-v", "8", "-y", "-i", str(src), "-ar", str(sample_rate), "-ac", "1",
                        *codec, str(tmp)], capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed on {src} (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    os.replace(tmp, dst)


def convert_all(jobs: dict[Path, Path], ffmpeg: str, sample_rate: int, nj: int, every: float = 60.0) -> None:
    """Convert every ``src -> dst`` of ``jobs`` with ``nj`` ffmpeg processes at a time, skipping the
    destinations that exist (a killed run resumes); progress every ``every`` seconds. RuntimeError
    naming the failed files once all the others are done."""
    todo = sorted(src for src, dst in jobs.items() if not dst.exists())
    print(f"VoxCeleb2: {len(jobs) - len(todo)} of {len(jobs)} files already converted; converting {len(todo)} "
          f"in {nj} jobs", flush=True)
    failed: list[str] = []

    def one(src: Path) -> None:
        try:
            convert_one(src, jobs[src], ffmpeg, sample_rate)
        except RuntimeError as e:
            failed.append(str(e))

    t0 = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=nj) as pool:
        for i, _ in enumerate(pool.map(one, todo), 1):
            if time.monotonic() - last >= every:
                last = time.monotonic()
                print(f"VoxCeleb2: converted {i} of {len(todo)} ({i / (last - t0):.0f} files/s)", flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(todo)} conversions failed (the others are done: run again "
                           "to retry these):\n" + "\n".join(failed[:10]))


def prepare_vox2(vox2_dir: Path, data: Path, m4a_mode: str, convert_dir: Path | None, nj: int, ffmpeg: str,
                 sample_rate: int) -> None:
    """``vox2_dev``: m4a converted to ``m4a_mode`` (flac|wav) files below ``convert_dir`` (default
    ``<vox2_dir>_<mode>``) in ``nj`` parallel jobs, or named as ffmpeg pipes (``pipe``)."""
    if m4a_mode not in M4A_MODES:
        raise ValueError(f"m4a mode must be one of {', '.join(M4A_MODES)}, got {m4a_mode!r}")
    files = scan_utts(audio_root(vox2_dir, ("dev/aac", "aac", "dev/wav", "wav")), ("m4a", "wav"))
    m4a = {u: p for u, p in files.items() if p.suffix == ".m4a"}
    if m4a and shutil.which(ffmpeg) is None:
        raise SystemExit(f"error: {len(m4a)} m4a files need ffmpeg ('{ffmpeg}' not found; e.g. apt-get install ffmpeg)")
    wav_scp = {u: str(p) for u, p in files.items() if p.suffix == ".wav"}
    if m4a and m4a_mode != "pipe":
        out = (convert_dir or vox2_dir.resolve().with_name(f"{vox2_dir.resolve().name}_{m4a_mode}")).resolve()
        dst = {u: out / f"{u}.{m4a_mode}" for u in m4a}
        convert_all({m4a[u]: dst[u] for u in m4a}, ffmpeg, sample_rate, nj)
        wav_scp.update({u: str(p) for u, p in dst.items()})
    else:
        wav_scp.update({u: ffmpeg_pipe(p, ffmpeg, sample_rate) for u, p in m4a.items()})
    utt2spk = {u: speaker(u) for u in files}
    write_core_tables(data / "vox2_dev", wav_scp, utt2spk)
    how = ("WAV" if not m4a else "ffmpeg pipes" if m4a_mode == "pipe" else f"{m4a_mode.upper()} files in {out}")
    print(f"VoxCeleb2: {len(files)} utts ({how}), {len(set(utt2spk.values()))} speakers -> {data}/vox2_dev")


def get_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", help="where the Kaldi data dirs go (e.g. data)")
    p.add_argument("--vox1-dir", type=Path, help="VoxCeleb1 (wav/<spk>/<video>/<n>.wav below it)")
    p.add_argument("--trials-dir", type=Path, help="folder of the official trial lists (default: --vox1-dir)")
    p.add_argument("--vox2-dir", type=Path, help="VoxCeleb2 (dev/aac/<spk>/<video>/<n>.m4a below it)")
    p.add_argument("--m4a", choices=M4A_MODES, default="flac",
                   help="VoxCeleb2 m4a: decoded once to FLAC (default) or WAV files, or pipe: ffmpeg at every read")
    p.add_argument("--convert-dir", type=Path,
                   help="where the converted files go (default: <vox2-dir>_flac or _wav, beside --vox2-dir)")
    p.add_argument("--nj", type=int, default=4, help="parallel ffmpeg conversions (default 4)")
    p.add_argument("--ffmpeg", default="ffmpeg", help="ffmpeg executable (default: ffmpeg on PATH)")
    p.add_argument("--sample-rate", type=int, default=16000, help="rate of the decoded m4a (default 16000)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = get_parser().parse_args(argv)
    data = Path(args.data_dir)
    if not any((args.vox1_dir, args.vox2_dir)):
        raise SystemExit("error: nothing to prepare: give --vox1-dir and/or --vox2-dir")
    trials_dir = args.trials_dir or args.vox1_dir
    try:
        check_outputs_are_not_inputs(
            [args.vox1_dir, args.vox2_dir, *(trials_dir / f for f in TRIAL_LISTS.values() if trials_dir)],
            [data / name for name in ("vox1_all", "vox1_test", "vox2_dev")])
    except InputError as e:
        raise SystemExit(f"error: {e}") from e
    if args.vox1_dir:
        prepare_vox1(args.vox1_dir, trials_dir, data)
    if args.vox2_dir:
        try:
            prepare_vox2(args.vox2_dir, data, args.m4a, args.convert_dir, args.nj, args.ffmpeg, args.sample_rate)
        except RuntimeError as e:
            raise SystemExit(f"error: {e}") from e
    return 0


if __name__ == "__main__":
    sys.exit(main())
