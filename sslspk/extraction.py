"""Embedding extraction: a model directory + a Kaldi data dir → ``embeddings.ark/scp``.

A model directory (``exp/<name>``) holds ``config.yaml`` (with a ``model:`` block and
``sample_rate``) and, for trained models, ``model.pt``. Everything needed to reproduce
the embeddings is in that directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sslspk.utils.config import ConfigError, load_yaml

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


def embed_data_dir(model: Any, data_dir: str | os.PathLike, sample_rate: int, device: str = "cpu",
                   progress: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, embedding)`` for every utterance of a data dir (segments honoured)."""
    import torch
    from tqdm import tqdm

    from sslspk.data.audio import load_audio
    from sslspk.data.datadir import DataDir

    data = DataDir.load(data_dir)
    with torch.inference_mode():
        for utt in tqdm(data.utts, desc=f"embed {data_dir}", unit="utt", disable=not progress, mininterval=5):
            entry, start, end = data.audio_entry(utt)
            wav = torch.from_numpy(load_audio(entry, sample_rate, start, end)).to(device)
            yield utt, model(wav.unsqueeze(0))[0].float().cpu().numpy()
