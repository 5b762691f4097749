"""Config → validated pieces → trainer: shared by ``train_ssl.py`` and ``train_pseudo.py``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslspk.data.tables import MANAGED_FILES
from sslspk.extraction import DATA_FILES, MODEL_FILES
from sslspk.utils.config import (
    ConfigError,
    apply_overrides,
    check_sections,
    config_sample_rate,
    from_dict,
    load_yaml,
    save_yaml,
)
from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files, exclusive_lock, files_digest

if TYPE_CHECKING:
    from sslspk.utils.stamp import Stamp

#: held (flock) by the main process of a training for all of it, in its exp dir
LOCK_FILE = ".lock"


def check_config(cfg: dict[str, Any], kind: str, where: str) -> dict[str, Any]:
    """Every check a training config can have before any data or model is touched: sections,
    keys and value types of train, data, ssl (ssl) or loss/finetune/dlg_lc (pseudo), and its one
    sample rate (that of the model's front-end too).
    Returns the parsed sections: ``train``, ``views``, ``validation`` (None when absent), ``ssl`` (ssl:
    method, method config, SSPS config) or ``loss``, ``finetune``, ``dlg_lc`` (pseudo; None when absent)."""
    from sslspk.data.audio import check_data_options
    from sslspk.models import with_sample_rate
    from sslspk.train.dataset import parse_views
    from sslspk.train.trainer import TrainConfig

    check_sections(cfg, kind, where)
    sample_rate = config_sample_rate(cfg, where)
    if "model" in cfg:
        with_sample_rate(cfg["model"], sample_rate, where)
    train_cfg = from_dict(TrainConfig, cfg["train"], f"{where}: train")
    validation = None
    if cfg.get("validation") is not None:
        from sslspk.train.validation import ValidationConfig

        validation = from_dict(ValidationConfig, cfg["validation"], f"{where}: validation")
    if train_cfg.average_best and validation is None:
        raise ConfigError(f"{where}: train.average_best {train_cfg.average_best} needs a validation: block "
                          "(data, trials) to rank the checkpoints; without one use train.average_last")
    if validation is not None and train_cfg.average_best > validation.validated_epochs(train_cfg.epochs):
        raise ConfigError(f"{where}: train.average_best {train_cfg.average_best} exceeds the "
                          f"{validation.validated_epochs(train_cfg.epochs)} validated epochs (train.epochs "
                          f"{train_cfg.epochs}, validation.every_epochs {validation.every_epochs})")
    views = parse_views(cfg["data"].get("views"), f"{where}: data.views")
    check_data_options(**{k: cfg["data"][k] for k in ("too_short", "channel") if k in cfg["data"]},
                       where=f"{where}: data")
    if kind == "ssl":
        from sslspk.ssl import parse_ssl_config

        return {"train": train_cfg, "views": views, "validation": validation,
                "ssl": parse_ssl_config(cfg["ssl"], f"{where}: ssl")}
    from sslspk.supervised import DLGLCConfig, FinetuneConfig, LossConfig

    return {"train": train_cfg, "views": views, "validation": validation,
            "loss": from_dict(LossConfig, cfg["loss"], f"{where}: loss"),
            "finetune": from_dict(FinetuneConfig, cfg.get("finetune"), f"{where}: finetune"),
            "dlg_lc": from_dict(DLGLCConfig, cfg["dlg_lc"], f"{where}: dlg_lc") if cfg.get("dlg_lc") else None}


def _plain(obj: Any) -> Any:
    """A dataclass's init fields (recursively, tuples as lists): what its YAML block would hold."""
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def resolved_config(cfg: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the defaults of its checked blocks filled in (train, validation, ssl or loss, finetune,
    dlg_lc, sample_rate); ``model`` and ``data`` as written (the model's own defaults apply when it is built)."""
    out = {"sample_rate": config_sample_rate(cfg, "config"), **cfg}
    out["train"] = _plain(parsed["train"])
    if parsed["validation"] is not None:
        out["validation"] = _plain(parsed["validation"])
    if "ssl" in parsed:
        method, mcfg, scfg = parsed["ssl"]
        out["ssl"] = {**cfg["ssl"], "method": method, **_plain(mcfg)}
        if scfg is not None:
            out["ssl"]["ssps"] = _plain(scfg)
        return out
    for key in ("loss", "finetune", "dlg_lc"):
        if parsed[key] is not None:
            out[key] = _plain(parsed[key])
    return out


def load_training_config(config: str | os.PathLike, kind: str, overrides: list[str] | tuple[str, ...] = (),
                         init: str | os.PathLike | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config of a training: ``config``'s YAML with ``overrides`` (``KEY.PATH=VALUE``,
    :func:`sslspk.utils.config.apply_overrides`) applied, then checked (:func:`check_config`); for pseudo,
    with the model block inherited from ``init`` (or the config's ``init:``) and its sample rate.
    Returns ``(cfg, parsed sections)``."""
    where = f"{config} (with --set {' '.join(overrides)})" if overrides else str(config)
    cfg = apply_overrides(load_yaml(config), list(overrides))
    parsed = check_config(cfg, kind, where)
    if kind == "pseudo":
        init = init if init is not None else cfg.get("init")
        cfg["model"] = _model_block(cfg, init, where)
        if init is not None:
            cfg["init"] = str(init)  # recorded in the exp dir's config.yaml
            init_cfg = str(Path(init) / "config.yaml")
            init_rate = config_sample_rate(load_yaml(init_cfg), init_cfg)
            if cfg.setdefault("sample_rate", init_rate) != init_rate:
                raise ConfigError(f"{where}: sample_rate {cfg['sample_rate']} differs from that of the initial "
                                  f"model {init} ({init_rate})")
    return cfg, parsed


def print_config(config: str | os.PathLike, kind: str, overrides: list[str] | tuple[str, ...] = (),
                 init: str | os.PathLike | None = None) -> None:
    """Print the merged, checked config with its defaults filled in (:func:`resolved_config`) as YAML;
    writes nothing."""
    import yaml

    cfg, parsed = load_training_config(config, kind, overrides, init)
    print(yaml.safe_dump(resolved_config(cfg, parsed), sort_keys=False), end="")


def training_command(config: str, kind: str, *, data_dir: str | None = None, exp_dir: str | None = None,
                     force: bool = False, overrides: list[str] | tuple[str, ...] = (), print_only: bool = False,
                     init: str | None = None, ref_utt2spk: str | None = None) -> None:
    """``train_ssl.py``/``train_pseudo.py``: :func:`print_config` (``print_only``), or :func:`train_from_config`
    in a process that a ``kill -9`` of its launcher stops too (:func:`sslspk.train.distributed.die_with_launcher`)."""
    if print_only:
        print_config(config, kind, overrides, init)
        return
    from sslspk.train.distributed import die_with_launcher

    die_with_launcher()
    train_from_config(config, data_dir, exp_dir, kind=kind, force=force, init=init, ref_utt2spk=ref_utt2spk,
                      overrides=overrides)


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


def training_stamp(cfg: dict[str, Any], data_dir: str | os.PathLike, init: str | os.PathLike | None) -> Stamp:
    """What a training depends on (the stamp ``<exp>/model.pt.stamp``): its full config (with the inherited
    model block), the data dir's tables and the initial model's weights."""
    from sslspk.utils.stamp import Stamp

    return Stamp([*(Path(data_dir) / f for f in DATA_FILES), Path(init) / "model.pt" if init is not None else None],
                 {"config": json.dumps(cfg, sort_keys=True, default=str)})


def changed_inputs(exp_dir: Path, stamp: Stamp, cfg: dict[str, Any], data_dir: str | os.PathLike,
                   init: str | os.PathLike | None) -> list[str]:
    """What changed since the training in ``exp_dir`` started (its stamp), in words: ``config``,
    ``data``, ``initial model``. An exp dir from before stamps is judged once by its old record
    (``inputs.json``, or without one its ``config.yaml``) and, when that finds no change, stamped."""
    changed = stamp.changes(exp_dir / "model.pt", need_output=False)
    if changed is None:
        if not (exp_dir / "model.pt").exists() and not (exp_dir / "checkpoints").is_dir():
            return []
        legacy = _legacy_changes(exp_dir, cfg, data_dir, init)
        if not legacy:
            stamp.write(exp_dir / "model.pt")
            (exp_dir / "inputs.json").unlink(missing_ok=True)
        return legacy
    data = {os.fspath(Path(data_dir) / f) for f in DATA_FILES}
    return sorted({"config" if k == "config" else "data" if k in data else "initial model" for k in changed})


def _legacy_changes(exp_dir: Path, cfg: dict[str, Any], data_dir: str | os.PathLike,
                    init: str | os.PathLike | None) -> list[str]:
    """The rule of before stamps (migration only): which of the digests in ``exp_dir/inputs.json`` differ;
    without that record, ``config`` when ``config.yaml`` differs."""
    record = exp_dir / "inputs.json"
    if record.is_file():
        now = {"config": hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest(),
               "data": files_digest(Path(data_dir) / f for f in DATA_FILES),
               "initial model": files_digest([Path(init) / "model.pt"]) if init is not None else "-"}
        old = json.loads(record.read_text())
        return [k for k, v in now.items() if old.get(k) != v]
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
                      ref_utt2spk: str | os.PathLike | None = None,
                      overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Build everything from ``config`` (validated first), train into ``exp_dir``; returns model.pt.

    ``kind`` is ``ssl`` (unlabelled) or ``pseudo`` (labels = the speakers of ``data_dir``'s
    utt2spk, e.g. clustering output). ``init`` (or the config's ``init:``): a model dir whose
    ``model.pt`` initialises the encoder and whose ``model:`` block it inherits.
    ``ref_utt2spk``: true speakers, for diagnostics only. ``overrides``: ``KEY.PATH=VALUE`` settings applied
    to the config (:func:`load_training_config`); the exp dir's ``config.yaml`` records the result.
    An exp dir holding a training with another config is an error unless ``force`` (it would be
    overwritten); with other data or another initial model it trains again from the start.
    """
    exp_dir = Path(exp_dir)
    out = exp_dir / "model.pt"
    cfg, parsed = load_training_config(config, kind, overrides, init)
    init = cfg.get("init") if kind == "pseudo" else None
    train_cfg, views = parsed["train"], parsed["views"]
    check_outputs_are_not_inputs(
        [config, *dir_and_files(data_dir, MANAGED_FILES), *dir_and_files(init, MODEL_FILES), ref_utt2spk],
        dir_and_files(exp_dir, (*MODEL_FILES, "model.pt.stamp", "train.log")))
    if kind == "pseudo":
        check_speakers(data_dir)
    stamp = training_stamp(cfg, data_dir, init)
    force = restart_if_changed(exp_dir, stamp, cfg, data_dir, init, force)
    if out.exists() and not force:
        print(f"{out} exists: training already finished (use --force true to train again)")
        return out
    from sslspk.models import with_sample_rate
    from sslspk.train.dataset import CropDataset
    from sslspk.train.state_cache import CachedStatesDataset, cache_states
    from sslspk.train.trainer import Trainer

    sample_rate = config_sample_rate(cfg, str(config))
    validator = None
    if parsed["validation"] is not None:
        from sslspk.train.validation import Validator

        validator = Validator(parsed["validation"], with_sample_rate(cfg["model"], sample_rate, str(config)),
                              sample_rate, cfg["data"].get("channel", "mix"), f"{config}: validation")
    encoder, pretrained = build_encoder(cfg, parsed, kind, init, sample_rate, str(config))
    cached = kind == "pseudo" and parsed["finetune"].cache_frozen_backbone
    dataset = (CachedStatesDataset if cached else CropDataset)(
        data_dir, views, sample_rate, cfg["data"].get("augment"), seed=train_cfg.seed,
        too_short=cfg["data"].get("too_short", "repeat"), channel=cfg["data"].get("channel", "mix"),
        threads=train_cfg.loader_threads if train_cfg.num_workers == 0 else 1)
    if cached:
        cache_states(encoder, dataset, train_cfg.device, str(config))
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
            stamp.write(exp_dir / "model.pt")   # before model.pt: it also tells whether the checkpoints can resume
            (exp_dir / "inputs.json").unlink(missing_ok=True)
        return trainer.fit(task, dataset, validator,
                           parsed["validation"].every_epochs if parsed["validation"] is not None else 1)


def restart_if_changed(exp_dir: Path, stamp: Stamp, cfg: dict[str, Any], data_dir: str | os.PathLike,
                       init: str | os.PathLike | None, force: bool) -> bool:
    """``force``, or True (saying why) when a training in ``exp_dir`` (finished or not) was started from
    other data or another initial model than ``stamp`` (:func:`training_stamp`) holds; ConfigError when it
    was started from another config, unless ``force``."""
    out = exp_dir / "model.pt"
    changed = changed_inputs(exp_dir, stamp, cfg, data_dir, init)
    trained = out.exists() or (exp_dir / "checkpoints").is_dir()
    if "config" in changed and trained and not force:
        raise ConfigError(f"{exp_dir} holds a training with another config (its config.yaml): choose another "
                          f"exp dir for this config (the recipes name it after the config: --ssl-tag, "
                          f"--pseudo-tag), or pass --force true to replace that training")
    if changed and not force and trained:
        print(f"{exp_dir}: its {' and '.join(changed)} changed since it was trained: training again from the start")
        force = True
    return force


def build_encoder(cfg: dict[str, Any], parsed: dict[str, Any], kind: str, init: str | os.PathLike | None,
                  sample_rate: int, where: str) -> tuple[Any, Any]:
    """The encoder of ``cfg`` (initial weights from the seed, then ``init``'s ``model.pt`` if any) and,
    for a pseudo-label training with ``finetune.l2_to_init``, the snapshot of its built weights."""
    import torch

    from sslspk.models import build_model, with_sample_rate

    train_cfg = parsed["train"]
    torch.manual_seed(train_cfg.seed)  # the initial weights depend on the seed only
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
