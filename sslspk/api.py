"""Python API: load a trained encoder, embed audio, verify pairs against a threshold.

>>> emb = SpeakerEmbedder.from_pretrained("exp/mini/baseline")      # doctest: +SKIP
>>> score, same = emb.verify("a.wav", "b.wav")                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import FormatError

Audio = Union[str, os.PathLike, np.ndarray]
THRESHOLD_FILE = "threshold.json"


class SpeakerEmbedder:
    """Wraps any ``nn.Module`` mapping waveforms ``[B, T]`` to embeddings ``[B, D]``.

    Scores are cosine similarities of the embeddings after optional ``mean`` subtraction
    and ``scale`` division (as ``bin/score.py --mean-scp [--var-norm]``); ``verify`` accepts a
    pair when the score is at least ``threshold``.
    """

    def __init__(self, model: Any, sample_rate: int = 16000, device: str = "cpu",
                 exp_dir: str | os.PathLike | None = None, threshold: float | None = None,
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.model = model.to(device).eval()
        self.sample_rate = int(sample_rate)
        self.device = device
        self.exp_dir = Path(exp_dir) if exp_dir is not None else None
        self.threshold = threshold
        self.mean = mean
        self.scale = scale

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu",
                        untrained: bool = False) -> "SpeakerEmbedder":
        """Load an experiment dir (``config.yaml`` + ``model.pt``) or a checkpoint file beside its config.

        A dir without ``model.pt`` (an unfinished training) is an error unless its model has no weights
        to learn or ``untrained`` asks for the initial weights (see :func:`sslspk.extraction.load_encoder`).

        A ``threshold.json`` in the dir (written by :meth:`calibrate_threshold`) sets the
        threshold and the score normalisation.
        """
        import torch

        from sslspk.extraction import load_encoder

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such experiment dir or checkpoint")
        exp_dir = path if path.is_dir() else path.parent
        model, cfg = load_encoder(exp_dir, device="cpu", untrained=untrained or path.is_file())
        if path.is_file() and path.resolve() != (exp_dir / "model.pt").resolve():
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"] if "model" in state else state)
        emb = cls(model, cfg.get("sample_rate", 16000), device, exp_dir)
        tfile = exp_dir / THRESHOLD_FILE
        if tfile.exists():
            try:
                d = json.loads(tfile.read_text())
                emb.threshold = float(d["threshold"])
                emb.mean = np.asarray(d["mean"]) if d.get("mean") is not None else None
                emb.scale = np.asarray(d["scale"]) if d.get("scale") is not None else None
            except (ValueError, KeyError, TypeError) as e:
                raise FormatError(tfile, None, f"not a threshold file: {e}") from e
        return emb

    # ------------------------------------------------------------------ embeddings
    def _waveform(self, audio: Audio, sample_rate: int | None) -> np.ndarray:
        """Samples of a path or array at the model's rate, checked as extraction checks them (an
        AudioError names the input). A path is read as a path, never run as a ``cmd |`` pipe."""
        from sslspk.data.audio import AudioError, check_length, check_samples, check_speech, load_audio, resample

        if isinstance(audio, np.ndarray):
            wav = np.asarray(audio, dtype=np.float32)
            if wav.ndim != 1:
                raise AudioError(f"expected a mono waveform [T], got shape {wav.shape}")
            check_samples(wav, "the waveform")
            if sample_rate is not None and sample_rate != self.sample_rate:
                wav = resample(wav, int(sample_rate), self.sample_rate)
        else:
            wav = load_audio(str(audio), self.sample_rate, pipes=False)
        what = "the waveform" if isinstance(audio, np.ndarray) else str(audio)
        check_length(len(wav), self.sample_rate, what)
        check_speech(wav, self.sample_rate, what)
        return wav

    def embed(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """Embedding ``[D]`` of a file path or a waveform array.

        Arrays are taken at ``sample_rate`` (default: the model's) and resampled to the model's rate.
        Audio that extraction rejects (unreadable, NaN/inf, silent, no speech: no 25 ms frame at
        -60 dBFS or more, shorter than one analysis window) is an AudioError here too.
        """
        return self.embed_batch([audio], progress=False, sample_rate=sample_rate)[0]

    def embed_batch(self, items: Sequence[Audio], progress: bool = True,
                    sample_rate: int | None = None, batch_size: int = 1) -> np.ndarray:
        """Embeddings ``[N, D]`` of several paths/arrays, ``batch_size`` per forward pass (sorted by
        length and padded: the same embeddings; worth it on GPU, on CPU one at a time is fastest)."""
        import torch
        from tqdm import tqdm

        from sslspk.extraction import check_nonzero, embed_waveforms

        wavs = [self._waveform(a, sample_rate) for a in tqdm(items, desc="embed", unit="utt", disable=not progress)]
        if not wavs:
            raise InputError("embed_batch: no inputs")
        names = [f"waveform {i}" if isinstance(a, np.ndarray) else str(a) for i, a in enumerate(items)]
        with torch.inference_mode():
            emb = embed_waveforms(self.model, wavs, self.device, batch_size, sample_rate=self.sample_rate, names=names)
        check_nonzero(emb, names)
        return np.stack(emb)

    # ------------------------------------------------------------------ scoring
    def score_embeddings(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine scores of the rows of ``a`` and ``b`` (``[D]`` or ``[N, D]``) after normalisation.

        An InputError names what cannot be compared: sets (``a``, ``b``, the normalisation's mean and
        scale) of different dimensions, NaN/inf values, a row of zero norm."""
        from sslspk.data.embeddings import MIN_NORM, check_same_dim, zero_norm_rows
        from sslspk.scoring.cosine import normalise_embeddings

        a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
        dims = {"a": a2.shape[1], "b": b2.shape[1]}
        for name, v in (("the normalisation mean", self.mean), ("the normalisation scale", self.scale)):
            if v is not None:
                dims[name] = np.shape(v)[-1]
        check_same_dim(dims)
        for name, x in (("a", a2), ("b", b2)):
            if not np.isfinite(x).all():
                raise InputError(f"embedding {name}: NaN/inf values")
            zero = zero_norm_rows(x)
            if zero.size:
                raise InputError(f"embedding {name}" + (f" row {int(zero[0])}" if len(x) > 1 else "")
                                 + f" has zero norm (below {MIN_NORM:g}): no direction to score")
        s = np.einsum("ij,ij->i", normalise_embeddings(a2, self.mean, self.scale),
                      normalise_embeddings(b2, self.mean, self.scale))
        return s

    def score(self, a: Audio, b: Audio, sample_rate: int | None = None) -> float:
        """Cosine score of two recordings (paths or arrays)."""
        return float(self.score_embeddings(self.embed(a, sample_rate), self.embed(b, sample_rate))[0])

    def verify(self, a: Audio, b: Audio, sample_rate: int | None = None) -> tuple[float, bool]:
        """``(score, same_speaker)``; needs a threshold (:meth:`set_threshold` or :meth:`calibrate_threshold`)."""
        if self.threshold is None:
            raise InputError("no decision threshold: call set_threshold(value) or calibrate_threshold(trials, audio)")
        s = self.score(a, b, sample_rate)
        return s, bool(s >= self.threshold)

    def set_threshold(self, value: float) -> None:
        """Set the decision threshold on the score."""
        self.threshold = float(value)

    def set_normalization(self, reference: np.ndarray | None, var_norm: bool = False) -> None:
        """Subtract the mean (``var_norm``: and divide by the std) of ``reference`` embeddings ``[N, D]``."""
        if reference is None:
            self.mean = self.scale = None
            return
        ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
        if not np.isfinite(ref).all():
            raise InputError("set_normalization: the reference embeddings have NaN/inf values")
        self.mean = ref.mean(axis=0)
        self.scale = ref.std(axis=0) if var_norm else None

    def calibrate_threshold(self, trials: str | os.PathLike, audio: str | os.PathLike | Mapping[str, str],
                            save: bool = True, progress: bool = False,
                            drop_bad_trials: bool = False) -> dict[str, float]:
        """Set the threshold to the EER threshold of a labelled dev trial list.

        ``audio`` maps the trial ids to audio: a Kaldi data dir (``wav.scp`` [+ ``segments``]),
        a ``wav.scp`` file, or a dict ``{id: path}``. With ``save`` and an experiment dir, the
        threshold (and the score normalisation) is written to ``exp_dir/threshold.json``.
        Repeated trials and self-pairs are an error, or with ``drop_bad_trials`` dropped (and counted in
        a logged warning). Returns ``{"threshold", "eer", "num_trials"}``.
        """
        from sslspk.data.trials import read_trials
        from sslspk.scoring.metrics import compute_metrics

        t = read_trials(trials, drop_bad_trials)
        if t.labels is None:
            raise FormatError(trials, None, "calibrate_threshold needs a labelled trial list")
        ids = sorted(set(t.enroll) | set(t.test))
        loader = _audio_loader(audio, self.sample_rate)
        missing = [u for u in ids if not loader.has(u)]
        if missing:
            raise MissingIdError(f"{len(missing)} trial id(s) of {trials} have no audio in {loader.source}: "
                           + ", ".join(missing[:5]))
        emb = self.embed_batch([loader.load(u) for u in ids], progress=progress)
        row = {u: i for i, u in enumerate(ids)}
        scores = self.score_embeddings(emb[[row[e] for e in t.enroll]], emb[[row[x] for x in t.test]])
        m = compute_metrics(scores, t.labels)
        # Between the EER threshold's score and the next lower one, any value gives the same decisions.
        self.threshold = float(m.eer_threshold)
        info = {"threshold": self.threshold, "eer": m.eer, "num_trials": len(t), "trials": str(trials)}
        if save and self.exp_dir is not None:
            from sslspk.utils.fileio import atomic_write

            with atomic_write(self.exp_dir / THRESHOLD_FILE) as f:
                json.dump({**info, "mean": None if self.mean is None else self.mean.tolist(),
                           "scale": None if self.scale is None else self.scale.tolist()}, f, indent=2)
        return info


def embed_files(model: str, audio: Sequence[str], device: str = "cpu") -> dict[str, Any]:
    """``embed.py``: ``{"model", "sample_rate", "dim", "embeddings": {file: [D floats, 7 decimals]}}`` of the audio
    files ``audio`` embedded by the model dir (or checkpoint) ``model``."""
    emb = SpeakerEmbedder.from_pretrained(model, device=device)
    vecs = emb.embed_batch(list(audio), progress=False)
    return {"model": model, "sample_rate": emb.sample_rate, "dim": int(vecs.shape[1]),
            "embeddings": {a: [round(float(x), 7) for x in v] for a, v in zip(audio, vecs)}}


def verify_files(model: str, audio_a: str, audio_b: str, threshold: float | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """``verify.py``: ``{"a", "b", "score", "threshold", "same_speaker"}`` of two audio files scored by ``model``;
    the threshold is ``threshold``, else the model dir's ``threshold.json``; without either ``same_speaker``
    is None."""
    emb = SpeakerEmbedder.from_pretrained(model, device=device)
    if threshold is not None:
        emb.set_threshold(threshold)
    score = emb.score(audio_a, audio_b)
    same = None if emb.threshold is None else bool(score >= emb.threshold)
    return {"a": audio_a, "b": audio_b, "score": score, "threshold": emb.threshold, "same_speaker": same}


class _AudioSource:
    """Id → waveform from a data dir, a wav.scp or a mapping."""

    def __init__(self, has, load, source: str):
        self.has, self.load, self.source = has, load, source


def _audio_loader(audio: str | os.PathLike | Mapping[str, str], sample_rate: int) -> _AudioSource:
    from sslspk.data.audio import load_audio

    if isinstance(audio, Mapping):
        return _AudioSource(audio.__contains__, lambda u: load_audio(str(audio[u]), sample_rate, pipes=False),
                            "the given mapping")
    p = Path(audio)
    if p.is_dir():
        from sslspk.data.datadir import DataDir

        d = DataDir.load(p)
        utts = set(d.utts)
        return _AudioSource(utts.__contains__, lambda u: d.load_audio(u, sample_rate), str(p))
    from sslspk.utils.fileio import read_kv

    table = read_kv(p)
    return _AudioSource(table.__contains__, lambda u: load_audio(table[u], sample_rate), str(p))
