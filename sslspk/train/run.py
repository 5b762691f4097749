"""Config → validated pieces → trainer: shared by ``train_ssl.py`` (and later fine-tuning)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sslspk.utils.config import ConfigError, from_dict, load_yaml, save_yaml

SECTIONS = {"ssl": ("sample_rate", "model", "data", "ssl", "train")}
DATA_KEYS = ("views", "augment")


def validate(cfg: dict[str, Any], kind: str, where: str) -> None:
    """Reject unknown or missing top-level sections before any work starts."""
    allowed = SECTIONS[kind]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(allowed)}")
    missing = [k for k in ("model", "data", kind, "train") if k not in cfg]
    if missing:
        raise ConfigError(f"{where}: missing required section(s) {', '.join(missing)}")
    bad = sorted(set(cfg["data"] or {}) - set(DATA_KEYS))
    if bad:
        raise ConfigError(f"{where}: data: unknown key(s) {', '.join(bad)}; valid: {', '.join(DATA_KEYS)}")


def train_from_config(config: str | os.PathLike, data_dir: str | os.PathLike, exp_dir: str | os.PathLike,
                      kind: str = "ssl", force: bool = False) -> Path:
    """Build everything from ``config`` (validated first), train into ``exp_dir``; returns model.pt."""
    exp_dir = Path(exp_dir)
    out = exp_dir / "model.pt"
    cfg = load_yaml(config)
    validate(cfg, kind, str(config))
    if out.exists() and not force:
        print(f"{out} exists: training already finished (use --force to train again)")
        return out
    from sslspk.data.dataset import CropDataset, parse_views
    from sslspk.models import build_model
    from sslspk.train.trainer import TrainConfig, Trainer

    train_cfg = from_dict(TrainConfig, cfg["train"], f"{config}: train")
    sample_rate = cfg.get("sample_rate", 16000)
    views = parse_views(cfg["data"].get("views"), f"{config}: data.views")
    import torch

    torch.manual_seed(train_cfg.seed)  # the initial weights depend on the seed only
    encoder = build_model(cfg["model"])
    dataset = CropDataset(data_dir, views, sample_rate, cfg["data"].get("augment"), seed=train_cfg.seed)
    from sslspk.ssl import build_ssl_task

    task = build_ssl_task(cfg["ssl"], encoder, dataset, train_cfg.epochs, train_cfg.seed)
    trainer = Trainer(train_cfg, exp_dir)
    if trainer.is_main:
        if force:
            shutil.rmtree(exp_dir / "checkpoints", ignore_errors=True)
            out.unlink(missing_ok=True)
        exp_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, exp_dir / "config.yaml")
    return trainer.fit(task, dataset)
