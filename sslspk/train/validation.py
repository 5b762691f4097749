"""Validation during training: EER and minDCF of the model being trained on a dev trial list.

The encoder that would be exported (``TrainTask.export_state``: e.g. DINO's teacher) embeds every
utterance of the dev data dir with the library's extraction (``sslspk.extraction.embed_data_dir``,
whole utterances, one at a time), and the trials are scored by plain cosine
(``sslspk.scoring.cosine.score_trials``: length normalisation, no mean subtraction, no score
normalisation), so the figure needs nothing but the dev data and is what stage 6's plain ``cosine``
row would give for that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sslspk.utils.config import ConfigError


@dataclass
class ValidationConfig:
    """The optional ``validation:`` block of a training config (paths relative to the recipe dir, the
    working directory of the run, like the other paths of a config)."""

    data: str                # Kaldi data dir of the dev utterances
    trials: str              # labelled trial list over them (``enroll test target|nontarget``)
    every_epochs: int = 1    # validate after every N-th epoch (and after the last one)

    def __post_init__(self) -> None:
        if self.every_epochs < 1:
            raise ConfigError(f"validation.every_epochs must be >= 1, got {self.every_epochs}")

    def validated_epochs(self, epochs: int) -> int:
        """How many of ``epochs`` epochs are validated."""
        return len({e for e in range(self.every_epochs, epochs + 1, self.every_epochs)} | {epochs})


class Validator:
    """Scores ``cfg.trials`` with the embeddings of ``cfg.data`` by the encoder of a task (see module doc).
    The trial list and the data dir are checked when it is built, before any training."""

    def __init__(self, cfg: ValidationConfig, model_cfg: dict[str, Any], sample_rate: int, channel: str = "mix",
                 where: str = "validation"):
        from sslspk.data.datadir import DataDir
        from sslspk.data.trials import read_trials

        self.cfg, self.model_cfg, self.sample_rate, self.channel = cfg, model_cfg, sample_rate, channel
        self.trials = read_trials(cfg.trials)
        if self.trials.labels is None:
            raise ConfigError(f"{where}: trials {cfg.trials}: unlabelled list; validation needs target/nontarget")
        utts = set(DataDir.load(cfg.data).utts)
        missing = sorted({u for u in (*self.trials.enroll, *self.trials.test) if u not in utts})
        if missing:
            raise ConfigError(f"{where}: {len(missing)} utterance(s) of {cfg.trials} are not in {cfg.data}, "
                              f"e.g. {missing[0]!r}")
        self.model: Any = None

    def __call__(self, task: Any, device: Any) -> dict[str, float]:
        """``eer`` (fraction), ``min_dcf_0.01`` and ``min_dcf_0.05`` of the encoder ``task`` exports."""
        import torch

        from sslspk.extraction import embed_data_dir
        from sslspk.models import build_model
        from sslspk.scoring.cosine import score_trials
        from sslspk.scoring.metrics import compute_metrics

        if self.model is None:
            self.model = build_model(self.model_cfg)
        self.model.load_state_dict(task.export_state())
        self.model.to(device).eval()
        keys, embs = [], []
        for utt, emb in embed_data_dir(self.model, self.cfg.data, self.sample_rate, str(device), progress=False,
                                       channel=self.channel):
            keys.append(utt)
            embs.append(emb)
        self.model.cpu()
        with torch.no_grad():
            scores = score_trials((keys, np.stack(embs)), self.trials.enroll, self.trials.test, source=self.cfg.data)
        m = compute_metrics(scores, self.trials.labels, p_targets=(0.01, 0.05))
        return {"eer": m.eer, **{f"min_dcf_{p}": v for p, v in m.min_dcf.items()}}
