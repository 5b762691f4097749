"""Trainer.step: gradient accumulation (train.accumulate), and validation during training with the
best-EER checkpoints averaged (train.average_best)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sslspk.train.task import TrainTask
from sslspk.train.trainer import TrainConfig, Trainer


class _Regression(TrainTask):
    """A batch-norm-free linear model with a mean squared error (``normalised``: loss / sg(loss), as
    finetune.l2_to_init's task term)."""

    def __init__(self, normalised: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1))
        self.normalised = normalised

    def loss_of(self, batch: dict) -> torch.Tensor:
        x = batch["views"][0][:, 0]
        return ((self.encoder(x).squeeze(1) - batch["label"]) ** 2).mean()

    def forward(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.loss_of(batch)
        return (loss / loss.detach() if self.normalised else loss), {}


class _Items(torch.utils.data.Dataset):
    """Fixed items (no random crops), so a batch of 2B is exactly two batches of B of the same order."""

    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 1, 6, generator=g)
        self.y = torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"views": [self.x[i]], "index": i, "label": float(self.y[i])}   # label: the regression target

    def set_epoch(self, epoch: int) -> None:
        pass


def _batch(items: _Items, idx: list[int]) -> dict:
    from sslspk.train.dataset import collate

    return collate([items[i] for i in idx])


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=2, num_workers=0, optimizer="sgd", lr=0.1, warmup_epochs=0, weight_decay=0.0,
                momentum=0.0, nesterov=False, grad_clip=None, amp=False, device="cpu", log_every=1)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("optimizer,grad_clip", [("sgd", None), ("adamw", 0.05)])
def test_k_micro_batches_give_the_update_of_one_batch_k_times_larger(tmp_path, optimizer, grad_clip):
    """K=3 micro-batches of B=2 in one Trainer.step move the weights as one step on the 6 items together
    (mean loss; clipping applies to the accumulated gradient, so it is the same too)."""
    items = _Items()
    ids = [3, 7, 1, 12, 5, 9]
    results = []
    for batches in ([_batch(items, ids[i:i + 2]) for i in range(0, 6, 2)], [_batch(items, ids)]):
        task = _Regression()
        trainer = Trainer(_cfg(optimizer=optimizer, grad_clip=grad_clip), tmp_path)
        opt = trainer._optimizer(task)
        logs = trainer.step(task, opt, batches, epoch=0)
        results.append(([p.detach().clone() for p in task.parameters()], logs, trainer.global_step))
    (acc, acc_logs, acc_steps), (big, big_logs, big_steps) = results
    moved = [(a - p).abs().max() for a, p in zip(acc, _Regression().parameters())]
    assert max(moved) > 1e-3   # the step did something
    for a, b in zip(acc, big):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert acc_steps == big_steps == 1   # one optimiser step either way
    assert acc_logs["loss"] == pytest.approx(big_logs["loss"], rel=1e-5)   # the mean over the micro-batches
    if grad_clip:
        assert acc_logs["grad_norm"] == pytest.approx(big_logs["grad_norm"], rel=1e-5)


def test_accumulation_with_a_normalised_loss_averages_each_micro_batch_gradient_over_its_loss(tmp_path):
    """As documented in Trainer.step: with loss / sg(loss) (finetune.l2_to_init's task term), the accumulated
    gradient is mean_i grad(L_i) / L_i over the micro-batches, not grad(L) / L of the whole batch."""
    items = _Items()
    halves = [[0, 1], [2, 3]]
    task = _Regression(normalised=True)
    ref = _Regression()
    expected = [torch.zeros_like(p) for p in ref.parameters()]
    for idx in halves:
        loss = ref.loss_of(_batch(items, idx))
        for e, g in zip(expected, torch.autograd.grad(loss, list(ref.parameters()))):
            e += g / loss.detach() / len(halves)
    before = [p.detach().clone() for p in task.parameters()]
    trainer = Trainer(_cfg(lr=1.0), tmp_path)
    trainer.step(task, trainer._optimizer(task), [_batch(items, i) for i in halves], epoch=0)
    for b, p, e in zip(before, task.parameters(), expected):   # plain SGD, lr 1: the step is -gradient
        torch.testing.assert_close(b - p.detach(), e, rtol=1e-5, atol=1e-7)
    whole = ref.loss_of(_batch(items, [0, 1, 2, 3]))
    g_whole = torch.autograd.grad(whole, list(ref.parameters()))[0] / whole.detach()
    assert not torch.allclose(g_whole, expected[0], rtol=1e-3)   # it is not the whole batch's


def _fit(tmp_path: Path, name: str, validator=None, **kw) -> tuple[Trainer, Path]:
    trainer = Trainer(_cfg(**kw), tmp_path / name)
    return trainer, trainer.fit(_Regression(), _Items(), validator)


def test_fit_with_accumulation_equals_fit_with_the_larger_batch(tmp_path):
    """fit with batch 2 x accumulate 2 trains the model of batch 4 (the same items per optimiser step, the
    warm-up/cosine schedule and the logs counted in optimiser steps)."""
    acc, acc_out = _fit(tmp_path, "acc", batch_size=2, accumulate=2, epochs=2, warmup_epochs=1.0)
    big, big_out = _fit(tmp_path, "big", batch_size=4, accumulate=1, epochs=2, warmup_epochs=1.0)
    assert acc.global_step == big.global_step == 8 and acc.total_steps == big.total_steps == 8
    assert acc.warmup_steps == big.warmup_steps == 4
    a = torch.load(acc_out, weights_only=False)["model"]
    b = torch.load(big_out, weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ckpt = torch.load(tmp_path / "acc" / "checkpoints" / "epoch_2.pt", weights_only=False)
    assert ckpt["global_step"] == 8


def test_accumulate_must_fit_the_data(tmp_path):
    from sslspk.utils.errors import TrainingError

    with pytest.raises(TrainingError, match="train.accumulate 9"):
        _fit(tmp_path, "x", batch_size=2, accumulate=9)


class _ScriptedValidator:
    """EERs given per epoch (the trainer's rule is what is tested: which checkpoints it keeps and averages)."""

    def __init__(self, eers: list[float]):
        self.eers = eers
        self.calls = 0

    def __call__(self, task: TrainTask, device: torch.device) -> dict[str, float]:
        self.calls += 1
        return {"eer": self.eers[self.calls - 1], "min_dcf_0.01": 0.5}


def test_average_best_averages_the_best_validated_checkpoints_not_the_last(tmp_path):
    eers = [0.10, 0.30, 0.05, 0.40]   # best two: epochs 1 and 3; the last two: 3 and 4
    trainer, out = _fit(tmp_path, "exp", _ScriptedValidator(eers), epochs=4, average_last=1, average_best=2)
    exp = tmp_path / "exp"
    kept = sorted(p.name for p in (exp / "checkpoints").glob("epoch_*.pt"))
    assert kept == ["epoch_1.pt", "epoch_3.pt", "epoch_4.pt"]   # the best 2 and the last (resuming)
    model = torch.load(out, weights_only=False)
    assert model["averaged"] == ["epoch_1.pt", "epoch_3.pt"]
    for k, v in model["model"].items():   # an independent average of the two checkpoints' encoders
        ws = [torch.load(exp / "checkpoints" / f"epoch_{e}.pt", weights_only=False)["task"][f"encoder.{k}"]
              for e in (1, 3)]
        torch.testing.assert_close(v, (ws[0].double() + ws[1].double()).div(2).float())
    record = json.loads((exp / "checkpoints" / "validation.json").read_text())
    assert [record[str(e)]["eer"] for e in range(1, 5)] == eers
    log = (exp / "train.log").read_text()
    assert "validation epoch 3: eer=0.05" in log and "average of the 2 best by validation EER" in log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    assert [round(s.value, 4) for s in events.Scalars("validation/eer")] == eers


def test_average_best_needs_a_validation(tmp_path):
    from sslspk.utils.errors import TrainingError

    with pytest.raises(TrainingError, match="average_best needs a validation"):
        _fit(tmp_path, "exp", None, average_best=1)


def test_validator_scores_the_exported_encoder_with_cosine(tmp_path):
    """Validator = the library's extraction of every dev utterance + plain cosine + EER, here against an
    independent computation (the model on each waveform, numpy cosine, EER by a threshold sweep)."""
    import soundfile as sf
    from conftest import write_wav

    from sslspk.models import build_model, with_sample_rate
    from sslspk.train.validation import ValidationConfig, Validator

    d = tmp_path / "dev"
    wav, utts = [], []
    for s in range(3):
        for u in range(3):
            utt = f"s{s}-u{u}"
            wav.append(f"{utt} {write_wav(d / 'wav' / f'{utt}.wav', 0.6 + 0.1 * u, freq=150 + 70 * s, seed=u)}")
            utts.append(utt)
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    (d / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in utts))
    pairs = [(a, b) for i, a in enumerate(utts) for b in utts[i + 1:]]
    (tmp_path / "trials").write_text("".join(f"{a} {b} {'target' if a[:2] == b[:2] else 'nontarget'}\n"
                                             for a, b in pairs))
    model_cfg = with_sample_rate({"type": "ecapa_tdnn", "channels": 16, "mfa_channels": 48, "attention_channels": 8,
                                  "se_channels": 8, "embedding_dim": 12,
                                  "frontend": {"type": "fbank", "num_mel_bins": 20}}, 16000, "test")
    torch.manual_seed(3)
    task = TrainTask()
    task.encoder = build_model(model_cfg).eval()
    metrics = Validator(ValidationConfig(str(d), str(tmp_path / "trials")), model_cfg, 16000)(task, "cpu")
    with torch.no_grad():
        emb = {u: task.encoder(torch.as_tensor(sf.read(d / "wav" / f"{u}.wav", dtype="float32")[0])[None])[0].numpy()
               for u in utts}
    emb = {u: e / np.linalg.norm(e) for u, e in emb.items()}
    scores = np.array([float(emb[a] @ emb[b]) for a, b in pairs])
    target = np.array([a[:2] == b[:2] for a, b in pairs])
    eer = min(max((scores[target] < t).mean(), (scores[~target] >= t).mean()) for t in np.append(scores, np.inf))
    assert set(metrics) == {"eer", "min_dcf_0.01", "min_dcf_0.05"}
    assert metrics["eer"] == pytest.approx(eer, abs=1 / target.sum() + 1e-9)


def test_accumulation_under_ddp_all_reduces_once_and_matches_the_whole_batch(recipe_env):
    """Two processes x 2 micro-batches (no_sync on the first): the step of one process on all 8 items."""
    import subprocess

    from conftest import REPO

    r = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_accumulate_check.py")],
                       capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("all-reduces 1") == 2, r.stdout
