"""Embedding extraction: a model directory + a Kaldi data dir → ``embeddings.ark/scp``.

A model directory (``exp/<name>``) holds ``config.yaml`` (with a ``model:`` block and
``sample_rate``) and, for trained models, ``model.pt``. Everything needed to reproduce
the embeddings is in that directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from sslspk.utils.config import ConfigError, load_yaml

MIN_SECONDS = 0.025   # one analysis window (fbank frame, WavLM CNN receptive field): shorter gives no frame

log = logging.getLogger(__name__)


def load_encoder(model_dir: str | os.PathLike, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Build the encoder described by ``model_dir/config.yaml`` and load ``model.pt`` when present.

    Without ``model.pt`` the encoder keeps its initial weights, drawn with seed ``train.seed``
    (default 0) exactly as training starts from: the "untrained" reference of a trained model.
    """
    import torch

    from sslspk.models import build_model

    model_dir = Path(model_dir)
    cfg = load_yaml(model_dir / "config.yaml")
    if "model" not in cfg:
        raise ConfigError(f"{model_dir / 'config.yaml'}: missing required 'model' section")
    if not isinstance(cfg.get("sample_rate", 16000), int):
        raise ConfigError(f"{model_dir / 'config.yaml'}: sample_rate must be an integer")
    ckpt = model_dir / "model.pt"
    if not ckpt.exists():
        torch.manual_seed(int((cfg.get("train") or {}).get("seed", 0)))
    model = build_model(cfg["model"])
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
                    max_batch_seconds: float = 300.0, sample_rate: int = 16000) -> list[np.ndarray]:
    """Embeddings of waveforms of any lengths, in input order (call under ``torch.inference_mode``).

    Utterances are sorted by length and embedded ``batch_size`` at a time (at most
    ``max_batch_seconds`` of padded audio per batch), zero-padded with their lengths passed to
    the model, which then gives the embeddings of one-by-one extraction (to float rounding).
    A model whose ``honours_lengths`` is false (e.g. WavLM Base+, see :mod:`sslspk.models.wavlm`)
    is only given batches of equal-length utterances.
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
    return out


def embed_data_dir(model: Any, data_dir: str | os.PathLike, sample_rate: int, device: str = "cpu",
                   progress: bool = True, batch_size: int = 1, channel: str = "mix",
                   shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, embedding)`` for every utterance of a data dir in its order (segments honoured).

    ``channel``: ``mix`` or ``first`` channel of multi-channel audio (the model config's ``data.channel``).
    ``shard=(i, n)``: only the utterances at positions ``i, i + n, i + 2n, ...`` (e.g. one DDP rank's part).

    With ``batch_size`` > 1, :func:`embed_waveforms` embeds windows of ``8 x batch_size``
    consecutive utterances, sorted by length within the window, ``batch_size`` at a time.
    """
    import torch
    from tqdm import tqdm

    from sslspk.data.audio import AudioError
    from sslspk.data.datadir import DataDir

    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    data = DataDir.load(data_dir)
    all_utts = data.utts[index::count]
    window = 1 if batch_size == 1 else 8 * batch_size
    with torch.inference_mode(), tqdm(total=len(all_utts), desc=f"embed {data_dir}", unit="utt",
                                      disable=not progress, mininterval=5) as bar:
        for start in range(0, len(all_utts), window):
            utts = all_utts[start:start + window]
            wavs = [data.load_audio(utt, sample_rate, channel) for utt in utts]   # errors name the utt
            for utt, wav in zip(utts, wavs):
                if len(wav) < MIN_SECONDS * sample_rate:
                    raise AudioError(f"utt {utt!r}: {len(wav)} samples ({len(wav) / sample_rate:.3f} s) is shorter "
                                     f"than one {1000 * MIN_SECONDS:g} ms analysis window: nothing to embed "
                                     "(leave it out with utils/subset_data_dir.sh)")
            yield from zip(utts, embed_waveforms(model, wavs, device, batch_size, sample_rate=sample_rate))
            bar.update(len(utts))
