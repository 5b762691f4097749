"""AAM-softmax (margins, sub-centres, ignored labels, warm-up) and DLG-LC gating/correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sslspk.losses import AAMSoftmax, gate_and_correct, margin_at


# ------------------------------------------------------------------ AAM-softmax
def test_zero_margin_is_normalised_softmax_ce():
    torch.manual_seed(0)
    aam = AAMSoftmax(8, 5, margin=0.0, scale=30.0)
    emb, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    loss, logits = aam(emb, labels)
    cos = F.normalize(emb) @ F.normalize(aam.weight).T
    assert torch.allclose(logits, 30.0 * cos, atol=1e-5)
    assert torch.allclose(loss, F.cross_entropy(30.0 * cos, labels, reduction="none"), atol=1e-4)


def test_margin_increases_loss_and_logits_stay_margin_free():
    torch.manual_seed(0)
    aam = AAMSoftmax(8, 5, margin=0.0)
    emb, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    l0, logits0 = aam(emb, labels)
    aam.set_margin(0.3)
    l1, logits1 = aam(emb, labels)
    assert (l1 > l0).all()
    assert torch.equal(logits0, logits1)


def test_hand_computed_two_class_example():
    aam = AAMSoftmax(2, 2, margin=0.2, scale=10.0)
    with torch.no_grad():
        aam.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    theta = 0.5
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]])
    loss, logits = aam(emb, torch.tensor([0]))
    target = 10 * math.cos(theta + 0.2)
    other = 10 * math.cos(math.pi / 2 - theta)
    expected = -target + math.log(math.exp(target) + math.exp(other))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logits[0].tolist() == pytest.approx([10 * math.cos(theta), other], rel=1e-5)


def test_fallback_when_theta_plus_margin_exceeds_pi():
    aam = AAMSoftmax(2, 2, margin=0.5, scale=1.0)
    with torch.no_grad():
        aam.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    theta = math.pi - 0.1                                  # θ + m > π
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]], requires_grad=True)
    loss, _ = aam(emb, torch.tensor([0]))
    phi = math.cos(theta) - math.sin(math.pi - 0.5) * 0.5  # cos θ - mm, below cos θ: still penalising
    other = math.cos(math.pi / 2 - (math.pi - theta))
    assert loss.item() == pytest.approx(-phi + math.log(math.exp(phi) + math.exp(other)), rel=1e-5)
    loss.sum().backward()
    assert torch.isfinite(emb.grad).all()


def test_subcenters_take_max_over_subcentres():
    torch.manual_seed(0)
    aam = AAMSoftmax(4, 3, margin=0.0, scale=1.0, subcenters=2)
    emb = torch.randn(5, 4)
    cos = (F.normalize(emb) @ F.normalize(aam.weight).T).view(5, 3, 2)
    _, logits = aam(emb, torch.zeros(5, dtype=torch.long))
    assert torch.allclose(logits, cos.max(dim=2).values, atol=1e-6)
    assert not torch.allclose(logits, cos.mean(dim=2), atol=1e-3)


def test_ignored_labels_have_zero_loss_and_no_gradient():
    torch.manual_seed(0)
    aam = AAMSoftmax(4, 3)
    emb = torch.randn(3, 4, requires_grad=True)
    loss, _ = aam(emb, torch.tensor([1, -1, 2]))
    assert loss[1].item() == 0.0 and loss[0].item() > 0 and loss[2].item() > 0
    loss.sum().backward()
    assert emb.grad[1].abs().sum() == 0 and emb.grad[0].abs().sum() > 0
    with pytest.raises(ValueError):
        aam(emb, torch.tensor([0, 1, 3]))


def test_margin_warmup_schedule():
    assert margin_at(0, 0.2, 2, 6) == 0.0
    assert margin_at(2, 0.2, 2, 6) == 0.0
    assert margin_at(4, 0.2, 2, 6) == pytest.approx(0.1)
    assert margin_at(6, 0.2, 2, 6) == pytest.approx(0.2)
    assert margin_at(10, 0.2, 2, 6) == pytest.approx(0.2)
    assert margin_at(0.5, 0.3, 0.0, 1.0) == pytest.approx(0.15)   # progress units
    assert margin_at(3, 0.2, 3, 3) == pytest.approx(0.2)          # no warm-up
    with pytest.raises(ValueError):
        margin_at(1, 0.2, 5, 2)
    with pytest.raises(ValueError):
        AAMSoftmax(4, 3).set_margin(-0.1)


# ----------------------------------------------------------------------- DLG-LC
def _bimodal(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_clean, n_noisy = 900, 100
    losses = np.concatenate([rng.normal(1.0, 0.2, n_clean), rng.normal(5.0, 0.5, n_noisy)])
    noisy = np.arange(1000) >= n_clean
    perm = rng.permutation(1000)
    return losses[perm], noisy[perm], rng


def test_gate_separates_bimodal_losses():
    losses, noisy, rng = _bimodal()
    labels = rng.integers(0, 10, 1000)
    res = gate_and_correct(losses, np.zeros(1000, int), np.zeros(1000), labels, threshold=0.9)
    unreliable = ~res.reliable
    precision = (unreliable & noisy).sum() / unreliable.sum()
    recall = (unreliable & noisy).sum() / noisy.sum()
    assert precision > 0.95 and recall > 0.95
    assert res.gmm_means[0] == pytest.approx(1.0, abs=0.1) and res.gmm_means[1] == pytest.approx(5.0, abs=0.3)
    # nothing confident: every unreliable sample is dropped, the reliable ones keep their label
    assert np.array_equal(res.dropped, unreliable) and not res.corrected.any()
    assert np.array_equal(res.labels[res.reliable], labels[res.reliable])
    assert (res.labels[unreliable] == -1).all()
    assert res.kept_fraction == pytest.approx(res.reliable.mean())
    assert res.dropped_fraction == pytest.approx(unreliable.mean())
    # a lower loss than the clean mean is always reliable, even far in the tail
    res2 = gate_and_correct(np.append(losses, -50.0), np.zeros(1001, int), np.zeros(1001), np.append(labels, 1))
    assert res2.reliable[-1]


def test_gate_fits_log_losses_of_learnt_samples():
    """Learnt samples have losses spread over orders of magnitude (log-normal around 0.02) beside
    mislabelled ones around 8: on the raw losses a narrow component at ~0 would leave most learnt
    samples to the noisy component; on the log-losses the two are separated."""
    rng = np.random.default_rng(5)
    n_clean, n_noisy = 700, 300
    losses = np.concatenate([np.exp(rng.normal(np.log(0.02), 1.5, n_clean)), rng.normal(8.0, 1.5, n_noisy).clip(0.5)])
    noisy = np.arange(losses.size) >= n_clean
    res = gate_and_correct(losses, np.zeros(losses.size, int), np.zeros(losses.size), np.zeros(losses.size, int))
    unreliable = ~res.reliable
    assert (unreliable & noisy).sum() / unreliable.sum() > 0.95   # precision of the gate
    assert (unreliable & noisy).sum() / noisy.sum() > 0.95        # recall
    assert res.reliable[~noisy].mean() > 0.95
    assert res.gmm_means[0] == pytest.approx(0.02, rel=0.3) and res.gmm_means[1] == pytest.approx(8.0, rel=0.1)


def test_label_correction_only_touches_confident_unreliable_samples():
    losses, noisy, rng = _bimodal(1)
    labels = rng.integers(0, 10, 1000)
    predictions = (labels + 1) % 10
    confidences = rng.uniform(0.0, 1.0, 1000)
    res = gate_and_correct(losses, predictions, confidences, labels, threshold=0.8)
    unreliable = ~res.reliable
    assert np.array_equal(res.corrected, unreliable & (confidences > 0.8))
    assert np.array_equal(res.dropped, unreliable & (confidences <= 0.8))
    assert np.array_equal(res.labels[res.corrected], predictions[res.corrected])
    assert (res.labels[res.dropped] == -1).all()
    assert np.array_equal(res.labels[res.reliable], labels[res.reliable])
    # confident but reliable samples are not relabelled
    assert (res.reliable & (confidences > 0.8)).any()
    assert res.corrected_fraction + res.dropped_fraction + res.reliable.mean() == pytest.approx(1.0)
    assert res.kept_fraction == pytest.approx(1.0 - res.dropped_fraction)


def test_confident_prediction_of_its_own_label_is_confirmed_not_corrected():
    losses, noisy, rng = _bimodal(4)
    labels = rng.integers(0, 10, 1000)
    agrees = rng.uniform(size=1000) < 0.5
    predictions = np.where(agrees, labels, (labels + 1) % 10)
    res = gate_and_correct(losses, predictions, np.full(1000, 0.99), labels, threshold=0.9)
    unreliable = ~res.reliable
    assert (unreliable & agrees).any() and (unreliable & ~agrees).any()
    assert np.array_equal(res.confirmed, unreliable & agrees)
    assert np.array_equal(res.corrected, unreliable & ~agrees)
    assert np.array_equal(res.labels[res.confirmed], labels[res.confirmed])
    assert (res.labels[res.corrected] != labels[res.corrected]).all()
    assert not res.dropped.any()
    assert res.corrected_fraction + res.confirmed_fraction + res.reliable.mean() == pytest.approx(1.0)
    assert res.logs()["dlg_confirmed"] == pytest.approx((unreliable & agrees).mean())
    assert res.diagnostics(labels)["corrections"] == int(res.corrected.sum())


def test_degenerate_inputs_keep_everything():
    n = 50
    labels = np.arange(n) % 5
    for losses in (np.full(n, 2.0), np.array([1.0, 9.0, 1.1, 8.0, 0.9])):
        m = losses.size
        res = gate_and_correct(losses, np.zeros(m, int), np.ones(m), labels[:m], threshold=0.5)
        assert res.reliable.all() and not res.corrected.any() and not res.dropped.any()
        assert np.array_equal(res.labels, labels[:m]) and res.gmm_means is None
    empty = gate_and_correct(np.array([]), np.array([], int), np.array([]), np.array([], int))
    assert empty.labels.size == 0 and empty.kept_fraction == 0.0
    with pytest.raises(ValueError):
        gate_and_correct(np.zeros(3), np.zeros(2, int), np.zeros(3), np.zeros(3, int))


def test_unseen_samples_keep_their_label():
    losses, noisy, rng = _bimodal(2)
    labels = rng.integers(0, 10, 1000)
    losses[:20] = np.nan
    labels[:5] = -1
    res = gate_and_correct(losses, np.full(1000, 3), np.full(1000, 0.99), labels, threshold=0.9)
    assert np.array_equal(res.labels[:20], labels[:20]) and res.unseen[:20].all()
    assert res.reliable[5:20].all() and not res.reliable[:5].any() and not res.dropped[:20].any()
    assert res.info["fitted"] and (res.corrected | res.confirmed)[20:].sum() == (~res.reliable[20:]).sum()


def test_unlabelled_seen_samples_are_candidates_for_correction():
    losses, _, rng = _bimodal(3)
    labels = rng.integers(0, 10, 1000)
    labels[:2] = -1
    conf = np.zeros(1000)
    conf[0] = 0.95
    res = gate_and_correct(losses, np.full(1000, 7), conf, labels, threshold=0.9)
    assert res.labels[0] == 7 and res.corrected[0]
    assert res.labels[1] == -1 and res.dropped[1]


def test_correction_diagnostics_hand_made():
    # clusters (old labels): 0 = {a, a, a, b}, 1 = {b, b, a}; samples 3 and 6 carry wrong labels
    true = np.array(["a", "a", "a", "b", "b", "b", "a"])
    old = np.array([0, 0, 0, 0, 1, 1, 1])
    losses = np.array([1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 5.0])
    preds = np.array([0, 0, 0, 1, 1, 1, 1])      # sample 3 -> 1 (right), sample 6 -> 1 (stays wrong)
    conf = np.array([0.99, 0.99, 0.99, 0.95, 0.99, 0.99, 0.3])
    res = gate_and_correct(losses, preds, conf, old, threshold=0.9, min_samples=2)
    assert res.reliable.tolist() == [True, True, True, False, True, True, False]
    assert res.labels.tolist() == [0, 0, 0, 1, 1, 1, -1]
    d = res.diagnostics(true)
    assert d["corrections"] == 1 and d["corrections_right"] == 1 and d["corrections_wrong"] == 0
    assert d["gate_precision"] == 1.0 and d["gate_recall"] == 1.0
    assert d["accuracy_before"] == pytest.approx(5 / 7) and d["accuracy_after"] == 1.0
    # a wrong correction: sample 0 (right, label 0 = a) relabelled to 1 (stands for b)
    res.labels[0], res.corrected[0] = 1, True
    d = res.diagnostics(true)
    assert d["corrections"] == 2 and d["corrections_right"] == 1 and d["corrections_wrong"] == 1
    assert d["correction_precision"] == 0.5
