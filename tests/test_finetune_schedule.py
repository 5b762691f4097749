"""The fine-tuning schedule of pretrained backbones (wavlm_ssl_sv's): absolute per-group learning rates
with layer-wise decay, per-epoch step decay, the normalised L2 pull towards the pretrained weights,
the AAM classes carried over from the initial model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_wav
from torch import nn

from sslspk.supervised import FinetuneConfig, LossConfig, SupervisedTask, l2_to_init_loss
from sslspk.train.trainer import TrainConfig, Trainer
from sslspk.utils.config import ConfigError


class ToyEncoder(nn.Module):
    """A backbone (a front layer + 3 'transformer layers') and a head, with the split the fine-tuning uses."""

    embedding_dim = 4

    def __init__(self, per_layer: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.front = nn.Linear(8, 8)
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.head = nn.Linear(8, 4)
        if per_layer:
            self.backbone_layer_parameters = lambda: [layer.parameters() for layer in self.layers]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.front(wav[:, :8] * 10)
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x)

    def backbone_parameters(self):
        return [*self.front.parameters(), *self.layers.parameters()]

    def head_parameters(self):
        return self.head.parameters()


def _task(finetune: FinetuneConfig, per_layer: bool = True, n: int = 8) -> SupervisedTask:
    return SupervisedTask(ToyEncoder(per_layer), num_classes=2, num_utts=n, loss=LossConfig(margin=0.2, scale=30),
                          finetune=finetune, labels=np.arange(n) % 2)


def _optimizer_lrs(task: SupervisedTask, cfg: TrainConfig, tmp_path: Path) -> dict[int, tuple[float, float]]:
    """id(parameter) -> (peak learning rate, weight decay) of the trainer's optimiser."""
    opt = Trainer(cfg, tmp_path)._optimizer(task)
    return {id(p): (g["lr_scale"] * cfg.lr, g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


def test_absolute_group_lrs_with_layer_decay(tmp_path):
    """head + classifier at head_lr; layer i at backbone_lr * layer_decay**i (i = 0 the lowest);
    backbone_layers_only leaves the other backbone parameters out; every parameter decays when asked."""
    task = _task(FinetuneConfig(backbone_lr=2e-5, head_lr=5e-3, layer_decay=0.5, backbone_layers_only=True))
    cfg = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01, decay_biases_and_norms=True, device="cpu")
    lrs = _optimizer_lrs(task, cfg, tmp_path)
    enc = task.encoder
    expected = {id(p): 5e-3 for p in [*enc.head.parameters(), *task.classifier.parameters()]}
    for i, layer in enumerate(enc.layers):
        expected.update({id(p): 2e-5 * 0.5 ** i for p in layer.parameters()})
    assert set(lrs) == set(expected)                       # the front layer is not optimised
    for k, lr in expected.items():
        assert lrs[k] == (pytest.approx(lr, rel=1e-9), 0.01)
    # Without per-layer groups the front layer is optimised at backbone_lr; biases spared from decay.
    task = _task(FinetuneConfig(backbone_lr=2e-5, head_lr=5e-3))
    lrs = _optimizer_lrs(task, TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01, device="cpu"), tmp_path)
    assert lrs[id(task.encoder.front.weight)] == (pytest.approx(2e-5), 0.01)
    assert lrs[id(task.encoder.front.bias)] == (pytest.approx(2e-5), 0.0)
    assert lrs[id(task.encoder.layers[2].weight)] == (pytest.approx(2e-5), 0.01)


def test_relative_lrs_unchanged(tmp_path):
    """Without absolute LRs: the head at train.lr, the backbone at backbone_lr_scale x train.lr (as before)."""
    task = _task(FinetuneConfig(backbone_lr_scale=0.1))
    lrs = _optimizer_lrs(task, TrainConfig(optimizer="adamw", lr=1e-3, device="cpu"), tmp_path)
    assert lrs[id(task.encoder.layers[1].weight)][0] == pytest.approx(1e-4)
    assert lrs[id(task.classifier.weight)][0] == pytest.approx(1e-3)


@pytest.mark.parametrize("cfg,msg", [
    ({"backbone_lr": 1e-5}, "backbone_lr and head_lr go together"),
    ({"layer_decay": 0.9}, "need backbone_lr and head_lr"),
    ({"backbone_lr": 1e-5, "head_lr": 1e-3, "backbone_lr_scale": 0.1}, "no backbone_lr_scale"),
    ({"l2_to_init": -1.0}, "l2_to_init >= 0"),
])
def test_finetune_config_errors(cfg, msg):
    with pytest.raises(ConfigError, match=msg):
        FinetuneConfig(**cfg)


def test_layer_decay_needs_per_layer_split(tmp_path):
    task = _task(FinetuneConfig(backbone_lr=2e-5, head_lr=5e-3, layer_decay=0.9), per_layer=False)
    with pytest.raises(ConfigError, match="ToyEncoder has none"):
        task.param_groups()


def _dataset(tmp_path: Path, n: int = 8):
    from sslspk.train.dataset import CropDataset, ViewSpec

    d = tmp_path / "data"
    d.mkdir(parents=True)
    wavs = {f"u{i}": write_wav(tmp_path / f"w{i}.wav", 0.5, freq=150 + 200 * (i % 2), seed=i) for i in range(n)}
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in wavs.items()))
    (d / "utt2spk").write_text("".join(f"{u} s{i % 2}\n" for i, u in enumerate(wavs)))
    ds = CropDataset(d, [ViewSpec(seconds=0.1, count=1, augment=False)], 16000)
    ds.labels = np.arange(n) % 2
    return ds


def _fit(tmp_path: Path, task: SupervisedTask, name: str, **train) -> Path:
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 4, "num_workers": 0, "optimizer": "adamw", "lr": 1e-3,
                         "device": "cpu", "amp": False, "average_last": 3, "grad_clip": None, **train})
    Trainer(cfg, tmp_path / name).fit(task, _dataset(tmp_path / f"{name}_data"))
    return tmp_path / name


def test_step_decay_per_epoch_for_every_group(tmp_path):
    """schedule step (step_epochs 1): epoch e (0-based) trains every group at its own peak LR x step_gamma**e,
    from the first step."""
    task = _task(FinetuneConfig(backbone_lr=2e-5, head_lr=5e-3))
    exp = _fit(tmp_path, task, "exp", schedule="step", step_epochs=1, step_gamma=0.5)
    for e in range(3):   # the checkpoint of epoch e+1 holds the LRs its last step used
        groups = torch.load(exp / "checkpoints" / f"epoch_{e + 1}.pt", weights_only=False)["optimizer"]["param_groups"]
        assert sorted({round(g["lr"], 12) for g in groups}) == [round(2e-5 * 0.5 ** e, 12), round(5e-3 * 0.5 ** e, 12)]


def test_l2_to_init_gradient_matches_closed_form():
    """On a 2-tensor toy: the gradient of task/sg(task) + w R/(sg(R)+eps), R = sum_k ||a_k - a0_k||,
    equals grad(task)/task + w u_k/(R+eps) (u_k the unit vector from a0_k to a_k), with the value 1 + w R/(R+eps)."""
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2, 2))]
    init = [torch.randn(3), torch.randn(2, 2)]
    task_loss = (a[0] ** 2).sum() * (a[1].sum() ** 2) + 1.0
    w = 0.01
    loss, dist = l2_to_init_loss(task_loss, a, init, w)
    loss.backward()
    with torch.no_grad():
        norms = [float(torch.sqrt(((x - x0) ** 2).sum())) for x, x0 in zip(a, init)]
        r = sum(norms)
        t = float((a[0] ** 2).sum() * (a[1].sum() ** 2) + 1.0)
        g_task = [2 * a[0] * a[1].sum() ** 2, torch.full((2, 2), float(2 * (a[0] ** 2).sum() * a[1].sum()))]
        for x, x0, n, gt in zip(a, init, norms, g_task):
            np.testing.assert_allclose(x.grad.numpy(), (gt / t + w * (x - x0) / n / (r + 1e-5)).numpy(), rtol=1e-5)
    assert float(dist) == pytest.approx(r, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(1 + w * r / (r + 1e-5), rel=1e-6)


def test_l2_to_init_at_the_init_point_is_the_normalised_task_gradient():
    """Where the weights equal the initial ones (the first step) the pull adds nothing (no NaN)."""
    a = [nn.Parameter(torch.ones(3))]
    task_loss = (a[0] * torch.tensor([1.0, 2.0, 3.0])).sum()
    l2_to_init_loss(task_loss, a, [torch.ones(3)], 0.01)[0].backward()
    np.testing.assert_allclose(a[0].grad.numpy(), [1 / 6, 2 / 6, 3 / 6], rtol=1e-6)


def test_l2_to_init_with_no_sample_kept_is_the_pull_alone():
    """A batch whose task loss is 0 (every sample left out) gets the pull's gradient only, no NaN; a task
    loss below eps is divided by eps."""
    a = [nn.Parameter(torch.tensor([3.0, 4.0]))]
    task_loss = (a[0] * 0.0).sum()
    loss, _ = l2_to_init_loss(task_loss, a, [torch.zeros(2)], 0.01)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.01 * 5 / (5 + 1e-5))
    np.testing.assert_allclose(a[0].grad.numpy(), 0.01 * np.array([0.6, 0.8]) / (5 + 1e-5), rtol=1e-6)
    # A task loss that underflowed to 0 while its gradient did not: divided by eps, finite.
    b = [nn.Parameter(torch.tensor([1.0]))]
    loss, _ = l2_to_init_loss(b[0].sum() * 1e-8 - (b[0].detach().sum() * 1e-8), b, [torch.ones(1)], 0.01)
    loss.backward()
    np.testing.assert_allclose(b[0].grad.numpy(), [1e-8 / 1e-5], rtol=1e-5)


def test_l2_to_init_keeps_training_closer_to_the_init(tmp_path):
    """The same run with finetune.l2_to_init ends nearer to the initial backbone than without it;
    the pull uses the weights the backbone was built with (the snapshot), not the current ones."""
    def distance(task: SupervisedTask) -> float:
        init = ToyEncoder().backbone_parameters()
        return sum(float((p - p0).detach().norm()) for p, p0 in zip(task.encoder.backbone_parameters(), init))

    free = _task(FinetuneConfig(backbone_lr=1e-2, head_lr=1e-2))
    _fit(tmp_path, free, "free", epochs=4)
    pulled = _task(FinetuneConfig(backbone_lr=1e-2, head_lr=1e-2, l2_to_init=5.0))
    _fit(tmp_path, pulled, "pulled", epochs=4)
    assert 0 < distance(pulled) < 0.8 * distance(free), (distance(pulled), distance(free))
    assert all(torch.equal(p0, q) for p0, q in zip(pulled.pretrained, ToyEncoder().backbone_parameters()))


def test_init_run_pulls_towards_the_built_weights_and_carries_the_classes(tmp_path, capsys):
    """train_pseudo.py --init A with l2_to_init: the pull is towards the weights the model block builds
    (model.pretrained), not towards A's (the logged distance is A's from them); classifier_from_init
    starts the classes at those of A's last checkpoint, and refuses another class count."""
    import yaml
    from test_train import TINY_MODEL, make_data

    from sslspk.experiment import load_classifier_from_init, train_from_config
    from sslspk.models import build_model, with_sample_rate

    data = make_data(tmp_path / "data", n_spk=3, n_utt=4)
    base = {"sample_rate": 16000, "data": {"views": [{"seconds": 0.5, "count": 1}], "augment": None},
            "loss": {"margin": 0.2, "scale": 16},
            "train": {"epochs": 2, "batch_size": 4, "num_workers": 0, "optimizer": "adamw", "lr": 0.01,
                      "warmup_epochs": 0, "device": "cpu"}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**base, "model": TINY_MODEL}))
    train_from_config(tmp_path / "a.yaml", data, tmp_path / "a", kind="pseudo")
    b = {**base, "finetune": {"l2_to_init": 0.01, "classifier_from_init": True},
         "train": {**base["train"], "epochs": 1, "lr": 1e-9, "schedule": "step"}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(b))
    train_from_config(tmp_path / "b.yaml", data, tmp_path / "b", kind="pseudo", init=tmp_path / "a")
    assert "classifier: 3 classes from" in capsys.readouterr().out
    torch.manual_seed(0)   # train.seed: the weights the model block builds
    built = build_model(with_sample_rate(TINY_MODEL, 16000, "test"))
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    want = sum(float((a[k] - v.detach()).norm()) for k, v in built.state_dict(keep_vars=True).items()
               if isinstance(v, nn.Parameter))
    line = [s for s in (tmp_path / "b" / "train.log").read_text().splitlines() if "l2_to_init=" in s][-1]
    got = float(line.split("l2_to_init=")[1].split()[0])
    assert want > 0.1 and got == pytest.approx(want, rel=2e-3), (got, want)
    # The classes B started from are A's last checkpoint's.
    task = SupervisedTask(build_model(TINY_MODEL), 3, 12, LossConfig(), FinetuneConfig())
    load_classifier_from_init(task, tmp_path / "a", "b.yaml")
    ckpt = torch.load(tmp_path / "a" / "checkpoints" / "epoch_2.pt", weights_only=False)["task"]
    assert torch.equal(task.classifier.weight.detach(), ckpt["classifier.weight"])
    with pytest.raises(ConfigError, match="does not fit this training's"):
        load_classifier_from_init(SupervisedTask(build_model(TINY_MODEL), 4, 12, LossConfig(), FinetuneConfig()),
                                  tmp_path / "a", "b.yaml")


def test_resumed_run_pulls_towards_the_built_weights(tmp_path):
    """A run with l2_to_init stopped after epoch 1 and resumed ends with the weights of the uninterrupted run:
    the resumed task pulls towards the weights it was built with, not towards the checkpoint it loads."""
    cfg = FinetuneConfig(backbone_lr=1e-2, head_lr=1e-2, l2_to_init=0.5)
    whole = _task(cfg)
    _fit(tmp_path, whole, "whole", epochs=3, schedule="step", step_epochs=1)
    first = _task(cfg)
    _fit(tmp_path, first, "split", epochs=1, schedule="step", step_epochs=1)
    resumed = _task(cfg)
    Trainer(TrainConfig(epochs=3, batch_size=4, num_workers=0, optimizer="adamw", lr=1e-3, device="cpu", amp=False,
                        average_last=3, grad_clip=None, schedule="step", step_epochs=1),
            tmp_path / "split").fit(resumed, _dataset(tmp_path / "split_data2"))
    for p, q in zip(whole.encoder.parameters(), resumed.encoder.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(whole.encoder.layers[0].weight, first.encoder.layers[0].weight)


def test_speaker_distinct_sampler():
    """At most max_per_speaker utterances of a speaker per epoch, never a speaker twice in a (global) batch,
    whole batches only; a new order every epoch; the processes take equal disjoint contiguous shares."""
    from sslspk.train.sampler import SpeakerDistinctSampler, speaker_distinct_order

    labels = np.repeat(np.arange(6), [30, 3, 5, 8, 2, 12])
    order = speaker_distinct_order(labels, batch=4, max_per_speaker=6, seed=1)
    assert len(order) % 4 == 0 and len(order) == len(set(order)) and len(order) >= 12
    for b in range(0, len(order), 4):
        assert len(set(labels[order[b:b + 4]])) == 4
    counts = np.bincount(labels[order], minlength=6)
    assert counts.max() <= 6 and counts[0] >= 1
    assert order != speaker_distinct_order(labels, batch=4, max_per_speaker=6, seed=2)
    assert order == speaker_distinct_order(labels, batch=4, max_per_speaker=6, seed=1)
    two = speaker_distinct_order(labels, batch=2, max_per_speaker=6, seed=1, world=2)   # 2 processes x 2
    assert len(two) % 4 == 0 and all(labels[two[b]] != labels[two[b + 1]] for b in range(0, len(two), 2))
    shares = [SpeakerDistinctSampler(labels, 2, 6, rank, 2, seed=1) for rank in range(2)]
    assert list(shares[0]) + list(shares[1]) == two and len(shares[0]) == len(shares[1])
    shares[0].set_epoch(1)
    assert list(shares[0]) == speaker_distinct_order(labels, 2, 6, seed=2, world=2)[:len(shares[0])]
    with pytest.raises(ConfigError, match="speaker_distinct"):
        TrainConfig(sampler="per_speaker")


def test_trainer_batches_with_the_speaker_distinct_sampler(tmp_path):
    """train.sampler speaker_distinct reaches the trainer's batches: no speaker twice in one."""
    seen: list[list[int]] = []

    class Recording(SupervisedTask):
        def forward(self, batch, epoch):
            seen.append(batch["label"].tolist())
            return super().forward(batch, epoch)

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    task = Recording(ToyEncoder(), 3, 8, LossConfig(), FinetuneConfig(), labels=labels)
    ds = _dataset(tmp_path / "d")
    ds.labels = labels.copy()
    Trainer(TrainConfig(epochs=2, batch_size=3, num_workers=0, optimizer="adamw", lr=1e-3, device="cpu", amp=False,
                        sampler="speaker_distinct", max_per_speaker=2), tmp_path / "exp").fit(task, ds)
    assert seen and all(len(set(b)) == 3 for b in seen), seen
