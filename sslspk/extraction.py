"""Embedding extraction: a model directory + a Kaldi data dir → ``embeddings.ark/scp``.

A model directory (``exp/<name>``) holds ``config.yaml`` (with a ``model:`` block and
``sample_rate``) and, for trained models, ``model.pt``. Everything needed to reproduce
the embeddings is in that directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from sslspk.utils.config import check_sections, config_sample_rate, load_yaml
from sslspk.utils.errors import InputError

if TYPE_CHECKING:
    from sslspk.utils.stamp import Stamp

GPU_BATCH_SIZE = 64   # default utterances per forward pass on a GPU (one at a time is fastest on a CPU)
#: what a data dir's embeddings depend on: files of the model dir, then of the data dir (see inputs_digest)
MODEL_FILES = ("config.yaml", "model.pt")
DATA_FILES = ("wav.scp", "utt2spk", "segments")
#: a model dir holding this file is embedded with its initial weights when it has no model.pt
UNTRAINED_MARKER = "UNTRAINED"
#: test-time segment length: 400 frames x 160 + 240 samples at 16 kHz (theolepage/wavlm_ssl_sv:DatasetLoader.py
#: loadWAV ``max_audio``, with configs/wavlm_mhfa_dlg_lc.yaml ``eval_frames: 400``)
SEGMENT_SECONDS = 4.015

log = logging.getLogger(__name__)


def default_batch_size(device: str) -> int:
    """Utterances per forward pass on ``device``: 1 on the CPU (fastest there, docs/benchmarks.md),
    :data:`GPU_BATCH_SIZE` on a GPU (length-sorted and padded: the same embeddings)."""
    return 1 if device == "cpu" else GPU_BATCH_SIZE


def extraction_stamp(model_dir: str | os.PathLike, data_dir: str | os.PathLike, options: str = "") -> Stamp:
    """The stamp of a data dir's embeddings: the model dir's :data:`MODEL_FILES`, the data dir's
    :data:`DATA_FILES` and ``options`` (see :func:`extraction_options`); ``steps/extract_embeddings.sh``
    gives ``stamp.py`` the same."""
    from sslspk.utils.stamp import Stamp

    return Stamp([Path(model_dir) / f for f in MODEL_FILES] + [Path(data_dir) / f for f in DATA_FILES],
                 dict(o.split("=", 1) for o in options.split()))


def inputs_digest(model_dir: str | os.PathLike, data_dir: str | os.PathLike, options: str = "") -> str:
    """The ``<scp>.inputs`` record of an extraction made before stamps (migration only: such an scp is
    accepted once when it holds this, then stamped): SHA-256 of the model dir's :data:`MODEL_FILES` and
    the data dir's :data:`DATA_FILES` (one line per file, its SHA-256 or ``-`` when absent, hashed
    again), followed by ``options`` when they are not empty."""
    from sslspk.utils.fileio import files_digest

    digest = files_digest([Path(model_dir) / f for f in MODEL_FILES] + [Path(data_dir) / f for f in DATA_FILES])
    return f"{digest} {options}" if options else digest


def extraction_options(segments: int = 0, segment_seconds: float = SEGMENT_SECONDS,
                       max_seconds: float | None = None) -> str:
    """The extraction options that change the embeddings, as recorded beside them (empty for the
    default whole-utterance embeddings; ``steps/extract_embeddings.sh`` writes the same with ``printf %g``)."""
    if segments:
        return f"segments={segments} segment_seconds={segment_seconds:g}"
    return f"max_seconds={max_seconds:g}" if max_seconds is not None else ""


def segment_windows(num_samples: int, num_segments: int, segment_samples: int) -> tuple[np.ndarray, int]:
    """Start samples of ``num_segments`` evenly spaced windows of ``segment_samples`` over an utterance
    of ``num_samples``, and the length it is wrap-padded to first (the authors' test-time windows,
    theolepage/wavlm_ssl_sv:DatasetLoader.py ``loadWAV`` with ``evalmode``): an utterance no longer
    than a window is repeated up to ``segment_samples + 1`` samples; the starts are
    ``linspace(0, length - segment_samples, num_segments)`` truncated to integers."""
    if num_segments < 1 or segment_samples < 1:
        raise InputError(f"need at least one segment of at least one sample, got {num_segments} x {segment_samples}")
    length = num_samples if num_samples > segment_samples else segment_samples + 1
    return np.linspace(0, length - segment_samples, num=num_segments).astype(np.int64), length


def utterance_segments(wav: np.ndarray, num_segments: int, segment_samples: int) -> np.ndarray:
    """The ``[num_segments, segment_samples]`` windows of :func:`segment_windows` cut from ``wav``."""
    starts, length = segment_windows(len(wav), num_segments, segment_samples)
    if length > len(wav):
        wav = np.pad(wav, (0, length - len(wav)), mode="wrap")
    return np.stack([wav[s:s + segment_samples] for s in starts])


def load_encoder(model_dir: str | os.PathLike, device: str = "cpu",
                 untrained: bool = False) -> tuple[Any, dict[str, Any]]:
    """Build the encoder described by ``model_dir/config.yaml`` and load its finished ``model.pt``.

    A dir without ``model.pt`` (e.g. a training killed before its end) is an InputError, unless its
    model has no weights to learn (the statistics baseline), or the initial weights are asked for:
    ``untrained`` or a file :data:`UNTRAINED_MARKER` in the dir (``steps/stages.sh`` stage 6 writes it in
    ``<exp>/ssl_untrained``). The encoder then keeps its initial weights, drawn with seed ``train.seed``
    (default 0) exactly as training starts from: the "untrained" reference of a trained model.
    """
    import torch

    from sslspk.data.audio import check_data_options
    from sslspk.models import build_model, with_sample_rate

    model_dir = Path(model_dir)
    where = str(model_dir / "config.yaml")
    cfg = load_yaml(where)
    check_sections(cfg, "model", where)
    check_data_options(**{k: v for k, v in (cfg.get("data") or {}).items() if k in ("too_short", "channel")},
                       where=f"{where}: data")
    model_cfg = with_sample_rate(cfg["model"], config_sample_rate(cfg, where), where)
    ckpt = model_dir / "model.pt"
    if not ckpt.exists():
        torch.manual_seed(int((cfg.get("train") or {}).get("seed", 0)))
    model = build_model(model_cfg)
    if (not ckpt.exists() and not untrained and not (model_dir / UNTRAINED_MARKER).exists()
            and next(model.parameters(), None) is not None):
        ckpts = sorted((model_dir / "checkpoints").glob("*.pt")) if (model_dir / "checkpoints").is_dir() else []
        state = (f"its training has not finished ({len(ckpts)} epoch checkpoint(s) in {model_dir / 'checkpoints'}: "
                 "run the same training again to resume it)" if ckpts else "it holds no trained model")
        raise InputError(f"{model_dir}: no model.pt: {state}; to embed with the initial weights on purpose (an "
                         f"untrained reference), create {model_dir / UNTRAINED_MARKER}")
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"] if "model" in state else state)
    return model.to(device).eval(), cfg


def length_batches(lengths: Sequence[int], batch_size: int, max_samples: int,
                   equal_lengths_only: bool = False) -> list[list[int]]:
    """Indices of ``lengths`` grouped longest first into batches of at most ``batch_size`` items and
    ``max_samples`` padded samples (a longer item is a batch of its own); with ``equal_lengths_only``
    a batch holds items of one length."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if (last is not None and len(last) < batch_size and (len(last) + 1) * lengths[last[0]] <= max_samples
                and not (equal_lengths_only and lengths[i] != lengths[last[0]])):
            last.append(i)
        else:
            batches.append([i])
    return batches


def embed_waveforms(model: Any, wavs: Sequence[np.ndarray], device: str = "cpu", batch_size: int = 1,
                    max_batch_seconds: float = 300.0, sample_rate: int = 16000,
                    names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Embeddings of waveforms of any lengths, in input order (call under ``torch.inference_mode``).

    Utterances are sorted by length and embedded ``batch_size`` at a time (at most
    ``max_batch_seconds`` of padded audio per batch), zero-padded with their lengths passed to
    the model, which then gives the embeddings of one-by-one extraction (to float rounding).
    A model whose ``honours_lengths`` is false (e.g. WavLM Base+, see :mod:`sslspk.models.wavlm`)
    is only given batches of equal-length utterances. A non-finite embedding is an InputError naming
    the input (``names[i]``, else its index).
    """
    import torch

    lengths = [len(w) for w in wavs]
    pads = bool(getattr(model, "honours_lengths", False))
    out: list[np.ndarray] = [np.empty(0)] * len(wavs)
    for batch in length_batches(lengths, batch_size, int(max_batch_seconds * sample_rate), not pads):
        x = torch.zeros(len(batch), lengths[batch[0]])
        for row, i in enumerate(batch):
            x[row, :lengths[i]] = torch.as_tensor(wavs[i])
        n = torch.tensor([lengths[i] for i in batch])
        emb = model(x.to(device)) if bool((n == n[0]).all()) else model(x.to(device), n.to(device))
        for row, i in enumerate(batch):
            out[i] = emb[row].float().cpu().numpy()
            if not np.isfinite(out[i]).all():
                raise InputError(f"{names[i] if names else f'input {i}'}: non-finite embedding of {lengths[i]} "
                                 f"samples ({lengths[i] / sample_rate:.3f} s): too short for this model?")
    return out


def check_nonzero(embeddings: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """InputError naming the first input whose embedding has zero norm (no direction: its cosine with
    anything is 0), as :func:`sslspk.data.embeddings.load_embeddings` rejects it in an scp."""
    from sslspk.data.embeddings import MIN_NORM, zero_norm_rows

    zero = zero_norm_rows(np.stack(embeddings))
    if zero.size:
        raise InputError(f"{names[int(zero[0])]}: the model gives an embedding of zero norm (below {MIN_NORM:g}): "
                         "nothing to score")


def embed_data_dir(model: Any, data_dir: str | os.PathLike, sample_rate: int, device: str = "cpu",
                   progress: bool = True, batch_size: int = 1, channel: str = "mix",
                   shard: tuple[int, int] = (0, 1), max_seconds: float | None = None,
                   segments: int = 0, segment_seconds: float = SEGMENT_SECONDS) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, embedding)`` for every utterance of a data dir in its order (segments honoured).

    ``channel``: ``mix`` or ``first`` channel of multi-channel audio (the model config's ``data.channel``).
    ``shard=(i, n)``: only the utterances at positions ``i, i + n, i + 2n, ...`` (e.g. one DDP rank's part).
    ``max_seconds``: embed only the first ``max_seconds`` of each utterance (None: all of it).
    ``segments`` > 0: yield instead the ``[segments, D]`` embeddings of the :func:`utterance_segments`
    windows of ``segment_seconds`` (of the whole utterance, ``max_seconds`` not applying).

    With ``batch_size`` > 1, :func:`embed_waveforms` embeds windows of ``8 x batch_size``
    consecutive utterances (``batch_size // segments`` with segments), sorted by length within the window,
    ``batch_size`` at a time.
    """
    import torch
    from tqdm import tqdm

    from sslspk.data.audio import check_length
    from sslspk.data.datadir import DataDir

    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    if max_seconds is not None and (segments or max_seconds <= 0):
        raise InputError(f"max_seconds={max_seconds} must be > 0 and applies to whole utterances, not segments")
    segment_samples = round(segment_seconds * sample_rate)
    data = DataDir.load(data_dir)
    all_utts = data.utts[index::count]
    if segments:
        window = max(1, batch_size // segments)
    else:
        window = 1 if batch_size == 1 else 8 * batch_size
    with torch.inference_mode(), tqdm(total=len(all_utts), desc=f"embed {data_dir}", unit="utt",
                                      disable=not progress, mininterval=5) as bar:
        for start in range(0, len(all_utts), window):
            utts = all_utts[start:start + window]
            wavs = [data.load_audio(utt, sample_rate, channel) for utt in utts]   # errors name the utt
            names = [f"utt {utt!r} ({data.audio_entry(utt)[0]})" for utt in utts]
            for name, wav in zip(names, wavs):
                check_length(len(wav), sample_rate, name)
            if segments:
                pieces = [seg for wav in wavs for seg in utterance_segments(wav, segments, segment_samples)]
                seg_names = [f"{name} segment {j}" for name in names for j in range(segments)]
                emb = embed_waveforms(model, pieces, device, batch_size, sample_rate=sample_rate, names=seg_names)
                check_nonzero(emb, seg_names)
                yield from ((utt, np.stack(emb[i * segments:(i + 1) * segments])) for i, utt in enumerate(utts))
            else:
                if max_seconds is not None:
                    wavs = [wav[:round(max_seconds * sample_rate)] for wav in wavs]
                emb = embed_waveforms(model, wavs, device, batch_size, sample_rate=sample_rate, names=names)
                check_nonzero(emb, names)
                yield from zip(utts, emb)
            bar.update(len(utts))


def extract_to_scp(model_dir: str, data_dir: str, out_ark: str, out_scp: str, *, device: str = "auto",
                   batch_size: int | None = None, num_threads: int = 1, max_seconds: float | None = None,
                   segments: int = 0, segment_seconds: float | None = None, force: bool = False) -> int | None:
    """What ``bin/extract_embeddings.py`` does (its ``--help`` says what each option does): embed
    ``data_dir`` with the model of ``model_dir`` into ``out_ark``/``out_scp`` unless ``out_scp`` was
    already made from the same inputs and options (its stamp, :func:`extraction_stamp`; one made before stamps:
    its old ``<out_scp>.inputs`` record, then stamped) (then None), under a lock on ``out_scp``, and stamp it;
    returns the number of embeddings written (printed too)."""
    from sslspk.data.tables import MANAGED_FILES
    from sslspk.utils.errors import InputError
    from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files, exclusive_lock
    from sslspk.utils.stamp import remove_stamp

    check_outputs_are_not_inputs([*dir_and_files(model_dir, MODEL_FILES),
                                  *dir_and_files(data_dir, MANAGED_FILES)], [out_ark, out_scp])

    scp = Path(out_scp)
    record = Path(f"{scp}.inputs")
    with exclusive_lock(scp.with_name(f".{scp.name}.lock"), f"extraction into {scp}"):
        if segments < 0 or (segment_seconds is not None and not segments):
            raise InputError(f"--segments must be >= 0 and --segment-seconds needs --segments, got "
                             f"--segments {segments} --segment-seconds {segment_seconds}")
        if segments and max_seconds is not None:
            raise InputError("--max-seconds applies to whole-utterance embeddings, not to --segments")
        for name, value in (("--max-seconds", max_seconds), ("--segment-seconds", segment_seconds)):
            if value is not None and not value > 0:
                raise InputError(f"{name} must be > 0, got {value}")
        seconds = SEGMENT_SECONDS if segment_seconds is None else segment_seconds
        options = extraction_options(segments, seconds, max_seconds)
        stamp = extraction_stamp(model_dir, data_dir, options)
        if scp.exists() and not force:
            legacy = record.is_file() and record.read_text().strip() == inputs_digest(model_dir, data_dir, options)
            if stamp.adopt(scp, legacy) or stamp.is_fresh(scp):
                record.unlink(missing_ok=True)
                print(f"{scp} exists, made from the same model and data: nothing to do (use --force true to redo)")
                return None
            print(f"{scp} exists but was not made from this model and data: extracting again")
        record.unlink(missing_ok=True)
        remove_stamp(scp)
        n = extract(model_dir, data_dir, out_ark, out_scp, device, batch_size, num_threads, max_seconds, segments,
                    seconds)
        stamp.write(scp)
    print(f"wrote {n} embeddings to {scp}")
    return n


def extract(model_dir: str, data_dir: str, out_ark: str, out_scp: str, device: str, batch_size: int | None,
            num_threads: int, max_seconds: float | None, segments: int, segment_seconds: float) -> int:
    """Embed every utterance of ``data_dir`` (its first ``max_seconds``, or ``segments`` windows of
    ``segment_seconds``: see :func:`sslspk.extraction.embed_data_dir`) into ``out_ark``/``out_scp`` on
    ``device`` (``auto`` resolved), ``batch_size`` at a time (None: by device); returns the count."""
    import torch

    from sslspk.data.embeddings import write_embeddings
    from sslspk.utils.device import resolve_device
    from sslspk.utils.errors import InputError

    device = resolve_device(device)
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    print(f"extracting on {device}, {batch_size} utterance(s) per forward pass", flush=True)
    torch.set_num_threads(num_threads)
    model, cfg = load_encoder(model_dir, device)
    return write_embeddings(out_ark, out_scp,
                            embed_data_dir(model, data_dir, cfg.get("sample_rate", 16000), device,
                                           batch_size=batch_size,
                                           channel=(cfg.get("data") or {}).get("channel", "mix"),
                                           max_seconds=max_seconds, segments=segments,
                                           segment_seconds=segment_seconds))
