"""Fault catalogue, bad input and training faults: each gets a clear error naming the culprit (file,
line or utterance) or a documented, counted skip, never a silent wrong result; nothing already
written is lost. docs/reliability.md maps every fault to its test here or in test_interruptions.py.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import REPO, write_wav

from sslspk.train.task import TrainTask

BASELINE = REPO / "egs" / "mini" / "v1" / "conf" / "baseline.yaml"


def data_dir(d: Path, wavs: dict[str, str]) -> Path:
    """A data dir of ``{utt: wav.scp entry}``, one speaker per utterance."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "wav.scp").write_text("".join(f"{u} {e}\n" for u, e in sorted(wavs.items())))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in sorted(wavs)))
    return d


def run_bin(name: str, *args: str, env: dict, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / name), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300, **kw)


def assert_clean_error(r: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 1, an ``ERROR:`` line naming every culprit, no traceback."""
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert all(n in r.stderr for n in names), (names, r.stderr[-3000:])


# ------------------------------------------------------------------------------------ bad audio

def _bad_audio(kind: str, path: Path) -> Path:
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated_header":
        write_wav(path, 1.0)
        path.write_bytes(path.read_bytes()[:30])
    elif kind == "not_audio":
        path.write_text("this is a text file, not audio\n" * 50)
    elif kind in ("nan", "inf"):
        x[100:110] = np.nan if kind == "nan" else np.inf
        sf.write(path, x, 16000, subtype="FLOAT")
    elif kind == "silence":
        sf.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    return path


BAD_AUDIO = {"missing": "cannot read audio", "empty": "cannot read audio", "truncated_header": "cannot read audio",
             "not_audio": "cannot read audio", "nan": "NaN/inf sample", "inf": "NaN/inf sample",
             "silence": "digital silence"}


@pytest.mark.parametrize("kind", sorted(BAD_AUDIO))
def test_bad_audio_names_utterance_and_file(tmp_path, kind):
    from sslspk.data.audio import AudioError
    from sslspk.data.datadir import DataDir

    wav = _bad_audio(kind, tmp_path / f"{kind}.wav")
    d = data_dir(tmp_path / "data", {"utt1": str(wav)})
    with pytest.raises(AudioError) as e:
        DataDir.load(d).load_audio("utt1", 16000)
    assert BAD_AUDIO[kind] in str(e.value) and "utt1" in str(e.value) and str(wav) in str(e.value)


@pytest.mark.parametrize("kind", ["truncated_header", "nan", "silence"])
def test_bad_audio_stops_extraction_without_output(tmp_path, recipe_env, kind):
    model = tmp_path / "baseline"
    model.mkdir()
    (model / "config.yaml").write_text(BASELINE.read_text())
    good = write_wav(tmp_path / "good.wav", 1.0)
    bad = _bad_audio(kind, tmp_path / "bad.wav")
    d = data_dir(tmp_path / "data", {"a_good": str(good), "b_bad": str(bad)})
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert_clean_error(r, "b_bad", str(bad), BAD_AUDIO[kind])
    assert not (tmp_path / "e.scp").exists()


def test_too_short_to_embed_is_named(tmp_path, recipe_env):
    model = tmp_path / "baseline"
    model.mkdir()
    (model / "config.yaml").write_text(BASELINE.read_text())
    sf.write(tmp_path / "tiny.wav", 0.1 * np.ones(100, np.float32), 16000)    # 6 ms: no 25 ms frame
    d = data_dir(tmp_path / "data", {"a_ok": str(write_wav(tmp_path / "ok.wav", 0.5)),
                                     "b_tiny": str(tmp_path / "tiny.wav")})
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert_clean_error(r, "b_tiny", "100 samples", "shorter than one 25 ms analysis window")
    assert not (tmp_path / "e.scp").exists()


@pytest.mark.parametrize("cmd,msg", [("false |", r"pipe command failed \(exit 1\)"),
                                     ("true |", "pipe command produced no output")])
def test_failing_pipe_is_named(tmp_path, cmd, msg):
    from sslspk.data.audio import AudioError
    from sslspk.data.datadir import DataDir

    d = data_dir(tmp_path / "data", {"utt1": cmd})
    with pytest.raises(AudioError, match=msg) as e:
        DataDir.load(d).load_audio("utt1")
    assert "utt1" in str(e.value) and cmd.rstrip(" |") in str(e.value)


def _views(seconds: float):
    from sslspk.train.dataset import ViewSpec

    return [ViewSpec(seconds=seconds, count=1, augment=False)]


@pytest.mark.parametrize("policy", ["repeat", "pad", "skip"])
def test_too_short_policy(tmp_path, caplog, policy):
    from sslspk.train.dataset import CropDataset

    short = tmp_path / "short.wav"
    sf.write(short, np.linspace(0.1, 0.5, 4000, dtype=np.float32), 16000)    # 0.25 s
    d = data_dir(tmp_path / "data", {"long": str(write_wav(tmp_path / "long.wav", 1.0)), "short": str(short)})
    with caplog.at_level(logging.WARNING, logger="sslspk"):
        ds = CropDataset(d, _views(0.5), 16000, too_short=policy)
    if policy == "skip":
        assert ds.utts == ["long"]
        assert "1 of 2 utterances shorter than 0.5 s skipped (data.too_short: skip)" in caplog.text
        return
    crop = ds[ds.utts.index("short")]["views"][0][0].numpy()
    assert crop.shape == (8000,)
    if policy == "pad":
        np.testing.assert_array_equal(crop[4000:], 0)
        np.testing.assert_array_equal(crop[:4000], sf.read(short, dtype="float32")[0])
    else:
        assert np.count_nonzero(crop) == 8000   # wrapped around, no zeros


def test_too_short_everything_skipped_is_an_error(tmp_path):
    from sslspk.train.dataset import CropDataset
    from sslspk.utils.config import ConfigError

    d = data_dir(tmp_path / "data", {"u": str(write_wav(tmp_path / "u.wav", 0.2))})
    with pytest.raises(ConfigError, match="every utterance is shorter than 0.5 s"):
        CropDataset(d, _views(0.5), 16000, too_short="skip")


def test_other_sample_rate_resampled_and_logged_once(tmp_path, caplog):
    from sslspk.data import audio
    from sslspk.data.datadir import DataDir

    audio._resampled.clear()
    d = data_dir(tmp_path / "data", {f"u{i}": str(write_wav(tmp_path / f"{i}.wav", 1.0, sr=8000, seed=i))
                                     for i in range(3)})
    dd = DataDir.load(d)
    with caplog.at_level(logging.WARNING, logger="sslspk"):
        lens = [len(dd.load_audio(u, 16000)) for u in dd.utts]
    assert lens == [16000] * 3
    assert caplog.text.count("audio at 8000 Hz is resampled to 16000 Hz") == 1


@pytest.mark.parametrize("channel", ["mix", "first"])
def test_multichannel_as_configured(tmp_path, channel):
    from sslspk.train.dataset import CropDataset

    x = np.stack([np.full(16000, 0.2, np.float32), np.full(16000, 0.6, np.float32)], axis=1)
    sf.write(tmp_path / "stereo.wav", x, 16000, subtype="FLOAT")
    d = data_dir(tmp_path / "data", {"u": str(tmp_path / "stereo.wav")})
    crop = CropDataset(d, _views(0.5), 16000, channel=channel)[0]["views"][0][0].numpy()
    np.testing.assert_allclose(crop, 0.4 if channel == "mix" else 0.2, rtol=1e-6)


# ------------------------------------------------------------------------------------ data dirs

def _wavs(tmp_path: Path) -> dict[str, str]:
    return {u: str(write_wav(tmp_path / f"{u}.wav", 0.5, seed=i)) for i, u in enumerate(("a", "b", "c"))}


@pytest.mark.parametrize("fault,file,line,msg", [
    ("unsorted", "utt2spk", 2, "not sorted"),
    ("duplicate", "utt2spk", 2, "duplicate"),
    ("blank_line", "utt2spk", 2, "empty line"),
    ("space_in_utt2spk_id", "utt2spk", 1, "expected 2 fields, got 3"),
    ("space_in_wav_scp_id", "wav.scp", 1, "path with whitespace"),
])
def test_bad_data_dir_names_file_and_line(tmp_path, fault, file, line, msg):
    from sslspk.data.datadir import DataDir
    from sslspk.utils.fileio import FormatError

    w = _wavs(tmp_path)
    d = data_dir(tmp_path / "data", w)
    text = {"unsorted": "b b\na a\nc c\n", "duplicate": "a a\na a\nc c\n", "blank_line": "a a\n\nc c\n",
            "space_in_utt2spk_id": "a x a\nb b\nc c\n"}
    if fault == "space_in_wav_scp_id":
        (d / "wav.scp").write_text(f"a x {w['a']}\nb {w['b']}\nc {w['c']}\n")
    else:
        (d / "utt2spk").write_text(text[fault])
    with pytest.raises(FormatError, match=msg) as e:
        DataDir.load(d)
    assert f"{d / file}:{line}" in str(e.value)


def test_utt2spk_wav_scp_mismatch_listed(tmp_path):
    from sslspk.data.validate import validate

    w = _wavs(tmp_path)
    d = data_dir(tmp_path / "data", w)
    (d / "utt2spk").write_text("a a\nb b\nz z\n")
    problems = "\n".join(validate(d))
    assert "c" in problems and "z" in problems and "wav.scp" in problems and "utt2spk" in problems, problems


def test_windows_line_endings_are_read(tmp_path):
    from sslspk.data.datadir import DataDir

    w = _wavs(tmp_path)
    d = data_dir(tmp_path / "data", w)
    for name in ("wav.scp", "utt2spk"):
        (d / name).write_bytes((d / name).read_bytes().replace(b"\n", b"\r\n"))
    dd = DataDir.load(d)
    assert dd.wav_scp["a"] == w["a"] and dd.utt2spk == {"a": "a", "b": "b", "c": "c"}


# ------------------------------------------------------------------------------------ trials, ark/scp

@pytest.fixture
def embeddings(tmp_path):
    from sslspk.data.embeddings import write_embeddings

    rng = np.random.default_rng(0)
    ark, scp = tmp_path / "e.ark", tmp_path / "e.scp"
    write_embeddings(ark, scp, ((u, rng.standard_normal(8).astype(np.float32)) for u in ("a", "b", "c")))
    return ark, scp


@pytest.mark.parametrize("text,msg", [
    ("a b target\nb c maybe\n", "trials:2"),
    ("a b target\na b c target\n", "trials:2"),
    ("a b target\na z nontarget\n", "z"),
    ("", "trial list is empty"),
])
def test_bad_trials_are_named(tmp_path, recipe_env, embeddings, text, msg):
    (tmp_path / "trials").write_text(text)
    r = run_bin("score.py", tmp_path / "trials", embeddings[1], tmp_path / "out.score", env=recipe_env)
    assert_clean_error(r, msg)
    assert not (tmp_path / "out.score").exists()


@pytest.mark.parametrize("fault", ["missing_ark", "truncated_ark"])
def test_scp_into_missing_or_truncated_ark(tmp_path, recipe_env, embeddings, fault):
    ark, scp = embeddings
    if fault == "missing_ark":
        ark.unlink()
    else:
        ark.write_bytes(ark.read_bytes()[:-20])
    (tmp_path / "trials").write_text("a b target\nb c nontarget\n")
    r = run_bin("score.py", tmp_path / "trials", scp, tmp_path / "out.score", env=recipe_env)
    assert_clean_error(r, str(scp))
    assert not (tmp_path / "out.score").exists()


# ------------------------------------------------------------------------------------ configs

def _train_config(tmp_path: Path, **edit) -> Path:
    cfg = {"sample_rate": 16000,
           "model": {"type": "ecapa_tdnn", "channels": 8, "mfa_channels": 24, "attention_channels": 4,
                     "se_channels": 4, "embedding_dim": 8, "frontend": {"type": "fbank", "num_mel_bins": 20}},
           "data": {"views": [{"seconds": 0.5, "count": 1}, {"seconds": 0.5, "count": 1}]},
           "ssl": {"method": "simclr", "projector_hidden": 16, "projector_dim": 8},
           "train": {"epochs": 3, "batch_size": 4, "num_workers": 0, "optimizer": "adamw", "lr": 0.005,
                     "warmup_epochs": 0, "log_every": 1}}
    for section, values in edit.items():
        cfg[section].update(values) if isinstance(values, dict) else cfg.__setitem__(section, values)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_data(tmp_path: Path, n: int = 8) -> Path:
    return data_dir(tmp_path / "train", {f"u{i}": str(write_wav(tmp_path / f"t{i}.wav", 0.6, freq=150 + 40 * i,
                                                                 seed=i)) for i in range(n)})


@pytest.mark.parametrize("edit,msg", [
    ({"train": {"lr_max": 0.1}},
     "train: unknown key(s) lr_max; valid keys: accumulate, amp, average_best, average_last"),
    ({"train": {"epochs": "ten"}}, "train: epochs: expected int, got str 'ten'"),
    ({"train": {"amp": "yes"}}, "train: amp: expected bool"),
    ({"data": {"views": [{"count": 2}]}}, "data.views[0]: missing required key(s) seconds"),
    ({"data": {"too_short": "drop"}}, "data.too_short must be one of repeat, pad, skip"),
    ({"ssl": {"method": "simclr", "temperature": "warm"}}, "temperature: expected float"),
])
def test_bad_config_fails_before_any_work(tmp_path, recipe_env, edit, msg):
    r = run_bin("train_ssl.py", "--config", _train_config(tmp_path, **edit), "--data", _train_data(tmp_path),
                "--exp-dir", tmp_path / "exp", env=recipe_env)
    assert_clean_error(r, msg)
    assert not (tmp_path / "exp" / "checkpoints").exists()


def test_yaml_float_without_dot_is_a_number():
    """PyYAML reads ``1e-4`` as a string; the config check reads it as the float it means."""
    from sslspk.train.trainer import TrainConfig
    from sslspk.utils.config import from_dict

    assert from_dict(TrainConfig, yaml.safe_load("lr: 1e-4"), "train").lr == 1e-4


SHIPPED = sorted(p for p in (REPO / "egs").rglob("conf/**/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "egs")))
def test_shipped_configs_pass_the_checks(path):
    """Every config under egs/*/conf passes the section, key and type checks of training."""
    from sslspk.experiment import check_config
    from sslspk.utils.config import load_yaml

    cfg = load_yaml(path)
    if "train" not in cfg:   # a non-learned model (statistics baseline): only a model block
        from sslspk.models import build_model

        build_model(cfg["model"])
        return
    check_config(cfg, "ssl" if "ssl" in cfg else "pseudo", str(path))


# ------------------------------------------------------------------------------------ training faults

class _FaultyTask(TrainTask):
    """A linear 'encoder' whose loss (or only its gradient) turns non-finite at global step ``at``;
    with ``constant``, the loss is that value at every other step."""

    def __init__(self, at: int, where: str, constant: float | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(4, 2)
        self.at, self.where, self.calls, self.constant = at, where, 0, constant

    def forward(self, batch, epoch):
        self.calls += 1
        x = batch["views"][0][:, 0, :4]
        loss = self.encoder(x).pow(2).mean()
        if self.constant is not None:
            loss = 0.0 * loss + self.constant
        if self.calls == self.at:
            if self.where == "loss":
                loss = loss * float("nan")
            else:   # finite loss (0), NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
                loss = loss + torch.sqrt(self.encoder.weight.sum() * 0.0)
        return loss, {}


def _fit(tmp_path: Path, task: TrainTask, policy: str) -> Path:
    from sslspk.train.dataset import CropDataset
    from sslspk.train.trainer import TrainConfig, Trainer

    ds = CropDataset(_train_data(tmp_path), _views(0.5), 16000)
    cfg = TrainConfig(epochs=3, batch_size=4, num_workers=0, optimizer="sgd", lr=0.01, warmup_epochs=0,
                      device="cpu", nan_policy=policy, amp=False)
    return Trainer(cfg, tmp_path / "exp").fit(task, ds)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_stops_and_keeps_the_last_good_checkpoint(tmp_path, where):
    from sslspk.utils.errors import TrainingError

    with pytest.raises(TrainingError, match=f"non-finite {where}.* at epoch 3, step 1; the last good checkpoint"):
        _fit(tmp_path, _FaultyTask(at=5, where=where), "stop")   # 2 steps per epoch: step 5 = epoch 3, step 1
    ckpts = sorted(p.name for p in (tmp_path / "exp" / "checkpoints").iterdir())
    assert ckpts == ["epoch_2.pt"], ckpts   # train.average_last = 1 keeps the last one only
    state = torch.load(tmp_path / "exp" / "checkpoints" / "epoch_2.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["task"].values() if torch.is_tensor(v))
    assert not (tmp_path / "exp" / "model.pt").exists()


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_step_skipped_and_counted(tmp_path, where):
    out = _fit(tmp_path, _FaultyTask(at=5, where=where), "skip")
    state = torch.load(out, weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in state.values())
    assert f"non-finite {where}" in (tmp_path / "exp" / "train.log").read_text()
    assert "step skipped (1 so far)" in (tmp_path / "exp" / "train.log").read_text()


def test_epoch_means_after_a_skipped_step(tmp_path):
    """A step skipped in epoch 1 does not change the means logged for the later epochs (the loss is 1.0
    at every applied step, so every epoch's mean is 1)."""
    _fit(tmp_path, _FaultyTask(at=1, where="loss", constant=1.0), "skip")
    means = [line.split(" loss=")[1].split()[0] for line in (tmp_path / "exp" / "train.log").read_text().splitlines()
             if " loss=" in line]
    assert means == ["1", "1", "1"]


def test_ddp_processes_skip_a_step_together(tmp_path, recipe_env):
    """Under DDP (2 gloo processes), a NaN loss on one process only makes both skip that step: they stay in
    step (same number of optimizer steps, same weights) and finish."""
    r = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_skip_check.py"), str(_train_data(tmp_path)),
                        str(tmp_path / "exp")], capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "both processes: 3 optimizer steps, same weights" in r.stdout
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "non-finite loss on another process at epoch 1 step 2: step skipped" in log


def test_dino_collapse_can_stop_a_run(tmp_path, recipe_env):
    """With ssl.stop_on_collapse, the collapse monitor stops the run (here a KL threshold no run passes)."""
    cfg = _train_config(tmp_path, data={"views": [{"seconds": 0.5, "count": 2}, {"seconds": 0.3, "count": 2}]},
                        ssl={"method": "dino", "out_dim": 16, "hidden": 16, "bottleneck": 8,
                             "warmup_teacher_temp_epochs": 1, "collapse_min_kl": 1e9, "stop_on_collapse": True},
                        train={"epochs": 3})
    r = run_bin("train_ssl.py", "--config", cfg, "--data", _train_data(tmp_path), "--exp-dir", tmp_path / "exp",
                env=recipe_env)
    assert_clean_error(r, "collapse")
    assert not (tmp_path / "exp" / "model.pt").exists()


# ------------------------------------------------------------------------------------ disk full

def _limit_file_size(nbytes: int):
    """Writes past ``nbytes`` fail with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


def test_disk_full_while_writing_an_ark(tmp_path, recipe_env):
    model = tmp_path / "baseline"
    model.mkdir()
    (model / "config.yaml").write_text(BASELINE.read_text())
    d = data_dir(tmp_path / "data", {f"u{i:03d}": str(write_wav(tmp_path / f"{i}.wav", 0.3, seed=i))
                                     for i in range(60)})
    out = tmp_path / "emb"
    out.mkdir()
    (out / "e.scp").write_text("previous complete output\n")
    r = run_bin("extract_embeddings.py", "--force", "true", model, d, out / "e.ark", out / "e.scp", env=recipe_env,
                preexec_fn=_limit_file_size(4096))
    assert_clean_error(r, "disk full writing", "intact")
    assert (out / "e.scp").read_text() == "previous complete output\n"
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp")), list(out.iterdir())


def test_disk_full_while_writing_a_checkpoint(tmp_path, recipe_env):
    cfg, data = _train_config(tmp_path, train={"epochs": 2, "average_last": 2}), _train_data(tmp_path)
    args = ("train_ssl.py", "--config", cfg, "--data", data, "--exp-dir", tmp_path / "exp")
    assert run_bin(*args, env=recipe_env).returncode == 0
    ckpts = tmp_path / "exp" / "checkpoints"
    first = ckpts / "epoch_1.pt"
    before = first.read_bytes()
    for p in (ckpts / "epoch_2.pt", tmp_path / "exp" / "model.pt"):   # epoch 2 is trained and written again
        p.unlink()
    r = run_bin(*args, env=recipe_env, preexec_fn=_limit_file_size(len(before) // 2))
    assert_clean_error(r, "disk full writing", str(ckpts / "epoch_2.pt"), "intact")
    assert first.read_bytes() == before
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch_1.pt"]
    r = run_bin(*args, env=recipe_env)   # space freed: the same command finishes the run
    assert r.returncode == 0 and (tmp_path / "exp" / "model.pt").exists(), r.stderr[-2000:]


# ------------------------------------------------------------------------------------ text encodings

def run_util(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "utils" / name), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_byte_order_mark_is_named_and_nothing_dropped(tmp_path, recipe_env):
    d = data_dir(tmp_path / "data", _wavs(tmp_path))
    (d / "wav.scp").write_bytes(b"\xef\xbb\xbf" + (d / "wav.scp").read_bytes())
    before = {f: (d / f).read_bytes() for f in ("wav.scp", "utt2spk")}
    r = run_util("validate_data_dir.sh", d, env=recipe_env)
    assert_clean_error(r, f"{d / 'wav.scp'}:1: starts with a byte-order mark")
    assert "not sorted" not in r.stderr
    r = run_util("fix_data_dir.sh", d, env=recipe_env)
    assert_clean_error(r, f"{d / 'wav.scp'}:1: starts with a byte-order mark")
    assert {f: (d / f).read_bytes() for f in before} == before


def test_non_utf8_bytes_are_named(tmp_path, recipe_env):
    d = data_dir(tmp_path / "data", _wavs(tmp_path))
    (d / "utt2spk").write_bytes(b"a a\nb b\xe9\nc c\n")   # latin-1 speaker id
    for tool in ("validate_data_dir.sh", "fix_data_dir.sh"):
        assert_clean_error(run_util(tool, d, env=recipe_env), f"{d / 'utt2spk'}:2: not UTF-8: byte 0xe9")
    model = tmp_path / "baseline"
    model.mkdir()
    (model / "config.yaml").write_text(BASELINE.read_text())
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert_clean_error(r, f"{d / 'utt2spk'}:2: not UTF-8")


# ------------------------------------------------------------------------------------ error reporting

def test_run_cli_reports_input_errors_and_keeps_the_traceback_of_a_bug(capsys):
    """The project's own errors become one ``ERROR:`` line; a KeyError or ValueError from a bug is
    not disguised as bad input."""
    from sslspk.utils.errors import run_cli
    from sslspk.utils.fileio import FormatError

    def bad_input() -> None:
        raise FormatError("wav.scp", 3, "duplicate key 'a'")

    with pytest.raises(SystemExit) as e:
        run_cli(bad_input)
    assert e.value.code == 1 and capsys.readouterr().err == "ERROR: wav.scp:3: duplicate key 'a'\n"
    with pytest.raises(KeyError, match="'n_mels'"):
        run_cli(lambda: {}["n_mels"])
    with pytest.raises(ValueError, match="could not convert"):
        run_cli(lambda: float("x"))


# ------------------------------------------------------------------------------------ audio checks

def _model_dir(path: Path, **edit) -> Path:
    """A model dir with the baseline config, top-level keys changed by ``edit`` (None removes one)."""
    cfg = yaml.safe_load(BASELINE.read_text())
    for k, v in edit.items():
        cfg.pop(k) if v is None else cfg.__setitem__(k, v)
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def _short_read_wav(path: Path) -> Path:
    """A 16-bit wav whose header announces 2384 samples while the file holds 978 (cut short)."""
    write_wav(path, 2384 / 16000)
    path.write_bytes(path.read_bytes()[:44 + 978 * 2])
    return path


def test_check_audio_decodes_the_audio(tmp_path, recipe_env):
    """--check-audio finds what only decoding shows: too short to embed, NaN samples, a truncated file
    (but not a WAV written to a pipe, whose header holds a placeholder size)."""
    sf.write(tmp_path / "short3ms.wav", 0.1 * np.ones(48, np.float32), 16000)
    streamed = bytearray(write_wav(tmp_path / "streamed.wav", 0.5).read_bytes())
    streamed[4:8] = streamed[40:44] = b"\xff\xff\xff\xff"   # as ffmpeg writes to a pipe
    (tmp_path / "streamed.wav").write_bytes(streamed)
    wavs = {"a_ok": str(write_wav(tmp_path / "ok.wav", 0.5)), "b_short": str(tmp_path / "short3ms.wav"),
            "c_nan": str(_bad_audio("nan", tmp_path / "nan.wav")), "d_cut": str(_short_read_wav(tmp_path / "cut.wav")),
            "e_streamed": str(tmp_path / "streamed.wav")}
    d = data_dir(tmp_path / "data", wavs)
    r = run_util("validate_data_dir.sh", "--check-audio", "--nj", 2, d, env=recipe_env)
    assert_clean_error(r, "wav.scp:2: utt 'b_short'", "48 samples (0.003 s) is shorter than one 25 ms",
                       "wav.scp:3: utt 'c_nan'", "10 NaN/inf sample(s)",
                       "wav.scp:4: utt 'd_cut'", "is truncated: its header announces 4768 bytes of audio")
    assert "a_ok" not in r.stderr and "e_streamed" not in r.stderr
    assert run_util("validate_data_dir.sh", d, env=recipe_env).returncode == 0   # headers alone look fine


def test_short_read_is_logged_once_per_file(tmp_path, caplog):
    from sslspk.data import audio

    cut = _short_read_wav(tmp_path / "cut.wav")
    with caplog.at_level(logging.WARNING, logger="sslspk"):
        assert len(audio.load_audio(str(cut))) == 978
        audio.load_audio(str(cut), start=0.01)
    assert caplog.text.count(f"{str(cut)!r} is truncated") == 1


def test_segment_beyond_the_recording(tmp_path, recipe_env):
    """A segment ending more than MAX_OVERSHOOT (0.5 s) after its recording is an error everywhere it is
    read; up to that it is clipped, as Kaldi's extract-segments does."""
    rec = write_wav(tmp_path / "rec.wav", 0.3)
    d = data_dir(tmp_path / "data", {"rec": str(rec)})
    (d / "segments").write_text("u_clipped rec 0.0 0.75\nu_far rec 0.0 5.0\n")
    (d / "utt2spk").write_text("u_clipped s\nu_far s\n")
    msg = "segment [0.0, 5.0) ends 4.700 s after the end of the recording (0.300 s; at most 0.5 s is clipped)"
    r = run_util("validate_data_dir.sh", "--check-audio", d, env=recipe_env)
    assert_clean_error(r, "utt 'u_far'", msg)
    assert "u_clipped" not in r.stderr
    assert_clean_error(run_util("compute_utt2dur.sh", d, env=recipe_env), "utt 'u_far'", msg)
    model = _model_dir(tmp_path / "baseline")
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert_clean_error(r, "utt 'u_far'", msg, str(rec))
    (d / "segments").write_text("u_clipped rec 0.0 0.75\n")
    (d / "utt2spk").write_text("u_clipped s\n")
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------ configs of a model dir

@pytest.mark.parametrize("edit,msg", [
    ({"sample_rat": 16000}, "unknown section(s) sample_rat; valid: model, sample_rate"),
    ({"data": {"chanel": "first"}}, "data: unknown key(s) chanel; valid: views, augment, too_short, channel"),
    ({"data": {"channel": "frist"}}, "data.channel must be one of mix, first, got 'frist'"),
    ({"sample_rate": "16k"}, "sample_rate: expected a positive integer (Hz), got '16k'"),
])
def test_model_dir_config_keys_are_checked(tmp_path, recipe_env, edit, msg):
    model = _model_dir(tmp_path / "baseline", **edit)
    d = data_dir(tmp_path / "data", _wavs(tmp_path))
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert_clean_error(r, str(model / "config.yaml"), msg)
    assert not (tmp_path / "e.scp").exists()


def test_one_sample_rate_per_config(tmp_path, recipe_env):
    """The top-level sample_rate (the rate audio is resampled to) is the front-end's too; a
    model.frontend.sample_rate that differs is an error, for extraction and training alike."""
    from sslspk.extraction import load_encoder

    encoder, _ = load_encoder(_model_dir(tmp_path / "m8k", sample_rate=8000))
    assert encoder.frontend.cfg.sample_rate == 8000
    cfg = yaml.safe_load(BASELINE.read_text())
    cfg["model"]["frontend"]["sample_rate"] = 16000
    model = _model_dir(tmp_path / "mixed", sample_rate=8000, model=cfg["model"])
    d = data_dir(tmp_path / "data", _wavs(tmp_path))
    r = run_bin("extract_embeddings.py", model, d, tmp_path / "e.ark", tmp_path / "e.scp", env=recipe_env)
    assert_clean_error(r, "model.frontend.sample_rate 16000 differs from sample_rate 8000")
    front = {"type": "fbank", "num_mel_bins": 20, "sample_rate": 16000}
    r = run_bin("train_ssl.py", "--config", _train_config(tmp_path, sample_rate=8000, model={"frontend": front}),
                "--data", _train_data(tmp_path, 4), "--exp-dir", tmp_path / "exp", env=recipe_env)
    assert_clean_error(r, "model.frontend.sample_rate 16000 differs from sample_rate 8000")
    assert not (tmp_path / "exp").exists()
    from sslspk.models import with_sample_rate
    from sslspk.utils.config import ConfigError

    with pytest.raises(ConfigError, match="a model of type wavlm takes 16000 Hz audio"):
        with_sample_rate({"type": "wavlm"}, 8000)


# ------------------------------------------------------------------------------------ Python API

@pytest.mark.parametrize("kind,msg", [
    ("short_file", "48 samples (0.003 s) is shorter than one 25 ms analysis window"),
    ("nan_array", "10 NaN/inf sample(s) in the waveform"),
    ("short_array", "the waveform: 100 samples (0.006 s) is shorter than one 25 ms analysis window"),
])
def test_api_rejects_what_extraction_rejects(tmp_path, kind, msg):
    from sslspk import SpeakerEmbedder
    from sslspk.data.audio import AudioError

    emb = SpeakerEmbedder.from_pretrained(_model_dir(tmp_path / "baseline"))
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    if kind == "short_file":
        sf.write(tmp_path / "short3ms.wav", x[:48], 16000)
        audio = str(tmp_path / "short3ms.wav")
    elif kind == "nan_array":
        x[:10] = np.nan
        audio = x
    else:
        audio = x[:100]
    with pytest.raises(AudioError, match=re.escape(msg)):
        emb.embed(audio)


def test_verify_cli_short_file_is_an_error_not_nan(tmp_path, recipe_env):
    model = _model_dir(tmp_path / "baseline")
    sf.write(tmp_path / "short3ms.wav", 0.1 * np.ones(48, np.float32), 16000)
    r = run_bin("verify.py", "--threshold", "0.5", model, write_wav(tmp_path / "a.wav", 1.0), tmp_path / "short3ms.wav",
                env=recipe_env)
    assert_clean_error(r, str(tmp_path / "short3ms.wav"), "shorter than one 25 ms analysis window")
    assert "NaN" not in r.stdout


def test_a_path_is_never_run_as_a_command(tmp_path, recipe_env):
    """Only wav.scp entries are pipes: a path ending in '|' given to the API or to embed.py/verify.py is a
    (missing) file, not a shell command."""
    from sslspk import SpeakerEmbedder
    from sslspk.data.audio import AudioError

    model = _model_dir(tmp_path / "baseline")
    a = write_wav(tmp_path / "a.wav", 1.0)
    evil = f"touch {tmp_path / 'pwned'}; cat {a} |"
    r = run_bin("embed.py", model, evil, env=recipe_env, cwd=tmp_path)
    assert_clean_error(r, "cannot read audio", evil)
    r = run_bin("verify.py", model, a, evil, env=recipe_env, cwd=tmp_path)
    assert_clean_error(r, "cannot read audio", evil)
    with pytest.raises(AudioError, match="cannot read audio"):
        SpeakerEmbedder.from_pretrained(model).embed(evil)
    assert not (tmp_path / "pwned").exists()
    from sslspk.data.datadir import DataDir

    d = data_dir(tmp_path / "data", {"u": f"cat {a} |"})   # from a wav.scp, a pipe is run
    assert len(DataDir.load(d).load_audio("u")) == 16000


# ------------------------------------------------------------------------------------ stale or colliding outputs

def _extract_step(model: Path, data: Path, out: Path, env: dict, *opts: str) -> subprocess.CompletedProcess:
    return subprocess.run(["steps/extract_embeddings.sh", "--nj", "2", *opts, str(model), str(data), str(out)],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def _keys(scp: Path) -> list[str]:
    from sslspk.data.embeddings import load_embeddings

    return load_embeddings(scp)[0]


def test_extraction_reuses_outputs_only_of_the_same_inputs(tmp_path, recipe_env):
    """A job's (or the merged) output is reused only when made from the same model and data files:
    after the data dir or the model changes, the embeddings are those of the new inputs."""
    model = _model_dir(tmp_path / "baseline")
    wavs = {f"u{i}": str(write_wav(tmp_path / f"u{i}.wav", 0.3, seed=i)) for i in range(10)}
    wavs["u0"] = str(_bad_audio("nan", tmp_path / "nan.wav"))   # job 1 (u0-u4) fails, job 2 (u5-u9) finishes
    d = data_dir(tmp_path / "data", wavs)
    out = tmp_path / "emb"
    r = _extract_step(model, d, out, recipe_env)
    assert r.returncode == 1 and (out / "embeddings.2.scp").exists() and not (out / "embeddings.scp").exists()
    (d / "utt2spk").write_text("".join(f"u{i} u{i}\n" for i in range(1, 10)))   # the NaN utterance dropped
    assert run_util("fix_data_dir.sh", d, env=recipe_env).returncode == 0
    r = _extract_step(model, d, out, recipe_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _keys(out / "embeddings.scp") == [f"u{i}" for i in range(1, 10)]
    assert "not made from this model and data: extracting again" in (out / "log" / "extract.2.log").read_text()
    # One utterance dropped and another added: the merged scp is not reused either.
    wavs = {f"u{i}": str(write_wav(tmp_path / f"u{i}.wav", 0.3, seed=i)) for i in range(2, 11)}
    data_dir(d, wavs)
    r = _extract_step(model, d, out, recipe_env)
    assert r.returncode == 0 and "extracting again" in r.stdout, r.stdout + r.stderr
    assert _keys(out / "embeddings.scp") == sorted(wavs)
    # Another model: extracted again, the same data.
    before = (out / "embeddings.1.ark").read_bytes()
    _model_dir(tmp_path / "nocmn", model={**yaml.safe_load(BASELINE.read_text())["model"], "use_std": False})
    (model / "config.yaml").write_text((tmp_path / "nocmn" / "config.yaml").read_text())
    r = _extract_step(model, d, out, recipe_env)
    assert r.returncode == 0 and "extracting again" in r.stdout and (out / "embeddings.1.ark").read_bytes() != before
    r = _extract_step(model, d, out, recipe_env)   # nothing changed: nothing redone
    assert r.returncode == 0 and "exists, skipping extraction" in r.stdout
    from sslspk.extraction import extraction_stamp  # the step's stamp is the library's

    assert extraction_stamp(model, d).is_fresh(out / "embeddings.scp")
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.tmp"))


def test_rerun_waits_for_a_still_running_job_of_a_killed_run(tmp_path, recipe_env):
    """A second extraction into the same output (a rerun while a job of a killed run goes on) waits for the
    first, naming its process, then reuses what it wrote: no collision on temp files, no lost output."""
    a = write_wav(tmp_path / "a.wav", 0.5)
    go = tmp_path / "GO"
    pipe = f"bash -c 'touch {tmp_path}/started.$$; while [ ! -e {go} ]; do sleep 0.05; done; cat {a}' |"
    d = data_dir(tmp_path / "data", {"u": pipe})
    model = _model_dir(tmp_path / "baseline")
    args = [sys.executable, str(REPO / "bin" / "extract_embeddings.py"), str(model), str(d), str(tmp_path / "e.ark"),
            str(tmp_path / "e.scp")]
    with open(tmp_path / "first.log", "w") as log1, open(tmp_path / "second.log", "w") as log2:
        first = subprocess.Popen(args, env=recipe_env, stdout=log1, stderr=subprocess.STDOUT)
        try:
            while not list(tmp_path.glob("started.*")):                   # the first job is reading the audio
                assert first.poll() is None, (tmp_path / "first.log").read_text()
                time.sleep(0.05)
            second = subprocess.Popen(args, env=recipe_env, stdout=log2, stderr=subprocess.STDOUT)
            while ("waiting for" not in (tmp_path / "second.log").read_text()
                   and len(list(tmp_path.glob("started.*"))) < 2):         # blocked on the lock, or reading too
                assert second.poll() is None, (tmp_path / "second.log").read_text()
                time.sleep(0.05)
        finally:
            go.touch()
        assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0, (tmp_path / "second.log").read_text()
    second_log = (tmp_path / "second.log").read_text()
    assert f"waiting for process {first.pid} on" in second_log and "nothing to do" in second_log, second_log
    assert _keys(tmp_path / "e.scp") == ["u"] and len(list(tmp_path.glob("started.*"))) == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_step_refuses_a_non_integer_nj(tmp_path, recipe_env):
    model = _model_dir(tmp_path / "baseline")
    d = data_dir(tmp_path / "data", _wavs(tmp_path))
    r = _extract_step(model, d, tmp_path / "emb", recipe_env, "--nj", "abc")
    assert r.returncode == 1 and "option --nj is an integer: expected a whole number, got 'abc'" in r.stderr
    assert not (tmp_path / "emb").exists() and not (d / "split3").exists()


def test_non_finite_embedding_is_named(tmp_path, recipe_env, embeddings):
    """An scp with a NaN vector stops scoring (naming the scp, line and utterance) instead of giving NaN
    scores; a score file with a NaN score stops compute_metrics, naming the file and line."""
    from sslspk.data.embeddings import write_embeddings

    rng = np.random.default_rng(1)
    vecs = {u: rng.standard_normal(8).astype(np.float32) for u in ("a", "b", "c")}
    vecs["b"][3] = np.nan
    write_embeddings(tmp_path / "x.ark", tmp_path / "x.scp", vecs.items())
    (tmp_path / "trials").write_text("a b target\nb c nontarget\n")
    r = run_bin("score.py", "--mean-scp", tmp_path / "x.scp", "--var-norm", tmp_path / "trials", embeddings[1],
                tmp_path / "out.score", env=recipe_env)
    assert_clean_error(r, f"{tmp_path / 'x.scp'}:2: embedding 'b' has 1 NaN/inf value(s)")
    assert not (tmp_path / "out.score").exists()
    (tmp_path / "nan.score").write_text("a b 0.5 target\nb c nan nontarget\n")
    r = run_bin("compute_metrics.py", tmp_path / "nan.score", env=recipe_env)
    assert_clean_error(r, f"{tmp_path / 'nan.score'}:2: score 'nan' of b c is not finite")


def test_calibration_halves_follow_the_trial_list(tmp_path, recipe_env):
    """steps/evaluate.sh with one trial list, then another (older on disk) over other utterances: the
    dev/eval halves are split again from the new list, not reused from the first (whose ids would
    then have no embedding)."""
    wavs = {f"s{s:02d}-u{u}": str(write_wav(tmp_path / "wav" / f"s{s:02d}-u{u}.wav", 0.6, freq=150.0 + 40 * s,
                                             seed=u)) for s in range(12) for u in range(3)}
    train = data_dir(tmp_path / "train", {u: p for u, p in wavs.items() if u < "s04"})
    test = data_dir(tmp_path / "test", {u: p for u, p in wavs.items() if u >= "s04"})
    (test / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(wavs) if u >= "s04"))

    def trials(name: str, utts: list[str]) -> Path:
        lines = [f"{a} {b} {'target' if a[:3] == b[:3] else 'nontarget'}\n" for a in utts for b in utts if a < b]
        (tmp_path / name).write_text("".join(lines))
        return tmp_path / name

    first = trials("first", [u for u in sorted(wavs) if u >= "s04"])
    second = trials("second", [u for u in sorted(wavs) if u >= "s08"])
    os.utime(second, (1, 1))   # older than the halves of the first list
    (tmp_path / "exp").mkdir()
    shutil.copy(BASELINE, tmp_path / "exp" / "config.yaml")
    for t in (first, second):
        r = subprocess.run([str(REPO / "steps" / "evaluate.sh"), "--nj", "1", "--device", "cpu", str(tmp_path / "exp"),
                            str(train), str(test), str(t)], cwd=REPO, env=recipe_env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        used = {w for n in ("dev", "eval") for line in (tmp_path / "exp" / "trials" / n).read_text().splitlines()
                for w in line.split()[:2]}
        assert used <= {w for line in t.read_text().splitlines() for w in line.split()[:2]}, (t.name, used)
