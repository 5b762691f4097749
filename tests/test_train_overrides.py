"""train_ssl.py/train_pseudo.py --set KEY.PATH=VALUE and --print-config; one exp dir, one config."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from test_train import make_data, run_train, write_config

from sslspk.utils.config import ConfigError, apply_overrides

REPO_BIN = run_train.__globals__["REPO"] / "bin"


def test_overrides_are_typed_by_yaml_and_refuse_non_mappings():
    cfg = {"train": {"lr": 0.1, "epochs": 3}, "model": {"type": "wavlm", "head": "mean"}}
    out = apply_overrides(cfg, ["train.lr=2e-5", "train.epochs=5", "model.head=mhfa", "train.grad_clip=null",
                                "data.views=[{seconds: 2, count: 1}]", "train.amp=false"])
    assert out["train"] == {"lr": 2e-5, "epochs": 5, "grad_clip": None, "amp": False}
    assert type(out["train"]["lr"]) is float and type(out["train"]["epochs"]) is int
    assert out["model"]["head"] == "mhfa" and out["data"]["views"] == [{"seconds": 2, "count": 1}]
    assert cfg["train"] == {"lr": 0.1, "epochs": 3}   # the loaded config is left as it was
    with pytest.raises(ConfigError, match="train.lr is not a mapping"):
        apply_overrides(cfg, ["train.lr.x=1"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_overrides(cfg, ["train.lr"])


def _cli(*args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_BIN / "train_ssl.py"), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_set_is_validated_and_recorded_in_the_exp_dir(tmp_path, recipe_env):
    data = make_data(tmp_path / "data", n_spk=2, n_utt=4)
    cfg = write_config(tmp_path / "c.yaml", epochs=1)
    exp = tmp_path / "exp"
    r = run_train(cfg, data, exp, recipe_env, "--set", "train.lrr=0.1")
    assert r.returncode == 1 and "train: unknown key(s) lrr" in r.stderr and "--set train.lrr=0.1" in r.stderr
    assert not exp.exists()
    r = run_train(cfg, data, exp, recipe_env, "--set", "train.lr=2e-5", "--set", "train.batch_size=4")
    assert r.returncode == 0, r.stderr[-3000:]
    recorded = yaml.safe_load((exp / "config.yaml").read_text())
    assert recorded["train"]["lr"] == 2e-5 and recorded["train"]["batch_size"] == 4
    # the recorded config reproduces the run: trained with (a copy of) it, the exp dir is up to date
    copy = tmp_path / "recorded.yaml"
    copy.write_text((exp / "config.yaml").read_text())
    r = run_train(copy, data, exp, recipe_env)
    assert r.returncode == 0 and "already finished" in r.stdout, r.stdout + r.stderr[-2000:]


def test_print_config_prints_the_merged_config_with_defaults_and_writes_nothing(tmp_path, recipe_env):
    from sslspk.experiment import check_config

    cfg = write_config(tmp_path / "c.yaml", epochs=1)
    exp = tmp_path / "exp"
    r = _cli("--config", str(cfg), "--data", str(tmp_path / "no_data"), "--exp-dir", str(exp), "--print-config",
             "--set", "train.lr=0.5", "--set", "ssl.temperature=0.3", env=recipe_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    printed = yaml.safe_load(r.stdout)
    assert printed["train"]["lr"] == 0.5 and printed["ssl"]["temperature"] == 0.3
    assert printed["train"]["accumulate"] == 1 and printed["train"]["nan_policy"] == "stop"   # defaults
    assert printed["sample_rate"] == 16000
    check_config(printed, "ssl", "printed")   # a valid config in its own right
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    r = _cli("--config", str(cfg), "--print-config", "--set", "train.epochs=0", env=recipe_env, cwd=tmp_path)
    assert r.returncode == 1 and "train.epochs" in r.stderr


def test_a_second_config_in_the_same_exp_dir_is_refused_unless_force(tmp_path, recipe_env):
    data = make_data(tmp_path / "data", n_spk=2, n_utt=4)
    cfg = write_config(tmp_path / "c.yaml", epochs=1, batch_size=4)
    exp = tmp_path / "exp"
    assert run_train(cfg, data, exp, recipe_env).returncode == 0
    before = (exp / "model.pt").stat().st_mtime_ns
    r = run_train(cfg, data, exp, recipe_env, "--set", "train.lr=0.001")
    assert r.returncode == 1 and "holds a training with another config" in r.stderr and "--force" in r.stderr
    assert (exp / "model.pt").stat().st_mtime_ns == before
    assert yaml.safe_load((exp / "config.yaml").read_text())["train"]["lr"] == 0.005
    r = run_train(cfg, data, exp, recipe_env, "--set", "train.lr=0.001", "--force")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (exp / "model.pt").stat().st_mtime_ns > before
    assert yaml.safe_load((exp / "config.yaml").read_text())["train"]["lr"] == 0.001


@pytest.mark.parametrize("args,ssl,pl", [
    ((), "ssl", "pl_iter"),                                              # the recipe's configs: the names as before
    (("--ssl-conf", "conf/ssl_simclr.yaml"), "ssl_simclr", "pl_simclr_iter"),   # pl starts from that SSL model
    (("--ssl-tag", "lr2", "--ssl-args", "--set train.lr=0.1"), "ssl_lr2", "pl_lr2_iter"),
    (("--pseudo-conf", "conf/ssl.yaml"), "ssl", "pl_ssl_iter"),
    (("--pseudo-tag", "x", "--init-from-ssl", "false", "--init-embedder", "baseline"), "ssl", "pl_x_iter"),
])
def test_recipe_systems_are_named_after_non_default_configs(args, ssl, pl):
    """steps/stages.sh: <exp>/ssl and <exp>/pl_iterN for the recipe's own configs; a tag otherwise, so a second
    config never lands in (and is refused by) the exp dir of the first."""
    recipe = REPO_BIN.parent / "egs" / "mini" / "v1"
    r = subprocess.run(["bash", "-c", '. ./run.sh "$@" > /dev/null; echo "$ssl_dir $pl $ssl_args"', "_",
                        "--stage", "7", *args], cwd=recipe, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ssl_dir, pl_prefix, *ssl_args = r.stdout.split()
    assert (ssl_dir, pl_prefix) == (f"exp/mini/{ssl}", f"exp/mini/{pl}")
    assert ssl_args == (args[-1].split() if "--ssl-args" in args else [])


@pytest.mark.slow   # end to end: three trainings and three validations (~40 s on 2 cores)
def test_training_config_with_validation_selects_the_best_epochs(tmp_path, recipe_env):
    """The validation: block end to end (train_ssl.py): every epoch validated on a dev data dir and trial list,
    logged, and model.pt the average of the train.average_best best; average_best without validation or
    above the validated epochs is a config error before any work."""
    import json

    import torch

    data = make_data(tmp_path / "data", n_spk=2, n_utt=4)
    dev = make_data(tmp_path / "dev", n_spk=2, n_utt=2)
    utts = [line.split()[0] for line in (dev / "utt2spk").read_text().splitlines()]
    (dev / "trials").write_text("".join(f"{a} {b} {'target' if a[:2] == b[:2] else 'nontarget'}\n"
                                        for i, a in enumerate(utts) for b in utts[i + 1:]))
    cfg = write_config(tmp_path / "c.yaml", epochs=3, batch_size=4, average_best=2)
    exp = tmp_path / "exp"
    r = run_train(cfg, data, exp, recipe_env)
    assert r.returncode == 1 and "train.average_best 2 needs a validation: block" in r.stderr and not exp.exists()
    val = ["--set", f"validation.data={dev}", "--set", f"validation.trials={dev / 'trials'}"]
    r = run_train(cfg, data, exp, recipe_env, *val, "--set", "train.average_best=4")
    assert r.returncode == 1 and "exceeds the 3 validated epochs" in r.stderr and not exp.exists()
    r = run_train(cfg, data, exp, recipe_env, *val)
    assert r.returncode == 0, r.stderr[-3000:]
    record = {int(e): m["eer"] for e, m in json.loads((exp / "checkpoints" / "validation.json").read_text()).items()}
    assert sorted(record) == [1, 2, 3] and all(0 <= v <= 1 for v in record.values())
    best = sorted(sorted(record, key=lambda e: (record[e], -e))[:2])
    assert torch.load(exp / "model.pt", weights_only=False)["averaged"] == [f"epoch_{e}.pt" for e in best]
    assert (exp / "train.log").read_text().count("validation epoch") == 3
