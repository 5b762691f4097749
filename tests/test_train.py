"""The trainer: loss goes down, kill -9 + resume gives the same model, 2-process DDP, config errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, write_wav

TINY_MODEL = {"type": "ecapa_tdnn", "channels": 16, "mfa_channels": 48, "attention_channels": 8,
              "se_channels": 8, "embedding_dim": 16, "frontend": {"type": "fbank", "num_mel_bins": 24}}


def make_data(d: Path, n_spk: int = 4, n_utt: int = 6) -> Path:
    """A data dir of tone+noise 'speakers' (distinct pitch), 1 s each."""
    lines, u2s = [], []
    for s in range(n_spk):
        for u in range(n_utt):
            utt = f"s{s}-u{u}"
            p = write_wav(d / "wav" / f"{utt}.wav", 1.0, freq=150 + 60 * s, seed=s * 100 + u)
            lines.append(f"{utt} {p}")
            u2s.append(f"{utt} s{s}")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text("\n".join(u2s) + "\n")
    return d


def write_config(path: Path, method: str = "simclr", epochs: int = 3, **train) -> Path:
    views = [{"seconds": 0.5, "count": 1}, {"seconds": 0.5, "count": 1}]
    ssl = {"method": method, "projector_hidden": 32, "projector_dim": 16}
    if method == "dino":
        views = [{"seconds": 0.6, "count": 2}, {"seconds": 0.4, "count": 2}]
        ssl = {"method": "dino", "out_dim": 32, "hidden": 32, "bottleneck": 16, "warmup_teacher_temp_epochs": 1}
    if method == "moco":
        ssl["queue_size"] = 32
    cfg = {"sample_rate": 16000, "model": TINY_MODEL, "data": {"views": views, "augment": None}, "ssl": ssl,
           "train": {"epochs": epochs, "batch_size": 8, "num_workers": 0, "optimizer": "adamw", "lr": 0.005,
                     "warmup_epochs": 0.5, "log_every": 1, **train}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_train(cfg: Path, data: Path, exp: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / "train_ssl.py"), "--config", str(cfg),
                           "--data", str(data), "--exp-dir", str(exp), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


def epoch_losses(exp: Path, key: str = "loss") -> list[float]:
    return [float(line.split(f" {key}=")[1].split()[0]) for line in (exp / "train.log").read_text().splitlines()
            if f" {key}=" in line]


@pytest.mark.parametrize("method,epochs,first,key", [
    ("simclr", 4, 0, "loss"), ("dino", 4, 0, "kl_to_teacher"), ("moco", 6, 2, "loss")])
def test_training_lowers_loss_and_exports(tmp_path, recipe_env, method, epochs, first, key):
    """``first``: the epoch to compare with (MoCo's loss rises while its queue of random
    vectors fills with real, harder negatives: 32 entries = 4 steps of 8). DINO: its loss is
    H(targets) + KL(targets || student); the targets soften by design, so the KL is compared."""
    data = make_data(tmp_path / "data")
    cfg = write_config(tmp_path / "c.yaml", method, epochs=epochs)
    r = run_train(cfg, data, tmp_path / "exp", recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    losses = epoch_losses(tmp_path / "exp", key)
    assert len(losses) == epochs and losses[-1] < losses[first], losses
    # The exported model loads through the extraction path and embeds.
    from sslspk.extraction import load_encoder

    enc, conf = load_encoder(tmp_path / "exp")
    assert conf["ssl"]["method"] == method
    assert enc(torch.randn(2, 8000)).shape == (2, 16)
    assert list((tmp_path / "exp" / "tensorboard").glob("events.*"))
    # A finished run is not redone.
    r = run_train(cfg, data, tmp_path / "exp", recipe_env)
    assert "already finished" in r.stdout


def test_cpu_amp_trains_in_bf16_where_the_cpu_has_it(tmp_path, recipe_env):
    """``train.cpu_amp``: bf16 autocast on a CPU with native bf16 (SimCLR + SSPS, whose memory takes
    the bf16 embeddings); the loss still drops. Without native bf16: a warning, and fp32."""
    data = make_data(tmp_path / "data")
    cfg = write_config(tmp_path / "c.yaml", epochs=4, cpu_amp=True)
    c = yaml.safe_load(cfg.read_text())
    c["ssl"]["ssps"] = {"positive": "audio", "start_epoch": 2, "sampling": "knn", "neighbourhood": 1}
    cfg.write_text(yaml.safe_dump(c))
    r = run_train(cfg, data, tmp_path / "exp", recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    losses = epoch_losses(tmp_path / "exp")
    assert len(losses) == 4 and losses[1] < losses[0], losses
    from sslspk.train.trainer import native_cpu_bf16

    native = native_cpu_bf16()
    log = (tmp_path / "exp" / "train.log").read_text()
    assert ("bf16 autocast on the CPU" in log) == native
    assert ("no native bf16 support" in log) == (not native)


def test_cpu_amp_falls_back_to_fp32_without_native_bf16(tmp_path, monkeypatch, caplog):
    from sslspk.train.trainer import TrainConfig, Trainer

    assert not Trainer(TrainConfig(device="cpu"), tmp_path)._use_amp()   # off unless asked for
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level("WARNING", logger="sslspk.train"):
        assert not Trainer(TrainConfig(device="cpu", cpu_amp=True), tmp_path)._use_amp()
    assert "no native bf16 support" in caplog.text


def test_adam_and_step_schedule():
    """``optimizer: adam`` (L2 weight decay) and ``schedule: step``: lr x gamma per ``step_epochs`` epochs
    completed, no warm-up (sslsv's default schedule)."""
    from sslspk.train.trainer import TrainConfig, Trainer, lr_at

    cfg = TrainConfig(lr=0.001, schedule="step", step_epochs=5, step_gamma=0.95, warmup_epochs=10)
    lrs = [lr_at(s, 1000, 100, cfg, epoch=s // 10) for s in (0, 49, 50, 99, 100, 999)]   # 10 steps an epoch
    assert lrs == pytest.approx([0.001, 0.001, 0.00095, 0.00095, 0.001 * 0.95 ** 2, 0.001 * 0.95 ** 19])
    assert lr_at(0, 1000, 100, TrainConfig(lr=0.001)) == pytest.approx(0.001 / 100)   # cosine: warm-up
    task = torch.nn.Linear(2, 2)
    task.param_groups = lambda: [{"params": list(task.parameters())}]
    opt = Trainer(TrainConfig(optimizer="adam", weight_decay=0.1, device="cpu"), ".")._optimizer(task)
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["weight_decay"] == 0.1
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


@pytest.mark.slow
def test_simclr_with_ssps_embedding_positives_trains(tmp_path, recipe_env):
    """SimCLR (no projector) + SSPS ``positive: embedding`` through train_ssl.py: memory and queue fill in
    epoch 2 (start_epoch - 1), the stored positives are used in epoch 3, and the run exports a model."""
    data = make_data(tmp_path / "data")
    cfg = write_config(tmp_path / "c.yaml", epochs=3)
    c = yaml.safe_load(cfg.read_text())
    c["data"]["views"].append({"seconds": 0.8, "count": 1, "augment": False})
    c["ssl"] = {"method": "simclr", "temperature": 0.03, "projector": False,
                "ssps": {"start_epoch": 2, "num_prototypes": 4, "inter_sampling_size": 1, "pos_queue_size": 16}}
    cfg.write_text(yaml.safe_dump(c))
    r = run_train(cfg, data, tmp_path / "exp", recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in (tmp_path / "exp" / "train.log").read_text().splitlines() if " loss=" in ln]
    assert len(lines) == 3 and "ssps/coverage" not in lines[1]
    coverage = float(lines[2].split("ssps/coverage=")[1].split()[0])
    assert 0 < coverage <= 1 and "ssps/same_speaker=" in lines[2]
    assert (tmp_path / "exp" / "model.pt").exists()


def test_kill_and_resume_gives_the_same_model(tmp_path, recipe_env):
    """Killed after epoch 1 and resumed, loading in the process by 2 threads (num_workers 0): the model of
    an uninterrupted run loading in a worker process, to the bit."""
    data = make_data(tmp_path / "data")
    ref = write_config(tmp_path / "ref.yaml", epochs=3, num_workers=1)
    assert run_train(ref, data, tmp_path / "ref", recipe_env).returncode == 0
    cfg = write_config(tmp_path / "c.yaml", epochs=3, num_workers=0, loader_threads=2)
    exp = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, str(REPO / "bin" / "train_ssl.py"), "--config", str(cfg), "--data",
                          str(data), "--exp-dir", str(exp)], env=recipe_env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (exp / "checkpoints" / "epoch_1.pt").exists():
        assert time.time() < deadline and p.poll() is None, "training ended before the first checkpoint"
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (exp / "model.pt").exists()
    r = run_train(cfg, data, exp, recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in (exp / "train.log").read_text()
    a = torch.load(tmp_path / "ref" / "model.pt")["model"]
    b = torch.load(exp / "model.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ddp_two_processes_average_gradients(recipe_env):
    r = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_grad_check.py")],
                       capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "max relative gradient difference" in r.stdout


def test_ddp_training_run(tmp_path, recipe_env):
    """train_ssl.py under steps/train.sh with 2 CPU processes (gloo) trains and writes model.pt."""
    data = make_data(tmp_path / "data")
    cfg = write_config(tmp_path / "c.yaml", epochs=1, batch_size=4)
    r = subprocess.run(["bash", str(REPO / "steps" / "train.sh"), "--nproc-per-node", "2", "train_ssl.py",
                        "--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "exp")],
                       cwd=REPO / "egs" / "mini" / "v1", capture_output=True, text=True, env=recipe_env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert (tmp_path / "exp" / "model.pt").exists()


@pytest.mark.parametrize("edit,msg", [
    (lambda c: c.update(bogus=1), "unknown section"),
    (lambda c: c["train"].update(lr_max=1), "train: unknown key"),
    (lambda c: c["ssl"].update(method="byol"), "ssl.method must be one of"),
    (lambda c: c["model"].update(chanels=3), "unknown key"),
    (lambda c: c["data"].update(views=[]), "at least one view"),
])
def test_bad_config_fails_before_work(tmp_path, recipe_env, edit, msg):
    data = make_data(tmp_path / "data", 1, 2)
    cfg = write_config(tmp_path / "c.yaml")
    c = yaml.safe_load(cfg.read_text())
    edit(c)
    cfg.write_text(yaml.safe_dump(c))
    r = run_train(cfg, data, tmp_path / "exp", recipe_env)
    assert r.returncode == 1 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "exp" / "checkpoints").exists()


def test_changed_inputs_train_again(tmp_path, recipe_env):
    """A finished (or killed) training is reused only for the same config, data and initial model:
    other data (or another initial model) is named and the training starts again; another config is
    an error (one exp dir, one config) unless --force; an exp dir from before inputs.json is judged by
    its config.yaml."""
    data = make_data(tmp_path / "data")
    cfg = write_config(tmp_path / "c.yaml", epochs=1)
    exp = tmp_path / "exp"
    assert run_train(cfg, data, exp, recipe_env).returncode == 0
    model = exp / "model.pt"

    def again(expect: str | None, *extra: str) -> None:
        before = model.stat().st_mtime_ns
        r = run_train(cfg, data, exp, recipe_env, *extra)
        if expect == "config" and not extra:
            assert r.returncode == 1 and f"{exp} holds a training with another config" in r.stderr, r.stderr
            assert model.stat().st_mtime_ns == before
            return
        assert r.returncode == 0, r.stderr[-3000:]
        if expect is None:
            assert "already finished" in r.stdout and model.stat().st_mtime_ns == before, r.stdout
        else:
            if not extra:
                assert f"its {expect} changed since it was trained: training again" in r.stdout, r.stdout
            assert model.stat().st_mtime_ns > before

    again(None)
    for name in ("wav.scp", "utt2spk"):   # one utterance fewer
        p = data / name
        p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1]))
    again("data")
    c = yaml.safe_load(cfg.read_text())
    c["train"]["lr"] = 0.004
    cfg.write_text(yaml.safe_dump(c))
    again("config")
    again("config", "--force")
    (exp / "inputs.json").unlink()   # an exp dir of an older version: its config.yaml decides
    again(None)
    c["train"]["lr"] = 0.003
    cfg.write_text(yaml.safe_dump(c))
    again("config")
