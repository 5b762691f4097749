"""SSL losses on hand-made inputs, SSPS positive sampling, and the heads."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sslspk.ssl.heads import DINOHead
from sslspk.ssl.losses import dino_loss, info_nce_queue, nt_xent
from sslspk.ssl.ssps import sample_positives


def test_nt_xent_hand_values():
    # Orthogonal unit vectors, identical views: each row's logits are 1/t for its positive, 0 for
    # the 2B-2 others (self masked) -> loss = -log(e^{1/t} / (e^{1/t} + 2B - 2)).
    b, t = 4, 0.5
    z = torch.eye(b, 8)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * b - 2))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)
    # Views that disagree (positives orthogonal, negatives aligned) cost more.
    assert nt_xent(z, torch.roll(z, 1, 0), t) > nt_xent(z, z, t)
    # Reference by brute force on random inputs.
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    zz = F.normalize(torch.cat([z1, z2]), dim=1)
    ref = 0.0
    for i in range(10):
        j = (i + 5) % 10
        den = sum(math.exp(float(zz[i] @ zz[k]) / t) for k in range(10) if k != i)
        ref += -(float(zz[i] @ zz[j]) / t - math.log(den))
    assert nt_xent(z1, z2, t).item() == pytest.approx(ref / 10, rel=1e-5)


def test_info_nce_queue_hand_values():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    t = 1.0
    expected = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert info_nce_queue(q, k, queue, t).item() == pytest.approx(expected, rel=1e-6)


def test_dino_loss_pairs_and_center():
    torch.manual_seed(0)
    v, g, b, k = 4, 2, 3, 5
    s, t = torch.randn(v, b, k), torch.randn(g, b, k)
    c = torch.randn(k) * 0.1
    got = dino_loss(s, t, c, g, 0.1, 0.04)
    ref, n = 0.0, 0
    for it in range(g):
        p = F.softmax((t[it] - c) / 0.04, -1)
        for iv in range(v):
            if iv != it:
                ref += (-(p * F.log_softmax(s[iv] / 0.1, -1)).sum(-1)).mean()
                n += 1
    assert got.item() == pytest.approx((ref / n).item(), rel=1e-6)
    # Student equal to the (uncentred, same-temperature) teacher on every crop: loss = entropy.
    same = t[:1].repeat(2, 1, 1)
    ent = -(F.softmax(same[0], -1) * F.log_softmax(same[0], -1)).sum(-1).mean()
    assert dino_loss(same, same, torch.zeros(k), 1, 1.0, 1.0).item() == pytest.approx(ent.item(), rel=1e-6)


def test_dino_center_update_and_teacher_temperature():
    from sslspk.ssl.dino import DINO, DINOConfig

    class Enc(torch.nn.Module):
        embedding_dim = 4

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 4)

        def forward(self, x):
            return self.lin(x[:, :16])

    cfg = DINOConfig(out_dim=6, hidden=8, bottleneck=4, warmup_teacher_temp_epochs=10)
    d = DINO(Enc(), cfg, total_epochs=20)
    assert d.teacher_temp(0) == pytest.approx(0.04) and d.teacher_temp(5) == pytest.approx(0.055)
    assert d.teacher_temp(15) == pytest.approx(0.07)
    teacher = torch.randn(2, 3, 6)
    d._update_center(teacher)
    torch.testing.assert_close(d.center, 0.1 * teacher.mean((0, 1)))
    d._update_center(teacher)
    torch.testing.assert_close(d.center, (0.9 * 0.1 + 0.1) * teacher.mean((0, 1)))


def test_dino_head_last_layer_is_normalised():
    h = DINOHead(8, out_dim=10, hidden=16, bottleneck=4)
    w = h.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(10))
    assert not h.last_layer.parametrizations.weight.original0.requires_grad


def test_sample_positives_same_prototype_not_self():
    rng = np.random.default_rng(0)
    assign = np.array([0, 0, 0, 1, 1, 2, -1, 0])
    cent = np.eye(3, dtype=np.float32)
    for _ in range(20):
        pos = sample_positives(assign, cent, 1, rng)
        for i, j in enumerate(pos):
            if assign[i] in (0, 1):
                assert j != i and assign[j] == assign[i]
            else:  # singleton prototype or no embedding: falls back to itself
                assert j == i
    # Sampling covers every other member (uniform over candidates).
    seen = {int(sample_positives(assign, cent, 1, rng)[0]) for _ in range(200)}
    assert seen == {1, 2, 7}


def test_sample_positives_neighbourhood():
    rng = np.random.default_rng(1)
    # Prototypes 0 and 1 are close, 2 is far; item 5 is alone in prototype 2 with neighbourhood 2.
    cent = np.array([[1, 0], [0.9, 0.1], [-1, 0]], dtype=np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    assign = np.array([0, 0, 1, 1, 1, 2])
    hits = np.zeros(6)
    for _ in range(300):
        pos = sample_positives(assign, cent, 2, rng)
        assert pos[0] != 0 and assign[pos[0]] in (0, 1)
        hits[pos[0]] += 1
    assert hits[2:5].sum() > 0 and hits[1] > 0  # both neighbouring prototypes are used


def test_sample_knn_positives_draws_among_the_nearest_others():
    from sslspk.ssl.ssps import sample_knn_positives

    rng = np.random.default_rng(0)
    # Points on a circle: the nearest others of point i are i-1 and i+1 (angles 2π·i/12).
    ang = 2 * np.pi * np.arange(12) / 12
    mem = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    valid = np.arange(11)            # item 11 has no embedding yet: keeps itself
    pool = np.arange(12)
    seen = [set() for _ in range(12)]
    for _ in range(100):
        pos = sample_knn_positives(mem, valid, pool, 2, rng)
        assert pos[11] == 11
        for i in valid:
            seen[i].add(int(pos[i]))
    assert all(seen[i] == {(i - 1) % 12, (i + 1) % 12} for i in valid)
    # neighbourhood 1 is the nearest other item; a pool of one item gives itself as the only candidate.
    np.testing.assert_array_equal(sample_knn_positives(mem[:3] * [1, 0.5], np.arange(3), np.arange(3), 1, rng)[:1], [1])
    assert (sample_knn_positives(mem, valid, np.array([4]), 1, rng) == np.arange(12)).all()


def test_ssps_knn_sampling_in_the_task(tmp_path):
    from sslspk.ssl.ssps import SSPS, SSPSConfig

    with pytest.raises(ValueError, match="kmeans or knn"):
        SSPSConfig(sampling="nearest")
    speakers = np.repeat(np.arange(4), 5)
    ssps = SSPS(SSPSConfig(positive="audio", start_epoch=0, sampling="knn", neighbourhood=2), 20, 3, (1,),
                speakers=speakers,
                recordings=np.arange(20))
    rng = np.random.default_rng(0)
    emb = np.eye(3)[[0, 1, 2, 0]][speakers] * 5 + rng.normal(0, 0.1, (20, 3))  # speakers 0 and 3 alike
    emb[15:, 2] += 5
    ssps.update(torch.arange(20), torch.as_tensor(emb, dtype=torch.float32))

    class DS:
        def set_positives(self, pos, views):
            self.pos, self.views = pos, views

    ds = DS()
    logs = ssps.on_epoch_start(0, ds)
    assert ds.views == (1,) and (ds.pos != np.arange(20)).all()
    assert logs["ssps/same_speaker"] == 1.0 and logs["ssps/same_recording"] == 0.0
