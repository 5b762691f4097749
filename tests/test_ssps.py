"""SSPS with stored-embedding positives (sslsv's rule), SimCLR's loss with/without projector, and
their behaviour under DDP (2 gloo processes)."""

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from sslspk.ssl.simclr import SimCLR, SimCLRConfig
from sslspk.ssl.ssps import SSPS, SSPSConfig, nearby_prototypes, sample_queue_positions, spherical_kmeans
from sslspk.utils.config import ConfigError


class TinyEncoder(nn.Module):
    """Crops ``[B, T]`` -> ``[B, 8]`` through batch norm and dropout (train/eval behaviours differ)."""

    embedding_dim = 8

    def __init__(self, t: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(t, 8), nn.BatchNorm1d(8), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FakeDataset:
    def set_positives(self, pos, views):
        self.pos, self.views = pos, views


def _angles(deg):
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    return torch.tensor(np.stack([np.cos(a), np.sin(a)], 1), dtype=torch.float32)


# Prototypes at 0, 30, 100 and 190 degrees: nearest other of each = 30, 0, 30, 100.
CENTROIDS = _angles([0, 30, 100, 190])


def test_nearby_prototypes_are_the_nearest_others():
    near = nearby_prototypes(CENTROIDS, 1)
    brute = [max((j for j in range(4) if j != i), key=lambda j: float(CENTROIDS[i] @ CENTROIDS[j])) for i in range(4)]
    assert near[:, 0].tolist() == brute == [1, 0, 1, 2]
    assert nearby_prototypes(CENTROIDS, 0)[:, 0].tolist() == [0, 1, 2, 3]      # 0: the own prototype
    assert nearby_prototypes(CENTROIDS, 2).tolist() == [[1, 2], [0, 2], [1, 3], [2, 1]]


def test_positive_is_a_queue_entry_of_the_nearest_other_prototype_drawn_uniformly():
    # 12 utterances, 3 per prototype; utterance 11 has no prototype (-1).
    assign = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, -1])
    # Queue entries (positions 0..9); utterance 4 is stored twice (positions 1 and 8): the last one is used.
    queue_index = torch.tensor([3, 4, 5, 0, 1, 6, 9, 10, -1, -1])
    queue_index[8] = 4
    near = nearby_prototypes(CENTROIDS, 1)
    torch.manual_seed(0)
    anchors = torch.arange(12).repeat(400)
    pos = sample_queue_positions(anchors, assign, near, queue_index)
    own = assign[anchors]
    # Prototype 2's nearest other is 1 (utterances 3, 4, 5 in the queue); 3's is 2 (only 6 in the queue).
    for a in range(12):
        got = pos[anchors == a]
        if a == 11:
            assert (got == -1).all()                  # no prototype: keeps its own second view
            continue
        utts = queue_index[got]
        assert (assign[utts] == near[assign[a], 0]).all() and (assign[utts] != own[anchors == a][0]).all()
    # Uniform over the queue entries of the drawn prototype: anchors of prototypes 0 and 2 draw utterances
    # 3, 4, 5 with 1/4, 1/2, 1/4 (as in sslsv, utterance 4, stored twice, is drawn twice as often).
    utts = queue_index[pos[(own == 0) | (own == 2)]]
    share = torch.bincount(utts, minlength=6)[3:6].double() / 2400
    assert share.sum() == 1 and (abs(share - torch.tensor([0.25, 0.5, 0.25], dtype=share.dtype)) < 0.04).all(), share
    assert not (pos == 1).any() and (pos == 8).any()  # utterance 4 only through its last position
    # Prototype 0's nearest other (1) has no entry in this queue: no positive.
    assert (sample_queue_positions(torch.tensor([3]), assign, near, torch.tensor([3, 4, -1])) == -1).all()
    # The same seed gives the same draws.
    torch.manual_seed(0)
    assert torch.equal(sample_queue_positions(anchors, assign, near, queue_index), pos)


def test_spherical_kmeans_finds_separated_groups():
    torch.manual_seed(0)
    centres = _angles([0, 120, 240])
    x = F.normalize(centres.repeat_interleave(20, 0) + 0.05 * torch.randn(60, 2), dim=1)
    groups = torch.arange(3).repeat_interleave(20)
    cent, assign = spherical_kmeans(x, 3, 10, torch.Generator().manual_seed(1), chunk=7)
    # One prototype per group (up to relabelling), each at its group's normalised mean.
    assert len({(int(g), int(a)) for g, a in zip(groups, assign)}) == 3 and len(set(assign.tolist())) == 3
    for k in range(3):
        torch.testing.assert_close(cent[k], F.normalize(x[assign == k].mean(0), dim=0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least 4"):
        spherical_kmeans(x[:3], 4, 1, torch.Generator())


def _ssps(**kw) -> SSPS:
    cfg = SSPSConfig(**{"start_epoch": 2, "num_prototypes": 2, "kmeans_iters": 5, "inter_sampling_size": 1,
                        "pos_queue_size": 10, **kw})
    return SSPS(cfg, 12, 2, positive_dim=3)


def test_queue_and_memory_update_rule():
    """The queue is written at ``step * B`` modulo its length rounded down to a multiple of B (10 -> 8
    for B = 4), restarting at 0 each epoch; the memory keeps each utterance's latest normalised reference."""
    ssps = _ssps()
    ds = FakeDataset()
    ssps.on_epoch_start(1, ds)
    assert ds.pos is None and ssps.assign is None
    for step in range(3):
        idx = torch.arange(4) + 4 * step
        out, logs = ssps.exchange(idx, torch.full((4, 2), float(step + 1)), torch.full((4, 3), float(step)))
        assert torch.equal(out, torch.full((4, 3), float(step))) and logs == {}   # no sampling before start_epoch
    assert ssps.queue_index.tolist() == [8, 9, 10, 11, 4, 5, 6, 7, -1, -1]
    assert ssps.queue_emb[:4].eq(2).all() and ssps.queue_emb[4:8].eq(1).all() and ssps.queue_emb[8:].eq(0).all()
    torch.testing.assert_close(ssps.memory, torch.full((12, 2), 1 / math.sqrt(2)))
    assert ssps.filled.all()
    ssps.on_epoch_start(1, ds)                        # a new epoch writes from position 0 again
    ssps.exchange(torch.tensor([0, 1, 2, 3]), torch.ones(4, 2), torch.full((4, 3), 7.0))
    assert ssps.queue_index[:4].tolist() == [0, 1, 2, 3] and ssps.queue_emb[:4].eq(7).all()
    with pytest.raises(ConfigError, match="pos_queue_size"):
        ssps.exchange(torch.arange(11), torch.ones(11, 2), torch.ones(11, 3))


def test_ssps_start_epoch_and_replacement_by_stored_embeddings():
    """Memory and queue fill from ``start_epoch - 1``; sampling from ``start_epoch`` to the end; a sampled
    anchor's second view is replaced by the stored embedding of a member of the other prototype (no gradient)."""
    ssps = _ssps()
    assert [ssps.fills(e) for e in range(4)] == [False, True, True, True]
    # Utterances 0-5 near (1, 0), 6-11 near (0, 1): two prototypes, each the other's nearest other.
    ref = torch.cat([_angles([0, 2, 4, 6, 8, 10]), _angles([90, 92, 94, 96, 98, 100])])
    ssps.exchange(torch.arange(12)[:4], ref[:4], torch.zeros(4, 3))
    ssps.exchange(torch.arange(12)[4:8], ref[4:8], torch.ones(4, 3))
    ssps.exchange(torch.arange(12)[8:], ref[8:], torch.full((4, 3), 2.0))
    ds = FakeDataset()
    assert ssps.on_epoch_start(1, ds) == {} and ssps.assign is None
    logs = ssps.on_epoch_start(2, ds)
    assert ds.pos is None and logs["ssps/prototypes_used"] == 2
    assert ssps.assign[:6].unique().numel() == 1 and ssps.assign[6:].unique().numel() == 1
    assert ssps.assign[0] != ssps.assign[6]
    second = torch.full((4, 3), -5.0, requires_grad=True)
    out, logs = ssps.exchange(torch.tensor([0, 1, 6, 7]), ref[[0, 1, 6, 7]], second)
    # Queue (positions 0-7 after the wrap): utterances 8-11 (value 2) and 4-7 (value 1).
    # Anchors 0, 1 (group A) get members of group B in the queue: 8-11 (value 2) or 6, 7 (value 1);
    # anchors 6, 7 (group B) get members of group A: 4, 5 (value 1).
    assert logs["ssps/coverage"] == 1.0
    assert set(out[:2, 0].tolist()) <= {1.0, 2.0} and out[2:, 0].eq(1).all()
    out.sum().backward()
    assert second.grad.eq(0).all()                    # stored embeddings carry no gradient


def test_references_come_from_the_clean_view_in_eval_mode():
    torch.manual_seed(0)
    task = SimCLR(TinyEncoder(), SimCLRConfig(projector=False))
    task.train()
    x = torch.randn(6, 16)
    bn = task.encoder.net[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    ref = task.reference_embeddings(x)
    assert task.encoder.training and not ref.requires_grad
    torch.testing.assert_close(bn.running_mean, stats[0])
    torch.testing.assert_close(bn.running_var, stats[1])      # eval mode: statistics untouched
    task.encoder.eval()
    expected = F.normalize(task.encoder(x), dim=1)              # no dropout, running statistics
    torch.testing.assert_close(ref, expected)
    torch.testing.assert_close(task.reference_embeddings(x), ref)   # deterministic: dropout off


def test_ssps_embedding_views_and_methods_are_checked(tmp_path):
    from conftest import write_wav

    from sslspk.ssl import build_ssl_task
    from sslspk.train.dataset import CropDataset, ViewSpec

    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"u{i} {write_wav(tmp_path / f'{i}.wav', 0.3, seed=i)}\n" for i in range(4)))
    (d / "utt2spk").write_text("".join(f"u{i} s{i}\n" for i in range(4)))
    ssl = {"method": "simclr", "ssps": {"num_prototypes": 2}}
    two = [ViewSpec(0.1), ViewSpec(0.1)]
    with pytest.raises(ConfigError, match="augment: false"):
        build_ssl_task(ssl, TinyEncoder(), CropDataset(d, two), 3)
    with pytest.raises(ConfigError, match="augment: false"):
        build_ssl_task(ssl, TinyEncoder(), CropDataset(d, [*two, ViewSpec(0.2)]), 3)
    task = build_ssl_task(ssl, TinyEncoder(), CropDataset(d, [*two, ViewSpec(0.2, augment=False)]), 3)
    assert task.ssps.queue_emb.shape == (50000, 128)                   # the projector's output dimension
    with pytest.raises(ConfigError, match="simclr only"):
        build_ssl_task({"method": "moco", "ssps": {}}, TinyEncoder(), CropDataset(d, two), 3)
    with pytest.raises(ConfigError, match="knn exists with positive: audio"):
        SSPSConfig(sampling="knn")


def _nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """sslsv's formulation, written out: per view, logits [positive, all other views but itself]."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        neg = [float(z[i] @ z[k]) / t for k in range(2 * n) if k not in (i, j)]
        pos = float(z[i] @ z[j]) / t
        losses.append(-pos + math.log(math.exp(pos) + sum(math.exp(v) for v in neg)))
    return torch.tensor(sum(losses) / len(losses))


@pytest.mark.parametrize("projector", [False, True])
def test_simclr_loss_with_and_without_projector(projector):
    torch.manual_seed(0)
    cfg = SimCLRConfig(temperature=0.03, projector=projector, projector_hidden=16, projector_dim=4)
    task = SimCLR(TinyEncoder(), cfg)
    task.eval()                                        # deterministic encoder for the reference
    views = [torch.randn(5, 1, 16), torch.randn(5, 1, 16)]
    loss, _ = task({"views": views, "index": torch.arange(5)}, 0)
    z1, z2 = task.encoder(views[0][:, 0]), task.encoder(views[1][:, 0])
    if projector:
        z1, z2 = task.projector(z1), task.projector(z2)
        assert z1.shape == (5, 4)
    else:
        assert not any(True for _ in task.projector.parameters())
    torch.testing.assert_close(loss.detach(), _nt_xent_reference(z1.detach(), z2.detach(), 0.03).float(),
                               rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- 2 gloo processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        from sslspk.ssl.losses import nt_xent

        # Gather: each process's loss contrasts its 2B views with all 4B; the gradient of its inputs is
        # that of the sum of both losses.
        gen = torch.Generator().manual_seed(0)
        data = torch.randn(2, 2, 3, 4, generator=gen)          # [rank, view, B, D]
        z1, z2 = data[rank, 0].clone().requires_grad_(), data[rank, 1].clone().requires_grad_()
        loss = nt_xent(z1, z2, 0.5)
        loss.backward()
        out[f"loss{rank}"] = float(loss)
        out[f"grad{rank}"] = torch.cat([z1.grad, z2.grad]).clone()
        # DDP leaves the SSPS buffers alone (rank 1's memory survives) but syncs batch norm statistics.
        torch.manual_seed(0)
        task = SimCLR(TinyEncoder(), SimCLRConfig(projector=False),
                      SSPS(SSPSConfig(start_epoch=5, num_prototypes=2, pos_queue_size=8), 6, 8, positive_dim=8))
        task.ssps.memory.fill_(rank + 1.0)
        task.encoder.net[1].running_mean.fill_(100.0 * rank)
        ddp = torch.nn.parallel.DistributedDataParallel(task)
        batch = {"views": [torch.randn(3, 1, 16), torch.randn(3, 1, 16), torch.randn(3, 1, 16)],
                 "index": torch.arange(3) + 3 * rank}
        ddp(batch, 0)[0].backward()
        out[f"memory{rank}"] = float(task.ssps.memory.mean())
        out[f"running_mean{rank}"] = float(task.encoder.net[1].running_mean.abs().max())
    finally:
        torch.distributed.destroy_process_group()


def test_ssps_buffers_are_not_synced_by_ddp(tmp_path):
    """The buffers DDP broadcasts from rank 0 at each forward: batch norm's, not the SSPS memory/queue."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        task = SimCLR(TinyEncoder(), SimCLRConfig(projector=False),
                      SSPS(SSPSConfig(num_prototypes=2, pos_queue_size=8), 6, 8, positive_dim=8))
        synced = {id(b) for b in torch.nn.parallel.DistributedDataParallel(task).modules_buffers}
    finally:
        torch.distributed.destroy_process_group()
    assert synced == {id(task.encoder.net[1].running_mean), id(task.encoder.net[1].running_var),
                      id(task.encoder.net[1].num_batches_tracked)}
    assert {id(b) for b in task.ssps.buffers()}.isdisjoint(synced) and len(list(task.ssps.buffers())) == 4


@pytest.mark.slow
def test_gather_and_ssps_buffers_under_ddp():
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(_free_port(), out), nprocs=2, join=True)
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(2, 2, 3, 4, generator=gen)
    leaf = data.clone().requires_grad_()
    total = 0.0
    for r in range(2):   # independent: each process's rows against the 12 views of both processes
        z = F.normalize(leaf.reshape(12, 4), dim=1)
        rows = range(6 * r, 6 * r + 6)
        for i in rows:
            j = i + 3 if (i - 6 * r) < 3 else i - 3
            logits = torch.stack([z[i] @ z[k] / 0.5 for k in range(12) if k != i])
            target = [k for k in range(12) if k != i].index(j)
            total = total + (torch.logsumexp(logits, 0) - logits[target]) / 6
        assert out[f"loss{r}"] == pytest.approx(float(total.detach()) - (out["loss0"] if r else 0.0), rel=1e-5)
    total.backward()
    for r in range(2):
        torch.testing.assert_close(out[f"grad{r}"], leaf.grad[r].reshape(6, 4), rtol=1e-4, atol=1e-6)
    assert out["memory0"] == 1.0 and out["memory1"] == 2.0
    assert out["running_mean1"] < 50                  # rank 0's batch norm statistics (0) were broadcast
