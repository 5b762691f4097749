"""Training on (pseudo) labels: AAM + DLG-LC through train_pseudo.py, --init inheritance, the loop report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from test_train import TINY_MODEL, make_data, run_train, write_config

DLG_EPOCH = {"mode": "epoch", "start_epoch": 1, "correct_start_epoch": 1, "threshold": 0.5}
DLG_ONLINE = {"mode": "online", "start_epoch": 1, "correct_start_epoch": 2}


def pseudo_config(path: Path, epochs: int = 5, dlg: bool = True, model: bool = True,
                  dlg_lc: dict | None = None) -> Path:
    cfg = {"sample_rate": 16000, "data": {"views": [{"seconds": 0.5, "count": 1}], "augment": None},
           "loss": {"margin": 0.2, "scale": 16, "margin_warmup_epochs": [0, 2]},
           "train": {"epochs": epochs, "batch_size": 8, "num_workers": 0, "optimizer": "adamw", "lr": 0.01,
                     "warmup_epochs": 0.5}}
    if model:
        cfg["model"] = TINY_MODEL
    if dlg:
        cfg["dlg_lc"] = dlg_lc or DLG_EPOCH
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_pseudo(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / "train_pseudo.py"), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def noisy_copy(data: Path, out: Path, frac: float, seed: int = 0) -> Path:
    """The data dir with a fraction of its labels moved to another speaker (bad pseudo-labels)."""
    import shutil

    shutil.copytree(data, out, ignore=shutil.ignore_patterns("wav"))
    lines = (data / "utt2spk").read_text().split("\n")[:-1]
    spks = sorted({line.split()[1] for line in lines})
    rng = np.random.default_rng(seed)
    new = []
    for line in lines:
        u, s = line.split()
        if rng.random() < frac:
            s = spks[(spks.index(s) + 1 + rng.integers(len(spks) - 1)) % len(spks)]
        new.append(f"{u} {s}")
    (out / "utt2spk").write_text("\n".join(new) + "\n")
    (out / "spk2utt").unlink(missing_ok=True)
    return out


@pytest.mark.parametrize("dlg_lc", [DLG_EPOCH, DLG_ONLINE], ids=["epoch", "online"])
def test_train_pseudo_with_dlg_lc(tmp_path, recipe_env, dlg_lc):
    data = make_data(tmp_path / "data", n_spk=4, n_utt=8)
    noisy = noisy_copy(data, tmp_path / "noisy", 0.25)
    cfg = pseudo_config(tmp_path / "p.yaml", epochs=5, dlg_lc=dlg_lc)
    r = train_pseudo("--config", str(cfg), "--data", str(noisy), "--exp-dir", str(tmp_path / "exp"),
                     "--ref-utt2spk", str(data / "utt2spk"), env=recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "exp" / "train.log").read_text()
    losses = [float(line.split(" loss=")[1].split()[0]) for line in log.splitlines() if " loss=" in line]
    # The margin rises 0 -> 0.2 over epochs 1-3 (margin_warmup_epochs [0, 2]): compare at full margin. The
    # online mode's loss changes meaning with the correction (epochs 3-5 add relabelled samples, / batch size).
    assert len(losses) == 5 and losses[-1] < losses[2 if dlg_lc["mode"] == "epoch" else 0], losses
    dlg = [line for line in log.splitlines() if "DLG-LC epoch" in line]
    assert len(dlg) == 4 and "dlg_kept=" in dlg[-1] and "dlg_accuracy_before=" in dlg[-1]
    if dlg_lc["mode"] == "online":   # epochs 2-5 gated, with the threshold of the epoch before
        assert all("dlg_threshold=" in line for line in dlg)
    from sslspk.extraction import load_encoder

    enc, _ = load_encoder(tmp_path / "exp")
    assert enc(torch.randn(1, 8000)).shape == (1, 16)


def test_init_inherits_model_and_is_recorded(tmp_path, recipe_env):
    data = make_data(tmp_path / "data", n_spk=3, n_utt=4)
    ssl = write_config(tmp_path / "ssl.yaml", epochs=1)
    assert run_train(ssl, data, tmp_path / "ssl", recipe_env).returncode == 0
    cfg = pseudo_config(tmp_path / "p.yaml", epochs=1, dlg=False, model=False)
    r = train_pseudo("--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "pl"),
                     "--init", str(tmp_path / "ssl"), env=recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = yaml.safe_load((tmp_path / "pl" / "config.yaml").read_text())
    assert saved["init"] == str(tmp_path / "ssl") and saved["model"] == TINY_MODEL
    # The first step starts from the SSL weights: with the encoder's lr 0 the exported encoder equals them.
    c = yaml.safe_load(cfg.read_text())
    c["finetune"] = {"backbone_lr_scale": 0.0}   # (lr 0 itself is out of range: train.lr > 0)
    cfg.write_text(yaml.safe_dump(c))
    r = train_pseudo("--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "pl0"),
                     "--init", str(tmp_path / "ssl"), env=recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "ssl" / "model.pt")["model"]
    b = torch.load(tmp_path / "pl0" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point() and "running" not in k)
    # A model block that contradicts the initial model is refused.
    c["model"] = dict(TINY_MODEL, embedding_dim=8)
    cfg.write_text(yaml.safe_dump(c))
    r = train_pseudo("--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "bad"),
                     "--init", str(tmp_path / "ssl"), env=recipe_env)
    assert r.returncode == 1 and "differs from that of the initial model" in r.stderr


def test_supervised_task_records_losses_against_given_labels():
    from sslspk.models import build_model
    from sslspk.supervised import FinetuneConfig, LossConfig, SupervisedTask

    torch.manual_seed(0)
    task = SupervisedTask(build_model(TINY_MODEL), num_classes=3, num_utts=6, loss=LossConfig(),
                          finetune=FinetuneConfig(), labels=np.array([0, 1, 2, 0, 1, 2]))
    batch = {"views": [torch.randn(2, 1, 8000) * 0.1], "index": torch.tensor([1, 4]),
             "label": torch.tensor([2, -1])}  # utt 1 corrected to 2, utt 4 left out this epoch
    loss, logs = task(batch, 0)
    loss.backward()
    seen = task.last_loss.numpy()
    assert np.isnan(seen[[0, 2, 3, 5]]).all() and np.isfinite(seen[[1, 4]]).all()
    # The recorded losses are against the given labels (1 and 1), not this epoch's (2, left out).
    with torch.no_grad():
        emb = task.encoder(batch["views"][0][:, 0])  # same batch, train mode: same batch-norm statistics
        given = task.classifier(emb, torch.tensor([1, 1]))[0].numpy()
        corrected = task.classifier(emb, torch.tensor([2, 1]))[0].numpy()
    np.testing.assert_allclose(seen[[1, 4]], given, rtol=1e-5)
    assert not np.isclose(seen[1], corrected[0])
    # The training loss uses this epoch's labels: utt 1 as class 2, utt 4 excluded.
    assert loss.item() == pytest.approx(float(corrected[0]), rel=1e-5)


def test_dlg_lc_corrects_labels_only_from_correct_start_epoch():
    from types import SimpleNamespace

    from sslspk.models import build_model
    from sslspk.supervised import DLGLCConfig, FinetuneConfig, LossConfig, SupervisedTask

    labels = np.array([0, 1, 2, 0, 1, 2] * 4)
    task = SupervisedTask(build_model(TINY_MODEL), num_classes=3, num_utts=len(labels), loss=LossConfig(),
                          finetune=FinetuneConfig(), labels=labels,
                          dlg_lc=DLGLCConfig(mode="epoch", start_epoch=1, correct_start_epoch=3,
                                             threshold=0.5))
    rng = np.random.default_rng(0)
    noisy = np.arange(len(labels)) % 4 == 0   # a quarter of the samples: high loss, confident other class
    task.last_loss[:] = torch.as_tensor(np.where(noisy, 8.0, 0.5) + rng.normal(0, 0.1, len(labels)))
    task.last_pred[:] = torch.as_tensor(np.where(noisy, (labels + 1) % 3, labels))
    task.last_conf[:] = 0.99
    trainer = SimpleNamespace(dataset=SimpleNamespace(labels=labels.copy()), is_main=True)
    gate_only = task.on_epoch_start(2, trainer)   # gated, not corrected: unreliable samples left out
    assert (trainer.dataset.labels[noisy] == -1).all() and (trainer.dataset.labels[~noisy] == labels[~noisy]).all()
    assert gate_only["dlg_corrected"] == 0.0 and gate_only["dlg_dropped"] == pytest.approx(noisy.mean())
    corrected = task.on_epoch_start(3, trainer)   # from correct_start_epoch on: relabelled to the prediction
    assert (trainer.dataset.labels[noisy] == (labels[noisy] + 1) % 3).all()
    assert corrected["dlg_corrected"] == pytest.approx(noisy.mean()) and corrected["dlg_dropped"] == 0.0


@pytest.mark.parametrize("subcenters", [1, 3])
def test_classifier_starts_at_class_mean_embeddings(subcenters):
    from sslspk.models import build_model
    from sslspk.supervised import FinetuneConfig, LossConfig, SupervisedTask

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 3] * 5)
    centres = rng.normal(size=(5, 16))   # class 4 has no utterance: keeps its random weight
    emb = 3.0 * centres[labels] + 0.3 * rng.normal(size=(len(labels), 16))
    torch.manual_seed(0)
    task = SupervisedTask(build_model(TINY_MODEL), num_classes=5, num_utts=len(labels),
                          loss=LossConfig(subcenters=subcenters), finetune=FinetuneConfig(), labels=labels)
    before = task.classifier.weight.detach().clone()
    task.init_classes_from(emb)
    w = task.classifier.weight.detach().view(5, subcenters, 16)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for c in range(4):
        mean = torch.as_tensor(x[labels == c].mean(0), dtype=torch.float32)
        cos = torch.nn.functional.cosine_similarity(w[c], mean[None], dim=1)
        assert (cos > 0.99).all(), (c, cos)
    kept = torch.nn.functional.cosine_similarity(w[4], before.view(5, subcenters, 16)[4, :1], dim=1)
    assert (kept > 0.98).all(), kept
    # Every utterance is now closest to its own class: the untrained classifier's accuracy is 100%.
    pred = task.classifier.cosine(torch.as_tensor(emb, dtype=torch.float32)).argmax(1).numpy()
    assert (pred == labels).all()
    if subcenters > 1:   # sub-centres of a class are not identical, or only one would ever learn
        assert not torch.allclose(w[0, 0], w[0, 1])


def centroid_run_inputs(tmp_path: Path, env: dict, **train) -> tuple[Path, Path]:
    """A data dir, an SSL model trained on it (``tmp_path/ssl``) and a pseudo config with init_from_centroids."""
    data = make_data(tmp_path / "data", n_spk=3, n_utt=4)
    ssl = write_config(tmp_path / "ssl.yaml", epochs=1)
    assert run_train(ssl, data, tmp_path / "ssl", env).returncode == 0
    cfg = pseudo_config(tmp_path / "p.yaml", epochs=1, dlg=False, model=False)
    c = yaml.safe_load(cfg.read_text())
    c["loss"]["init_from_centroids"] = True
    c["train"].update(train)
    cfg.write_text(yaml.safe_dump(c))
    return data, cfg


def test_train_pseudo_init_from_centroids(tmp_path, recipe_env):
    data, cfg = centroid_run_inputs(tmp_path, recipe_env)
    r = train_pseudo("--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "pl"),
                     "--init", str(tmp_path / "ssl"), env=recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 classes start at the mean embeddings" in r.stdout
    # A resumed run keeps the checkpoint's classifier: no second embedding pass.
    (tmp_path / "pl" / "model.pt").unlink()
    r = train_pseudo("--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "pl"),
                     "--init", str(tmp_path / "ssl"), env=recipe_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stderr and "classes start at the mean embeddings" not in r.stdout


def test_train_pseudo_init_from_centroids_ddp(tmp_path, recipe_env):
    """train_pseudo.py with init_from_centroids under steps/train.sh with 2 CPU processes trains and writes model.pt."""
    data, cfg = centroid_run_inputs(tmp_path, recipe_env, batch_size=4)
    r = subprocess.run(["bash", str(REPO / "steps" / "train.sh"), "--nproc-per-node", "2", "train_pseudo.py",
                        "--config", str(cfg), "--data", str(data), "--exp-dir", str(tmp_path / "pl"),
                        "--init", str(tmp_path / "ssl")],
                       cwd=REPO / "egs" / "mini" / "v1", capture_output=True, text=True, env=recipe_env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("classes start at the mean embeddings") == 1
    assert (tmp_path / "pl" / "model.pt").exists()


def test_init_from_centroids_ddp_shards_match_one_process(tmp_path, recipe_env):
    """Each of 2 DDP ranks embeds half of the data dir; the all-reduced class weights equal one process's."""
    data = make_data(tmp_path / "data", n_spk=3, n_utt=5)
    r = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_centroid_check.py"), str(data)],
                       capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("max difference to one process") == 2
