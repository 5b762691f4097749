"""Config → validated pieces → trainer: shared by ``train_ssl.py`` and ``train_pseudo.py``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from sslspk.data.tables import MANAGED_FILES
from sslspk.extraction import MODEL_FILES
from sslspk.utils.config import ConfigError, check_sections, config_sample_rate, from_dict, load_yaml, save_yaml
from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs, dir_and_files, exclusive_lock, files_digest

#: held (flock) by the main process of a training for all of it, in its exp dir
LOCK_FILE = ".lock"


def check_config(cfg: dict[str, Any], kind: str, where: str) -> dict[str, Any]:
    """Every check a training config can have before any data or model is touched: sections,
    keys and value types of train, data, ssl (ssl) or loss/finetune/dlg_lc (pseudo), and its one
    sample rate (that of the model's front-end too).
    Returns the parsed sections: ``train``, ``views`` and, for pseudo, ``loss``, ``finetune``,
    ``dlg_lc`` (None when absent)."""
    from sslspk.data.audio import check_data_options
    from sslspk.models import with_sample_rate
    from sslspk.train.dataset import parse_views
    from sslspk.train.trainer import TrainConfig

    check_sections(cfg, kind, where)
    sample_rate = config_sample_rate(cfg, where)
    if "model" in cfg:
        with_sample_rate(cfg["model"], sample_rate, where)
    train_cfg = from_dict(TrainConfig, cfg["train"], f"{where}: train")
    views = parse_views(cfg["data"].get("views"), f"{where}: data.views")
    check_data_options(**{k: cfg["data"][k] for k in ("too_short", "channel") if k in cfg["data"]},
                       where=f"{where}: data")
    if kind == "ssl":
        from sslspk.ssl import parse_ssl_config

        parse_ssl_config(cfg["ssl"], f"{where}: ssl")
    else:
        from sslspk.supervised import DLGLCConfig, FinetuneConfig, LossConfig

        return {"train": train_cfg, "views": views, "loss": from_dict(LossConfig, cfg["loss"], f"{where}: loss"),
                "finetune": from_dict(FinetuneConfig, cfg.get("finetune"), f"{where}: finetune"),
                "dlg_lc": from_dict(DLGLCConfig, cfg["dlg_lc"], f"{where}: dlg_lc") if cfg.get("dlg_lc") else None}
    return {"train": train_cfg, "views": views}


def _model_block(cfg: dict[str, Any], init: str | os.PathLike | None, where: str) -> dict[str, Any]:
    """The ``model:`` block: from the config, or from the ``init`` model dir (they must agree)."""
    if init is None:
        if "model" not in cfg:
            raise ConfigError(f"{where}: missing 'model' section (or pass an initial model dir)")
        return cfg["model"]
    init_model = load_yaml(Path(init) / "config.yaml")["model"]
    if "model" in cfg and cfg["model"] != init_model:
        raise ConfigError(f"{where}: 'model' differs from that of the initial model {init}; drop it to inherit")
    return init_model


def training_inputs(cfg: dict[str, Any], data_dir: str | os.PathLike,
                    init: str | os.PathLike | None) -> dict[str, str]:
    """SHA-256 digests of what a training depends on: its full config (with the inherited model block),
    the data dir's tables and the initial model's weights (``-`` without one)."""
    from sslspk.extraction import DATA_FILES

    return {"config": hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest(),
            "data": files_digest(Path(data_dir) / f for f in DATA_FILES),
            "initial model": files_digest([Path(init) / "model.pt"]) if init is not None else "-"}


def changed_inputs(exp_dir: Path, inputs: dict[str, str], cfg: dict[str, Any]) -> list[str]:
    """Which of ``inputs`` differ from those recorded in ``exp_dir/inputs.json`` (by an earlier
    training there); an exp dir from before that record is judged by its ``config.yaml`` alone."""
    record = exp_dir / "inputs.json"
    if record.is_file():
        old = json.loads(record.read_text())
        return [k for k, v in inputs.items() if old.get(k) != v]
    if (exp_dir / "config.yaml").is_file() and load_yaml(exp_dir / "config.yaml") != cfg:
        return ["config"]
    return []


def load_classifier_from_init(task: Any, init: str | os.PathLike | None, where: str) -> None:
    """finetune.classifier_from_init: the AAM classes of ``init``'s last epoch checkpoint into ``task``
    (trained on the same pseudo-labels: the number of classes must agree)."""
    import torch

    from sslspk.train.trainer import last_checkpoint

    if init is None:
        raise ConfigError(f"{where}: finetune.classifier_from_init needs an initial model (--init)")
    ckpt = last_checkpoint(Path(init))
    if ckpt is None:
        raise ConfigError(f"{where}: finetune.classifier_from_init: no checkpoint in {Path(init) / 'checkpoints'}")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["task"]
    classes = {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}
    own = task.classifier.state_dict()
    if {k: v.shape for k, v in classes.items()} != {k: v.shape for k, v in own.items()}:
        raise ConfigError(f"{where}: finetune.classifier_from_init: the classifier of {ckpt} "
                          f"({tuple(classes.get('weight', torch.empty(0)).shape)}) does not fit this training's "
                          f"({tuple(own['weight'].shape)}): train on the same pseudo-labels")
    task.classifier.load_state_dict(classes)
    print(f"classifier: {task.classifier.num_classes} classes from {ckpt}")


def train_from_config(config: str | os.PathLike, data_dir: str | os.PathLike, exp_dir: str | os.PathLike,
                      kind: str = "ssl", force: bool = False, init: str | os.PathLike | None = None,
                      ref_utt2spk: str | os.PathLike | None = None) -> Path:
    """Build everything from ``config`` (validated first), train into ``exp_dir``; returns model.pt.

    ``kind`` is ``ssl`` (unlabelled) or ``pseudo`` (labels = the speakers of ``data_dir``'s
    utt2spk, e.g. clustering output). ``init`` (or the config's ``init:``): a model dir whose
    ``model.pt`` initialises the encoder and whose ``model:`` block it inherits.
    ``ref_utt2spk``: true speakers, for diagnostics only.
    """
    exp_dir = Path(exp_dir)
    out = exp_dir / "model.pt"
    cfg = load_yaml(config)
    parsed = check_config(cfg, kind, str(config))
    train_cfg, views = parsed["train"], parsed["views"]
    if kind == "pseudo":
        init = inherit_model(cfg, init if init is not None else cfg.get("init"), str(config))
    check_outputs_are_not_inputs(
        [config, *dir_and_files(data_dir, MANAGED_FILES), *dir_and_files(init, MODEL_FILES), ref_utt2spk],
        dir_and_files(exp_dir, (*MODEL_FILES, "inputs.json", "train.log")))
    if kind == "pseudo":
        check_speakers(data_dir)
    inputs = training_inputs(cfg, data_dir, init)
    force = restart_if_changed(exp_dir, inputs, cfg, force)
    if out.exists() and not force:
        print(f"{out} exists: training already finished (use --force to train again)")
        return out
    from sslspk.train.dataset import CropDataset
    from sslspk.train.trainer import Trainer

    sample_rate = config_sample_rate(cfg, str(config))
    encoder, pretrained = build_encoder(cfg, parsed, kind, init, sample_rate, str(config))
    dataset = CropDataset(data_dir, views, sample_rate, cfg["data"].get("augment"), seed=train_cfg.seed,
                          too_short=cfg["data"].get("too_short", "repeat"), channel=cfg["data"].get("channel", "mix"),
                          threads=train_cfg.loader_threads if train_cfg.num_workers == 0 else 1)
    if kind == "ssl":
        from sslspk.ssl import build_ssl_task

        task = build_ssl_task(cfg["ssl"], encoder, dataset, train_cfg.epochs, train_cfg.seed)
    else:
        from sslspk.supervised import SupervisedTask

        labels, num_classes, true = speaker_labels(dataset, ref_utt2spk)
        task = SupervisedTask(encoder, num_classes, len(dataset), parsed["loss"], parsed["finetune"],
                              parsed["dlg_lc"], labels=labels, true_labels=true, pretrained=pretrained)
        if parsed["finetune"].classifier_from_init:
            load_classifier_from_init(task, init, str(config))
    trainer = Trainer(train_cfg, exp_dir)
    with contextlib.ExitStack() as held:
        if trainer.is_main:   # one training per exp dir: a second one fails here, before writing anything
            held.enter_context(exclusive_lock(exp_dir / LOCK_FILE, f"{exp_dir}: training", wait=False))
            if force:
                shutil.rmtree(exp_dir / "checkpoints", ignore_errors=True)
                out.unlink(missing_ok=True)
            save_yaml(cfg, exp_dir / "config.yaml")
            with atomic_write(exp_dir / "inputs.json") as f:
                json.dump(inputs, f, indent=1)
        return trainer.fit(task, dataset)


def inherit_model(cfg: dict[str, Any], init: str | os.PathLike | None, where: str) -> str | os.PathLike | None:
    """Complete the pseudo-label config ``cfg`` in place from the initial model dir ``init``: its
    ``model:`` block (see :func:`_model_block`), ``init`` recorded and its sample rate (which ``cfg``
    may only repeat); returns ``init``."""
    cfg["model"] = _model_block(cfg, init, where)
    if init is not None:
        cfg["init"] = str(init)  # recorded in the exp dir's config.yaml
        init_cfg = str(Path(init) / "config.yaml")
        init_rate = config_sample_rate(load_yaml(init_cfg), init_cfg)
        if cfg.setdefault("sample_rate", init_rate) != init_rate:
            raise ConfigError(f"{where}: sample_rate {cfg['sample_rate']} differs from that of the initial "
                              f"model {init} ({init_rate})")
    return init


def restart_if_changed(exp_dir: Path, inputs: dict[str, str], cfg: dict[str, Any], force: bool) -> bool:
    """``force``, or True (saying why) when a training in ``exp_dir`` (finished or not) was started from
    other ``inputs`` (:func:`training_inputs`) than these."""
    changed = changed_inputs(exp_dir, inputs, cfg)
    if changed and not force and ((exp_dir / "model.pt").exists() or (exp_dir / "checkpoints").is_dir()):
        print(f"{exp_dir}: its {' and '.join(changed)} changed since it was trained: training again from the start")
        force = True
    return force


def build_encoder(cfg: dict[str, Any], parsed: dict[str, Any], kind: str, init: str | os.PathLike | None,
                  sample_rate: int, where: str) -> tuple[Any, Any]:
    """The encoder of ``cfg`` (initial weights from the seed, then ``init``'s ``model.pt`` if any) and,
    for a pseudo-label training with ``finetune.l2_to_init``, the snapshot of its built weights."""
    import torch

    from sslspk.models import build_model, with_sample_rate

    torch.manual_seed(parsed["train"].seed)  # the initial weights depend on the seed only
    encoder = build_model(with_sample_rate(cfg["model"], sample_rate, where))
    pretrained = None
    if kind == "pseudo" and parsed["finetune"].l2_to_init > 0:   # the built weights, before --init replaces them
        from sslspk.supervised import backbone_snapshot

        pretrained = backbone_snapshot(encoder)
    if init is not None:
        state = torch.load(Path(init) / "model.pt", map_location="cpu", weights_only=True)
        encoder.load_state_dict(state["model"])
    return encoder, pretrained


def speaker_labels(dataset: Any, ref_utt2spk: str | os.PathLike | None) -> tuple[Any, int, Any]:
    """``(labels, number of classes, true labels or None)`` of ``dataset``'s utterances: the index of
    each one's speaker in the sorted speakers of its utt2spk (also set as ``dataset.labels``), and of
    its speaker in ``ref_utt2spk`` (diagnostics only) in order of first appearance."""
    import numpy as np

    spks = sorted(set(dataset.data.utt2spk.values()))
    spk_index = {s: i for i, s in enumerate(spks)}
    labels = np.array([spk_index[dataset.data.utt2spk[u]] for u in dataset.utts])
    dataset.labels = labels.copy()
    true = None
    if ref_utt2spk is not None:
        from sslspk.utils.fileio import read_kv

        ref = read_kv(ref_utt2spk)
        missing = [u for u in dataset.utts if u not in ref]
        if missing:
            raise ConfigError(f"{ref_utt2spk}: no speaker for {len(missing)} utterance(s), e.g. {missing[0]}")
        true_index: dict[str, int] = {}
        true = np.array([true_index.setdefault(ref[u], len(true_index)) for u in dataset.utts])
    return labels, len(spks), true


def check_speakers(data_dir: str | os.PathLike) -> None:
    """InputError unless ``data_dir``'s utt2spk has at least two speakers: a speaker classifier trained on
    one class has a loss of 0 and learns nothing."""
    from sslspk.utils.errors import InputError
    from sslspk.utils.fileio import read_kv

    utt2spk = Path(data_dir) / "utt2spk"
    spks = set(read_kv(utt2spk).values())
    if len(spks) < 2:
        raise InputError(f"{utt2spk}: {len(spks)} speaker(s) ({', '.join(sorted(spks))}): training on (pseudo) "
                         "speaker labels needs at least 2 (from cluster.py: lower --ahc-threshold or raise "
                         "--ahc-clusters / --k)")
