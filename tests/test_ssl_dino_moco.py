"""DINO head with BatchNorm, teacher temperature, per-parameter clipping, SyncBN under DDP, MoCo's
shuffle-BN and symmetric loss, and cluster-aware positives, on small hand-made cases."""

import subprocess

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sslspk.ssl.cluster_positives import ClusterPositives, ClusterPositivesConfig, sample_cluster_positives
from sslspk.ssl.dino import DINO, DINOConfig
from sslspk.ssl.heads import DINOHead, MLPProjector
from sslspk.ssl.losses import info_nce_queue
from sslspk.ssl.moco import MoCo, MoCoConfig, shuffled_forward
from sslspk.utils.config import ConfigError
from tests.conftest import REPO


class Enc(nn.Module):
    embedding_dim = 4

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 4)

    def forward(self, x):
        return self.lin(x[:, :16])


def test_dino_head_bn_places_and_dims():
    h = DINOHead(8, out_dim=10, hidden=16, bottleneck=4, bn=True)
    kinds = [type(m) for m in h.mlp]
    # sslsv's DINOHead: Linear-BN-GELU-Linear-BN-GELU-Linear, then L2 norm and the weight-normalised layer.
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Linear]
    assert [h.mlp[i].num_features for i in (1, 4)] == [16, 16]
    assert (h.mlp[0].in_features, h.mlp[6].out_features) == (8, 4)
    assert h(torch.randn(5, 8)).shape == (5, 10)
    plain = DINOHead(8, out_dim=10, hidden=16, bottleneck=4)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    assert len(plain.mlp) == 5
    # The BN normalises over the batch: a constant input shift moves each hidden unit by a constant,
    # which train-mode BN removes; without BN the output moves.
    h.train()
    x, shift = torch.randn(6, 8), torch.randn(8)
    torch.testing.assert_close(h.mlp(x + shift), h.mlp(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain.mlp(x + shift), plain.mlp(x), atol=1e-3)


def test_mlp_projector_layers():
    p = MLPProjector(8, 16, 4, hidden_layers=2)
    kinds = [type(m) for m in p.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    # One hidden layer keeps the former module names (checkpoints of SimCLR/MoCo load as before).
    assert list(MLPProjector(8, 16, 4).state_dict()) == [
        "net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias", "net.1.running_mean", "net.1.running_var",
        "net.1.num_batches_tracked", "net.3.weight", "net.3.bias"]


def test_teacher_temperature_constant_and_warmup():
    # sslsv's cited config: warm-up 0.04 -> 0.04 over 10 epochs, i.e. 0.04 throughout.
    d = DINO(Enc(), DINOConfig(out_dim=6, hidden=8, bottleneck=4, warmup_teacher_temp=0.04, teacher_temp=0.04,
                               warmup_teacher_temp_epochs=10), total_epochs=20)
    assert all(d.teacher_temp(e) == pytest.approx(0.04) for e in range(20))
    d = DINO(Enc(), DINOConfig(out_dim=6, hidden=8, bottleneck=4, warmup_teacher_temp=0.04, teacher_temp=0.06,
                               warmup_teacher_temp_epochs=4), total_epochs=8)
    temps = [d.teacher_temp(e) for e in range(8)]
    assert temps[:4] == pytest.approx([0.04, 0.045, 0.05, 0.055]) and temps[4:] == pytest.approx([0.06] * 4)


def test_dino_per_parameter_grad_clip():
    d = DINO(Enc(), DINOConfig(out_dim=6, hidden=8, bottleneck=4, clip_grad=0.5, freeze_last_layer_epochs=0),
             total_epochs=2)
    params = [*d.encoder.parameters(), *d.head.parameters()]
    torch.manual_seed(0)
    grads = [torch.randn_like(p) * s for p, s in zip(params, np.linspace(0.01, 3, len(params)))]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    d.before_optimizer_step(1)
    for p, g in zip(params, grads):
        n = float(g.norm())
        expect = g * (0.5 / (n + 1e-6)) if 0.5 / (n + 1e-6) < 1 else g   # each tensor on its own
        torch.testing.assert_close(p.grad, expect)
    with pytest.raises(ConfigError, match="clip_grad"):
        DINOConfig(clip_grad=0.0)


def test_sync_bn_under_ddp(recipe_env):
    r = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_sync_bn_check.py")],
                       capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "BatchNorm 6 -> SyncBatchNorm 6, plain left 0" in r.stdout


def test_shuffled_forward_order_and_values():
    x = torch.arange(12.0).view(6, 2)
    seen = []

    def fn(v):
        seen.append(v.clone())
        return v * 10 + 1

    torch.manual_seed(3)
    out = shuffled_forward(fn, x)
    torch.testing.assert_close(out, x * 10 + 1)          # back in the original order, same values
    assert not torch.equal(seen[0], x)                    # fn saw a permuted batch
    assert sorted(seen[0][:, 0].tolist()) == x[:, 0].tolist()
    # Without BN, the keys equal an unshuffled computation of the key network.
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    torch.testing.assert_close(shuffled_forward(net, x), net(x))


def test_shuffled_forward_changes_bn_only_by_order():
    # One process: the shuffled batch is the same set of samples, so train-mode BN gives the same keys.
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    x = torch.randn(8, 2)
    torch.testing.assert_close(shuffled_forward(net, x), net(x), rtol=1e-5, atol=1e-5)


def test_shuffled_forward_across_two_processes(recipe_env):
    r = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_shuffle_bn_check.py")],
                       capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("linear keys in order: True") == 2


def _moco_batch():
    g = torch.Generator().manual_seed(0)
    return {"views": [torch.randn(4, 1, 20, generator=g), torch.randn(4, 1, 20, generator=g)],
            "index": torch.arange(4)}


def test_moco_symmetric_loss_against_independent_computation():
    torch.manual_seed(0)
    m = MoCo(Enc(), MoCoConfig(queue_size=8, projector=False, temperature=0.1))
    batch = _moco_batch()
    queue = m.queue.clone()
    loss, _ = m(batch, 0)
    v1, v2 = batch["views"][0][:, 0], batch["views"][1][:, 0]

    def nce(q, k, neg):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        out = 0.0
        for i in range(len(q)):
            logits = torch.cat([(q[i] @ k[i])[None], neg @ q[i]]) / 0.1
            out = out - torch.log_softmax(logits, 0)[0]
        return out / len(q)

    e1, e2 = m.encoder(v1), m.encoder(v2)
    k1, k2 = m.key_encoder(v1), m.key_encoder(v2)
    expect = (nce(e1, k2, queue[1]) + nce(e2, k1, queue[0])) / 2
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    # The keys entered their own view's queue.
    torch.testing.assert_close(m.queue[0, :4], F.normalize(k1, dim=1).detach())
    torch.testing.assert_close(m.queue[1, :4], F.normalize(k2, dim=1).detach())
    assert int(m.queue_ptr) == 4
    # Asymmetric: q from view 0 against k from view 1 only.
    a = MoCo(Enc(), MoCoConfig(queue_size=8, projector=False, symmetric=False, shuffle_bn=False))
    qa = a.queue.clone()
    la, _ = a(batch, 0)
    assert a.queue.shape[0] == 1
    assert la.item() == pytest.approx(info_nce_queue(a.encoder(v1), a.key_encoder(v2), qa[0], 0.2).item(), rel=1e-5)


def test_moco_default_projector_is_sslsv():
    m = MoCo(Enc(), MoCoConfig(queue_size=8))
    lin = [x for x in m.projector.net if isinstance(x, nn.Linear)]
    assert [(x.in_features, x.out_features) for x in lin] == [(4, 2048), (2048, 2048), (2048, 128)]
    assert m.queue.shape == (2, 8, 128)


def test_sample_cluster_positives_other_member_same_cluster():
    clusters = np.array([0, 0, 1, 1, 1, 2, 0, 3, 3])
    rng = np.random.default_rng(0)
    seen = [set() for _ in clusters]
    for _ in range(100):
        pos = sample_cluster_positives(clusters, 1.0, rng)
        for i, j in enumerate(pos):
            if i == 5:
                assert j == 5                      # singleton cluster: its own utterance
            else:
                assert j != i and clusters[j] == clusters[i]
            seen[i].add(int(j))
    assert seen[0] == {1, 6} and seen[2] == {3, 4}   # uniform over the other members: all reached
    # prob 0: every utterance is its own positive; prob 0.5: about half.
    assert (sample_cluster_positives(clusters, 0.0, rng) == np.arange(9)).all()
    frac = np.mean([np.mean(sample_cluster_positives(clusters, 0.5, rng) != np.arange(9)) for _ in range(400)])
    assert frac == pytest.approx(0.5 * 8 / 9, abs=0.03)


def test_cluster_positives_crop_from_the_positive(tmp_path):
    from sslspk.ssl import build_ssl_task
    from sslspk.train.dataset import CropDataset, ViewSpec
    from tests.conftest import write_wav

    lines, u2s = [], []
    for c, utts in enumerate([["a1", "a2", "a3"], ["b1"]]):
        for k, u in enumerate(utts):
            lines.append(f"{u} {write_wav(tmp_path / f'{u}.wav', 0.3, freq=200 + 100 * (3 * c + k))}")
            u2s.append(f"{u} c{c}")
    (tmp_path / "wav.scp").write_text("\n".join(lines) + "\n")
    (tmp_path / "utt2spk").write_text("\n".join(u2s) + "\n")
    ds = CropDataset(tmp_path, [ViewSpec(0.3, 1, False), ViewSpec(0.3, 1, False)])
    task = build_ssl_task({"method": "dino", "out_dim": 6, "hidden": 8, "bottleneck": 4,
                           "cluster_positives": {"views": [0], "prob": 1.0}}, Enc(), ds, 2)

    class T:
        dataset = ds

    logs = task.on_epoch_start(0, T())
    assert logs["cluster_positives/self_fallback"] == pytest.approx(1 / 4)   # b1 alone in its cluster
    for i, u in enumerate(ds.utts):
        item = ds[i]
        j = int(ds.positive_of[i])
        # view group 0 (global crops) from the positive, view group 1 from the anchor itself
        torch.testing.assert_close(item["views"][0][0], torch.from_numpy(ds.load(j).astype(np.float32)))
        torch.testing.assert_close(item["views"][1][0], torch.from_numpy(ds.load(i).astype(np.float32)))
        if u == "b1":
            assert j == i
        else:
            assert j != i and ds.data.utt2spk[ds.utts[j]] == ds.data.utt2spk[u]
    with pytest.raises(ConfigError, match="data.views has 2"):
        ClusterPositives(ClusterPositivesConfig(views=[2]), np.zeros(4, int), 2)
    with pytest.raises(ConfigError, match="keep one"):
        build_ssl_task({"method": "dino", "cluster_positives": {}, "ssps": {}}, Enc(), ds, 2)


def test_dino_head_trunc_normal_init():
    torch.manual_seed(0)
    d = DINO(Enc(), DINOConfig(out_dim=6, hidden=512, bottleneck=64, head_trunc_normal_init=True), total_epochs=2)
    lins = [m for m in d.head.mlp if isinstance(m, nn.Linear)]
    w = torch.cat([m.weight.detach().flatten() for m in lins])
    assert float(w.std()) == pytest.approx(0.02, rel=0.05) and all(not m.bias.detach().any() for m in lins)
    # The teacher head starts as a copy of the student's.
    torch.testing.assert_close(d.teacher_head.mlp[0].weight, lins[0].weight)
    plain = DINO(Enc(), DINOConfig(out_dim=6, hidden=512, bottleneck=64), total_epochs=2)
    assert plain.head.mlp[0].bias.detach().any()


class BNEnc(Enc):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x[:, :16]))


@pytest.mark.parametrize("copies", [True, False])
def test_dino_teacher_buffers(copies):
    d = DINO(BNEnc(), DINOConfig(out_dim=6, hidden=8, bottleneck=4, teacher_copies_student_buffers=copies),
             total_epochs=2)
    own = d.teacher.bn.running_mean.clone()
    d.encoder.bn.running_mean.fill_(5.0)
    before = [p.clone() for p in d.teacher.parameters()]
    d.after_optimizer_step(0.0)
    expect = torch.full((4,), 5.0) if copies else own
    torch.testing.assert_close(d.teacher.bn.running_mean, expect)
    # The parameters follow the EMA either way (unchanged here: student == teacher at start).
    for a, b in zip(before, d.teacher.parameters()):
        torch.testing.assert_close(a, b)
