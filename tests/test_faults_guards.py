"""Faults that gave a silent wrong answer, a lost input or a hang (issue #30), each stopped by one mechanism
applied at every place the fault can enter: embeddings that cannot be compared, audio with no speech,
training on one class, half-made experiment dirs (lock, workers dying with the launcher, unfinished
model dirs) and config values out of range. docs/reliability.md lists them with these tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import REPO, write_wav
from test_faults import BASELINE, _train_config, _train_data, assert_clean_error, data_dir, run_bin

# ------------------------------------------------------------------------------ embeddings that cannot be compared


def _scp(path: Path, vecs: dict[str, np.ndarray]) -> Path:
    from sslspk.data.embeddings import write_embeddings

    write_embeddings(path.with_suffix(".ark"), path, vecs.items())
    return path


def _vecs(dim: int, seed: int = 0, keys=("a", "b", "c")) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(dim).astype(np.float32) for k in keys}


@pytest.mark.parametrize("option", ["--test-scp", "--mean-scp", "--cohort-scp", "--segments-scp"])
def test_embeddings_of_other_dims_are_named(tmp_path, recipe_env, option):
    """score.py: an enrollment scp of 60-d against a 59-d test, mean, cohort or segment scp names both files
    and their dimensions (it was a numpy traceback, or for the cohort a silent broadcast)."""
    enroll = _scp(tmp_path / "e.scp", _vecs(60))
    if option == "--segments-scp":
        rng = np.random.default_rng(1)
        other = _scp(tmp_path / "o.scp", {k: rng.standard_normal((3, 59)).astype(np.float32) for k in "abc"})
    else:
        other = _scp(tmp_path / "o.scp", _vecs(59, 1))
    (tmp_path / "trials").write_text("a b target\nb c nontarget\n")
    r = run_bin("score.py", option, other, tmp_path / "trials", enroll, tmp_path / "out", env=recipe_env)
    assert_clean_error(r, f"{enroll} has dim 60", f"{other} has dim 59")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tool", ["score.py", "score.py --cohort-scp", "score.py --segments-scp",
                                  "speaker_mean_embeddings.py", "cluster.py"])
def test_zero_norm_embedding_is_named(tmp_path, recipe_env, tool):
    """A zero vector has no direction: scored 0.000 (AS-norm -43) without a word before. Every reader of an
    scp names the file, line and utterance (cosine, AS-norm cohort, segment protocol, speaker means,
    clustering)."""
    good = _vecs(8, 0, ("a", "b", "c", "d"))
    bad = dict(good, b=np.zeros(8, np.float32))
    (tmp_path / "trials").write_text("a b target\nb c nontarget\n")
    out = tmp_path / "out"
    if tool == "score.py":
        scp = _scp(tmp_path / "x.scp", bad)
        r = run_bin("score.py", tmp_path / "trials", scp, out, env=recipe_env)
    elif tool == "score.py --cohort-scp":
        scp = _scp(tmp_path / "x.scp", bad)
        r = run_bin("score.py", "--cohort-scp", scp, tmp_path / "trials", _scp(tmp_path / "e.scp", good), out,
                    env=recipe_env)
    elif tool == "score.py --segments-scp":
        segs = {k: np.stack([v, v + 1]) for k, v in good.items()}
        segs["b"][1] = 0.0
        scp = _scp(tmp_path / "x.scp", segs)
        r = run_bin("score.py", "--segments-scp", scp, tmp_path / "trials", _scp(tmp_path / "e.scp", good), out,
                    env=recipe_env)
    else:
        scp = _scp(tmp_path / "x.scp", bad)
        d = data_dir(tmp_path / "data", {k: f"{k}.wav" for k in bad})
        args = ([d, scp, tmp_path / "o.ark", out] if tool == "speaker_mean_embeddings.py"
                else [scp, d, out, "--k", "2"])
        r = run_bin(tool, *args, env=recipe_env)
    assert_clean_error(r, f"{scp}:2:", "'b'", "zero norm")
    assert not out.exists()


class _Constant(torch.nn.Module):
    """A 'model' giving the same embedding ``vec`` for any waveform."""

    def __init__(self, vec: np.ndarray):
        super().__init__()
        self.register_buffer("vec", torch.as_tensor(vec, dtype=torch.float32))

    def forward(self, x, lengths=None):
        return self.vec.expand(x.shape[0], -1)


def test_api_rejects_embeddings_that_cannot_be_compared():
    """The API's scoring (score, verify, calibrate_threshold go through score_embeddings): other dimensions
    (also of the normalisation's mean) and zero vectors are named errors; a model that gives a zero vector
    is an error of embed naming the input."""
    from sslspk.api import SpeakerEmbedder
    from sslspk.utils.errors import InputError

    rng = np.random.default_rng(0)
    emb = SpeakerEmbedder(_Constant(np.ones(4)))
    a, b = rng.standard_normal(60), rng.standard_normal(59)
    with pytest.raises(InputError, match="a has dim 60, b has dim 59"):
        emb.score_embeddings(a, b)
    emb.set_normalization(rng.standard_normal((5, 59)))
    with pytest.raises(InputError, match="the normalisation mean has dim 59"):
        emb.score_embeddings(a, a)
    emb.set_normalization(None)
    with pytest.raises(InputError, match="embedding b has zero norm"):
        emb.score_embeddings(a, np.zeros(60))
    zero = SpeakerEmbedder(_Constant(np.zeros(4)))
    wav = 0.1 * rng.standard_normal(16000).astype(np.float32)
    with pytest.raises(InputError, match="waveform 0: the model gives an embedding of zero norm"):
        zero.embed(wav)


# ------------------------------------------------------------------------------ audio with no speech

def _near_silent(path: Path, kind: str) -> Path:
    """Two seconds of ``dither`` (+-1 LSB of 16-bit PCM) or of white ``noise`` at -80 dBFS RMS."""
    rng = np.random.default_rng(7 if kind == "dither" else 8)
    if kind == "dither":
        x = rng.integers(-1, 2, 32000).astype(np.float32) / 32768
    else:
        x = (10 ** (-80 / 20) * rng.standard_normal(32000)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, 16000, subtype="PCM_16" if kind == "dither" else "FLOAT")
    return path


def test_speech_level_threshold_between_noise_and_quiet_speech():
    """check_speech rejects a -80 dBFS noise floor and passes a tone whose loudest frame is at -48 dBFS
    (the quietest FSDD recording's level, the quietest of the recipes' corpora; docs/reliability.md)."""
    from sslspk.data.audio import AudioError, check_speech, speech_level

    t = np.arange(16000) / 16000
    tone = (10 ** (-48 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    assert speech_level(tone, 16000) == pytest.approx(-48.0, abs=0.1)   # RMS of the sine: its amplitude / sqrt 2
    check_speech(tone, 16000, "tone")
    noise = (10 ** (-80 / 20) * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    with pytest.raises(AudioError, match=r"no speech in noise: its loudest 25 ms frame is at -7\d\.\d dBFS"):
        check_speech(noise, 16000, "noise")


@pytest.mark.parametrize("kind", ["dither", "noise"])
def test_no_speech_is_an_error_on_every_path(tmp_path, recipe_env, kind):
    """Two near-silent files scored 0.999 and were "same speaker". Now: the API's embed (file and array)
    and verify, embed.py, verify.py, extraction of a data dir and validate --check-audio stop, naming the
    file (or utterance); nothing is written."""
    from sslspk.api import SpeakerEmbedder
    from sslspk.data.audio import AudioError

    quiet = _near_silent(tmp_path / f"{kind}.wav", kind)
    quiet2 = _near_silent(tmp_path / f"{kind}2.wav", kind)
    model = tmp_path / "baseline"
    model.mkdir()
    (model / "config.yaml").write_text(BASELINE.read_text())
    emb = SpeakerEmbedder.from_pretrained(model)
    emb.set_threshold(0.5)
    with pytest.raises(AudioError, match=f"no speech in {quiet}"):
        emb.embed(quiet)
    with pytest.raises(AudioError, match="no speech in the waveform"):
        emb.embed(sf.read(quiet, dtype="float32")[0])
    with pytest.raises(AudioError, match="no speech"):
        emb.verify(quiet, quiet2)
    assert_clean_error(run_bin("verify.py", "--threshold", "0.5", model, quiet, quiet2, env=recipe_env),
                       f"no speech in {quiet}")
    assert_clean_error(run_bin("embed.py", model, quiet, env=recipe_env), f"no speech in {quiet}")
    speech = write_wav(tmp_path / "speech.wav", 1.0)
    d = data_dir(tmp_path / "data", {"quiet": str(quiet), "speech": str(speech)})
    r = run_bin("extract_embeddings.py", "--device", "cpu", model, d, tmp_path / "e.ark", tmp_path / "e.scp",
                env=recipe_env)
    assert_clean_error(r, "utt 'quiet'", str(quiet), "no speech")
    assert not (tmp_path / "e.scp").exists()
    r = subprocess.run([str(REPO / "utils" / "validate_data_dir.sh"), "--check-audio", str(d)], capture_output=True,
                       text=True, env=recipe_env, cwd=REPO)
    assert r.returncode != 0 and "no speech" in r.stdout + r.stderr, r.stdout + r.stderr


# ------------------------------------------------------------------------------ training that learns nothing

def _pseudo_config(tmp_path: Path, **train) -> Path:
    cfg = yaml.safe_load(_train_config(tmp_path).read_text())
    del cfg["ssl"]
    cfg["loss"] = {"margin": 0.2, "scale": 30.0}
    cfg["train"].update(train)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_training_on_one_speaker_is_an_error(tmp_path, recipe_env):
    """One class trained with loss 0 and wrote an unchanged model.pt: now an error before anything is written."""
    d = _train_data(tmp_path, 4)
    (d / "utt2spk").write_text("".join(f"u{i} spk1\n" for i in range(4)))
    r = run_bin("train_pseudo.py", "--config", _pseudo_config(tmp_path), "--data", d, "--exp-dir", tmp_path / "exp",
                env=recipe_env)
    assert_clean_error(r, f"{d / 'utt2spk'}: 1 speaker(s)", "needs at least 2")
    assert not (tmp_path / "exp").exists()


def test_clustering_into_one_pseudo_speaker_is_an_error(tmp_path, recipe_env):
    """cluster.py --ahc-threshold 5 (above any cosine distance) gave one pseudo-speaker at rc 0: now an error
    with the hint, and no output data dir."""
    scp = _scp(tmp_path / "x.scp", _vecs(8, 0, ("a", "b", "c", "d")))
    d = data_dir(tmp_path / "data", {k: f"{k}.wav" for k in "abcd"})
    r = run_bin("cluster.py", "--k", "0", "--ahc-threshold", "5", scp, d, tmp_path / "pl", env=recipe_env)
    assert_clean_error(r, "gave 1 pseudo-speaker(s)", "--ahc-threshold 5.0: lower it")
    assert not (tmp_path / "pl" / "utt2spk").exists()


# ------------------------------------------------------------------------------ half-made experiment dirs

def _unfinished_exp(tmp_path: Path) -> Path:
    """An exp dir of a training killed before its end: config.yaml and checkpoints/ but no model.pt."""
    exp = tmp_path / "exp"
    (exp / "checkpoints").mkdir(parents=True)
    cfg = yaml.safe_load(_train_config(tmp_path).read_text())
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    (exp / "checkpoints" / "epoch_1.pt").write_bytes(b"not used")
    return exp


def test_unfinished_model_dir_is_not_loaded(tmp_path, recipe_env):
    """An exp dir without model.pt was embedded with random weights, silently, by the API, extraction (stages
    3 and 6) and export. Now an error saying the training has not finished; the initial weights load only on
    request (UNTRAINED file, as stage 6's ssl_untrained, or untrained=True), and the statistics baseline
    (no weights to learn) loads as before."""
    from sslspk.api import SpeakerEmbedder
    from sslspk.extraction import load_encoder
    from sslspk.utils.errors import InputError

    exp = _unfinished_exp(tmp_path)
    with pytest.raises(InputError, match=r"exp: no model.pt: its training has not finished \(1 epoch checkpoint"):
        SpeakerEmbedder.from_pretrained(exp)
    d = data_dir(tmp_path / "data", {"u": str(write_wav(tmp_path / "u.wav", 1.0))})
    r = run_bin("extract_embeddings.py", "--device", "cpu", exp, d, tmp_path / "e.ark", tmp_path / "e.scp",
                env=recipe_env)
    assert_clean_error(r, f"{exp}: no model.pt", "UNTRAINED")
    assert not (tmp_path / "e.scp").exists()
    assert_clean_error(run_bin("export_model.py", exp, tmp_path / "m.pt", env=recipe_env), "no model.pt")
    a = SpeakerEmbedder.from_pretrained(exp, untrained=True).model
    (exp / "UNTRAINED").touch()
    b, _ = load_encoder(exp)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "config.yaml").write_text(BASELINE.read_text())
    load_encoder(baseline)


def test_second_training_on_one_exp_dir_fails_at_once(tmp_path, recipe_env):
    """While a training holds <exp>/.lock, a second one on the same dir (another config) stops naming the
    holder, before writing its config (it ended with B's config.yaml beside A's model.pt)."""
    from sslspk.utils.fileio import exclusive_lock

    exp = tmp_path / "exp"
    with exclusive_lock(exp / ".lock", "test: training A"):
        r = run_bin("train_ssl.py", "--config", _train_config(tmp_path), "--data", _train_data(tmp_path),
                    "--exp-dir", exp, env=recipe_env)
    assert_clean_error(r, f"{exp}: training: process {os.getpid()} on", "holds its lock")
    assert sorted(p.name for p in exp.iterdir()) == [".lock"]


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.slow
def test_kill_of_the_launchers_group_kills_the_workers(tmp_path, recipe_env):
    """``kill -9`` of steps/train.sh's process group left the torchrun worker (its own session) training on,
    beside a rerun. The worker now dies with its launcher (PR_SET_PDEATHSIG) and the exp dir's lock is free
    for the rerun."""
    from sslspk.utils.fileio import exclusive_lock

    cfg = _train_config(tmp_path, train={"epochs": 100000, "max_steps_per_epoch": 1})   # would run for hours
    data, exp = _train_data(tmp_path), tmp_path / "exp"
    cmd = [str(REPO / "steps" / "train.sh"), "train_ssl.py", "--config", str(cfg), "--data", str(data),
           "--exp-dir", str(exp)]
    launcher = subprocess.Popen(cmd, cwd=REPO, env=recipe_env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((exp / "checkpoints").glob("epoch_*.pt")) and time.time() < deadline:
        time.sleep(0.5)
    worker = int((exp / ".lock").read_text().split()[1])   # "process N on HOST", written by the worker
    assert worker != launcher.pid and os.getsid(worker) != launcher.pid   # torchrun's worker: its own session
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 20
    while _pids_alive([worker]) and time.time() < deadline:
        time.sleep(0.2)
    alive = _pids_alive([worker])
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, f"worker {worker} still training after its launcher was killed"
    assert not (exp / "model.pt").exists()
    from sslspk.utils.errors import BusyError

    deadline = time.time() + 30   # the worker's data-loader processes inherited the lock: they follow within seconds
    while True:
        try:
            with exclusive_lock(exp / ".lock", "test: rerun", wait=False):   # a rerun gets the exp dir
                break
        except BusyError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


# ------------------------------------------------------------------------------ values checked before work

#: (section, key, bad value, the range in the message); every config dataclass with a numeric range
BAD_VALUES = [
    ("train", "lr", -0.1, "> 0"), ("train", "epochs", 0, ">= 1"), ("train", "batch_size", 0, ">= 1"),
    ("train", "min_lr", -1.0, ">= 0"), ("train", "warmup_epochs", -1, ">= 0"),
    ("train", "step_gamma", 1.5, "in (0, 1]"),
    ("train", "weight_decay", -0.1, ">= 0"), ("train", "momentum", 1.0, "in [0, 1)"), ("train", "grad_clip", 0, "> 0"),
    ("train", "num_workers", -1, ">= 0"), ("train", "log_every", 0, ">= 1"),
    ("train", "max_steps_per_epoch", 0, ">= 1"),
    ("model.frontend", "num_mel_bins", 0, ">= 1"), ("model.frontend", "frame_shift_ms", 0, "> 0"),
    ("model.frontend", "dither", -1, ">= 0"),
    ("data.augment", "prob", 1.5, "in [0, 1]"), ("data.augment", "speed", [0.9, -1.0], "> 0"),
    ("data.augment.eq", "prob", -0.5, "in [0, 1]"), ("data.augment.reverb", "prob", 2, "in [0, 1]"),
    ("ssl", "temperature", 0, "> 0"), ("ssl", "projector_dim", 0, ">= 1"),
    ("ssl.dino", "teacher_temp", 0, "> 0"), ("ssl.dino", "center_momentum", 1.5, "in [0, 1]"),
    ("ssl.moco", "temperature", -0.2, "> 0"), ("ssl.ssps", "kmeans_iters", 0, ">= 1"),
    ("loss", "margin_warmup_epochs", [-1, 2], ">= 0"), ("finetune", "backbone_lr_scale", -1, ">= 0"),
    ("dlg_lc", "temperature", 0, "> 0"), ("dlg_lc", "threshold", 1.5, "in [0, 1]"),
    ("dlg_lc", "min_posterior", -0.1, "in [0, 1]"),
]


def _config_with(tmp_path: Path, section: str, key: str, value) -> tuple[str, Path]:
    """(entry point, config) with ``section.key: value`` in a config that trains otherwise."""
    pseudo = section in ("loss", "finetune", "dlg_lc")
    cfg = yaml.safe_load((_pseudo_config(tmp_path) if pseudo else _train_config(tmp_path)).read_text())
    if section == "model.frontend":
        cfg["model"]["frontend"][key] = value
    elif section.startswith("data.augment"):
        cfg["data"]["augment"] = {"prob": 0.5}
        sub = section.split(".")[2:]
        (cfg["data"]["augment"].setdefault(sub[0], {}) if sub else cfg["data"]["augment"])[key] = value
    elif section == "ssl.dino":
        cfg["ssl"] = {"method": "dino", "out_dim": 16, "hidden": 16, "bottleneck": 8, key: value}
    elif section == "ssl.moco":
        cfg["ssl"] = {"method": "moco", "queue_size": 8, key: value}
    elif section == "ssl.ssps":
        cfg["ssl"]["ssps"] = {key: value}
    else:
        cfg.setdefault(section, {})[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ("train_pseudo.py" if pseudo else "train_ssl.py"), path


@pytest.mark.parametrize("section,key,value,valid", BAD_VALUES, ids=[f"{s}.{k}" for s, k, _, _ in BAD_VALUES])
def test_value_out_of_range_fails_before_any_write(tmp_path, capsys, section, key, value, valid):
    """``train.lr: -0.1`` failed with a torch traceback after config.yaml and inputs.json were written. Every
    value out of its range is now a one-line ConfigError naming the key and the range, and the exp dir is
    left as it was."""
    import importlib

    entry, config = _config_with(tmp_path, section, key, value)
    data = _train_data(tmp_path, 4)
    (data / "utt2spk").write_text("".join(f"u{i} s{i % 2}\n" for i in range(4)))
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "notes.txt").write_text("mine\n")
    main = importlib.import_module(f"sslspk.bin.{entry[:-3]}").main
    with pytest.raises(SystemExit) as e:
        main(["--config", str(config), "--data", str(data), "--exp-dir", str(exp)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and err.count("\n") == 0 and err.startswith("ERROR: "), err
    assert f"{key}: must be {valid}, got {value!r}" in err, err
    assert sorted(p.name for p in exp.iterdir()) == ["notes.txt"]

