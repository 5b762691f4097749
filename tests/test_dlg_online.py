"""DLG-LC: the online gate and label correction of the authors' code (theolepage/wavlm_ssl_sv), the
epoch gate's right-tail rule, the clean crops of the dataset and a toy training with label noise."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslspk.losses import AAMSoftmax, gate_and_correct, gmm_threshold, online_gate_step
from sslspk.supervised import DLGLCConfig, FinetuneConfig, LossConfig, SupervisedTask


def _bimodal_log_losses(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3.0, 0.8, 700), rng.normal(1.5, 0.4, 300)])


def _crossing(weights, means, sds) -> float:
    """Closed form: where w1 N(x; m1, s1) = w2 N(x; m2, s2), the root between the two means."""
    (w1, w2), (m1, m2), (s1, s2) = weights, means, sds
    a = 1 / (2 * s2**2) - 1 / (2 * s1**2)
    b = m1 / s1**2 - m2 / s2**2
    c = m2**2 / (2 * s2**2) - m1**2 / (2 * s1**2) + math.log((w1 * s2) / (w2 * s1))
    roots = np.roots([a, b, c]) if abs(a) > 1e-12 else np.array([-c / b])
    inside = [r.real for r in roots if abs(r.imag) < 1e-12 and min(m1, m2) < r.real < max(m1, m2)]
    assert len(inside) == 1
    return inside[0]


def test_gmm_threshold_is_the_crossing_of_the_weighted_components():
    from sklearn.mixture import GaussianMixture

    x = _bimodal_log_losses()
    gmm = GaussianMixture(2, covariance_type="full", random_state=0, tol=1e-5, max_iter=1000).fit(x[:, None])
    expected = _crossing(gmm.weights_, gmm.means_[:, 0], np.sqrt(gmm.covariances_[:, 0, 0]))
    step = np.ptp(x) / 999
    got = gmm_threshold(x)
    assert expected - step <= got <= expected + 1e-12   # the grid point just before the crossing
    assert -3.0 < got < 1.5
    # no threshold: a single value, or too few samples
    assert gmm_threshold(np.full(50, 0.3)) is None and gmm_threshold(np.array([1.0])) is None


def test_online_gate_keeps_exactly_the_samples_at_or_below_the_threshold():
    ce = torch.tensor([0.1, 1.0, 2.0, 5.0, 0.5])
    labels = torch.tensor([0, 1, 2, 0, -1])
    logits = torch.zeros(5, 3)
    step = online_gate_step(ce, logits, labels, math.log(1.0))
    assert step.kept.tolist() == [True, True, False, False, False]   # log(1.0) <= log(1.0) kept; -1 never
    assert step.loss.item() == pytest.approx((0.1 + 1.0) / 2)        # mean over the kept samples
    assert step.labels.tolist() == [0, 1, -1, -1, -1] and not step.relabelled.any()
    everything = online_gate_step(ce[:4], logits[:4], labels[:4], float("inf"))
    assert everything.kept.all() and everything.loss.item() == pytest.approx(ce[:4].mean().item())
    nothing = online_gate_step(ce[:4], logits[:4], labels[:4], math.log(0.01))
    assert nothing.loss.item() == 0.0 and not nothing.kept.any()


def test_correction_takes_the_clean_crops_sharpened_logits():
    torch.manual_seed(0)
    ce = torch.tensor([0.2, 3.0, 4.0])
    labels = torch.tensor([0, 0, 1])
    margin_logits = torch.randn(3, 3)
    margin_logits[1] = torch.tensor([0.0, 5.0, 0.0])   # the augmented crop says class 1
    clean = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.5, 0.0]])   # the clean one says 2
    step = online_gate_step(ce, margin_logits, labels, math.log(1.0), clean, temperature=0.1, threshold=0.5)
    assert step.kept.tolist() == [True, False, False]
    assert step.labels.tolist() == [0, 2, 1]           # sample 1 -> the clean argmax 2; sample 2 confirmed as 1
    assert step.relabelled.tolist() == [False, True, True]
    expected = (0.2 + F.cross_entropy(margin_logits[1:2], torch.tensor([2])).item()
                + F.cross_entropy(margin_logits[2:3], torch.tensor([1])).item()) / 3   # sum / batch size
    assert step.loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("factor, relabelled", [(1.05, True), (0.95, False)])
def test_correction_cut_at_probability_half_after_temperature(factor, relabelled):
    # softmax([x, 0, 0] / T) peaks at e^(x/T) / (e^(x/T) + 2): above 0.5 exactly when x > T ln 2
    x = factor * 0.1 * math.log(2)
    clean = torch.tensor([[x, 0.0, 0.0]])
    step = online_gate_step(torch.tensor([5.0]), torch.zeros(1, 3), torch.tensor([1]), 0.0, clean)
    assert bool(step.relabelled[0]) is relabelled
    assert step.labels.item() == (0 if relabelled else -1)
    # at temperature 1 the same logits are far from confident
    assert not online_gate_step(torch.tensor([5.0]), torch.zeros(1, 3), torch.tensor([1]), 0.0, clean,
                                temperature=1.0).relabelled.any()


class _ToyEncoder(nn.Module):
    """Features -> embedding: ``views`` are ``[B, 1, dim]`` feature vectors."""

    def __init__(self, dim: int, embedding_dim: int = 8):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.net = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, embedding_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _online_task(labels, num_classes=3, dim=4, **dlg) -> SupervisedTask:
    return SupervisedTask(_ToyEncoder(dim), num_classes=num_classes, num_utts=len(labels),
                          loss=LossConfig(margin=0.2, scale=30.0), finetune=FinetuneConfig(),
                          dlg_lc=DLGLCConfig(**dlg), labels=np.asarray(labels))


def test_online_schedule_threshold_from_previous_epoch_and_clean_crops_from_correct_start():
    labels = np.arange(200) % 3
    task = _online_task(labels, start_epoch=2, correct_start_epoch=4)
    trainer = SimpleNamespace(dataset=SimpleNamespace(labels=labels.copy(), clean_views=False), is_main=True)
    losses = np.exp(_bimodal_log_losses()[:200])
    task.last_loss[:] = torch.as_tensor(losses)
    task.on_epoch_start(1, trainer)
    assert float(task.dlg_log_threshold) == math.inf and not trainer.dataset.clean_views
    assert torch.isnan(task.last_loss).all()   # each epoch records its own samples only
    batch = {"views": [torch.randn(6, 1, 4)], "index": torch.arange(6), "label": torch.as_tensor(labels[:6])}
    task.dlg_log_threshold.fill_(-50.0)   # not used before start_epoch: every sample is trained on
    loss, _ = task(batch, 1)
    emb = task.encoder(batch["views"][0][:, 0])
    assert loss.item() == pytest.approx(task.classifier(emb, batch["label"])[0].mean().item(), rel=1e-5)
    task.last_loss[:] = torch.as_tensor(losses)
    task.on_epoch_start(2, trainer)                # gated: the threshold of the previous epoch's losses
    assert float(task.dlg_log_threshold) == pytest.approx(gmm_threshold(np.log(losses)))
    assert not trainer.dataset.clean_views and torch.isnan(task.last_loss).all()
    loss, _ = task(batch, 2)                       # no clean crops needed before correct_start_epoch
    task.on_epoch_start(4, trainer)
    assert trainer.dataset.clean_views
    with pytest.raises(KeyError):
        task(batch, 4)                             # from correct_start_epoch the clean crops are used
    loss, _ = task({**batch, "clean_views": [torch.randn(6, 1, 4)]}, 4)
    assert torch.isfinite(loss)


def test_online_is_the_default_with_the_authors_values():
    cfg = DLGLCConfig()
    assert (cfg.mode, cfg.start_epoch, cfg.correct_start_epoch, cfg.threshold, cfg.temperature) == \
        ("online", 4, 8, 0.5, 0.1)
    from sslspk.utils.config import ConfigError

    with pytest.raises(ConfigError, match="dlg_lc.mode"):
        DLGLCConfig(mode="step")
    with pytest.raises(ConfigError, match="temperature"):
        DLGLCConfig(temperature=0.0)
    with pytest.raises(ConfigError, match="loss.weight_init"):
        LossConfig(weight_init="orthogonal")


def test_epoch_gate_never_marks_losses_above_the_noisy_mean_reliable():
    """A wide clean component beside a narrow noisy one: the clean posterior comes back above 0.5 far
    in the right tail (the wider Gaussian wins both tails); those highest losses must stay unreliable."""
    rng = np.random.default_rng(0)
    log_losses = np.concatenate([rng.normal(-2.0, 1.5, 800), rng.normal(2.0, 0.2, 200), [4.5, 5.0, 6.0]])
    losses = np.exp(log_losses)
    n = losses.size
    res = gate_and_correct(losses, np.zeros(n, int), np.zeros(n), np.zeros(n, int))
    mu_noisy = math.log(res.gmm_means[1])
    assert mu_noisy == pytest.approx(2.0, abs=0.2)
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(2, random_state=0, reg_covar=1e-6, tol=1e-4, max_iter=200).fit(log_losses[:, None])
    clean = int(np.argmin(gmm.means_[:, 0]))
    posterior = gmm.predict_proba(log_losses[-3:, None])[:, clean]
    assert (posterior > 0.5).all()                  # the posterior alone would keep them
    assert not res.reliable[-3:].any() and (res.labels[-3:] == -1).all()
    above = log_losses > mu_noisy
    assert not res.reliable[above].any()
    assert res.reliable[log_losses <= math.log(res.gmm_means[0])].all()


def _toy_problem(seed: int = 0, n: int = 480, classes: int = 6, dim: int = 8, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2.0
    true = rng.integers(0, classes, n)
    clean = (centres[true] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)
    flip = rng.random(n) < noise
    given = np.where(flip, (true + rng.integers(1, classes, n)) % classes, true)
    return clean, true, given


def _train_toy(dlg: dict | None, epochs: int = 14, seed: int = 0):
    clean, true, given = _toy_problem()
    torch.manual_seed(seed)
    task = SupervisedTask(_ToyEncoder(clean.shape[1], 16), num_classes=6, num_utts=len(given),
                          loss=LossConfig(margin=0.2, scale=30.0), finetune=FinetuneConfig(),
                          dlg_lc=DLGLCConfig(**dlg) if dlg is not None else None, labels=given, true_labels=true)
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    trainer = SimpleNamespace(dataset=SimpleNamespace(labels=given.copy(), clean_views=False), is_main=True)
    rng = np.random.default_rng(seed)
    logs = {}
    for epoch in range(epochs):
        task.train()
        task.on_epoch_start(epoch, trainer)
        for idx in np.array_split(rng.permutation(len(given)), len(given) // 32):
            x = torch.as_tensor(clean[idx])
            batch = {"views": [(x + 0.7 * torch.randn_like(x))[:, None]], "clean_views": [x[:, None]],
                     "index": torch.as_tensor(idx), "label": torch.as_tensor(trainer.dataset.labels[idx])}
            loss, _ = task(batch, epoch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        logs = task.on_epoch_end(epoch) or logs
    task.eval()
    with torch.no_grad():
        emb = task.encoder(torch.as_tensor(clean))
        true_loss = task.classifier(emb, torch.as_tensor(true))[0].mean().item()
    return logs, true_loss


def test_online_dlg_lc_on_a_toy_problem_with_label_noise():
    """30% of the labels are wrong: in its last epoch the online DLG-LC trains on far more right labels
    than it is given (training without it uses them all), and ends with a lower loss against the true
    labels. (The argmax accuracy is not compared: with symmetric noise both reach ~98%.)"""
    logs, loss_dlg = _train_toy({"start_epoch": 3, "correct_start_epoch": 6})
    _, loss_none = _train_toy(None)
    assert logs["dlg_accuracy_after"] > logs["dlg_accuracy_before"] + 0.15
    assert logs["dlg_corrections"] > 0 and logs["dlg_correction_precision"] > 0.8
    assert 0.5 < logs["dlg_reliable"] < 0.9 and logs["dlg_threshold"] < math.inf
    assert loss_dlg < loss_none


def test_crop_dataset_clean_views_are_the_crops_before_augmentation(tmp_path):
    from test_train import make_data

    from sslspk.train.dataset import CropDataset, ViewSpec, collate

    data = make_data(tmp_path / "data", n_spk=2, n_utt=2)
    plain = CropDataset(data, [ViewSpec(0.25, count=2)], augment=None, seed=3)
    louder = CropDataset(data, [ViewSpec(0.25, count=2)], augment={"prob": 1.0, "volume": [6, 6]}, seed=3,
                         clean_views=True)
    assert "clean_views" not in plain[1]
    item = louder[1]
    clean, augmented = item["clean_views"][0], item["views"][0]
    assert torch.equal(clean[0], plain[1]["views"][0][0])    # the first crop is drawn from the same state
    torch.testing.assert_close(augmented, clean * 10 ** (6 / 20))   # each augmented crop: its clean one, +6 dB
    batch = collate([louder[0], louder[1]])
    assert batch["clean_views"][0].shape == batch["views"][0].shape == (2, 2, 4000)


def test_aam_margin_logits_and_raw_logits_follow_the_authors_formulas():
    """theolepage/wavlm_ssl_sv:loss/aamsoftmax.py, written out: phi = cos·cos m - sin·sin m where
    cos > cos(pi - m), else cos - m·sin(pi - m); target logit s·phi, others s·cos; correction logits x·W."""
    torch.manual_seed(0)
    aam = AAMSoftmax(5, 4, margin=0.2, scale=30.0, weight_init="xavier_normal")
    x = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    loss, margin_logits, logits = aam.forward_with_margin_logits(x, labels)
    cos = F.normalize(x) @ F.normalize(aam.weight).T
    m = 0.2
    sin = (1 - cos**2).clamp(0, 1).sqrt()
    phi = torch.where(cos - math.cos(math.pi - m) > 0, cos * math.cos(m) - sin * math.sin(m),
                      cos - math.sin(math.pi - m) * m)
    one_hot = F.one_hot(labels, 4).float()
    expected = 30.0 * (one_hot * phi + (1 - one_hot) * cos)
    torch.testing.assert_close(margin_logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, 30.0 * cos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, F.cross_entropy(expected, labels, reduction="none"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aam.linear_logits(x), x @ aam.weight.T)
    with pytest.raises(ValueError, match="weight_init"):
        AAMSoftmax(5, 4, weight_init="zeros")


@pytest.mark.parametrize("init", ["xavier_uniform", "xavier_normal"])
def test_aam_weight_init_variance(init):
    torch.manual_seed(0)
    w = AAMSoftmax(256, 2000, weight_init=init).weight.detach()
    assert w.var().item() == pytest.approx(2 / (256 + 2000), rel=0.02)
    # uniform samples are bounded by sqrt(3) standard deviations, normal ones are not
    assert (w.abs().max().item() > math.sqrt(3) * w.std().item()) is (init == "xavier_normal")
