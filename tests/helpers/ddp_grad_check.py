"""Run by tests/test_train.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

Each rank computes a SimCLR step on its half of a fixed batch through DDP; rank 0 then checks
that the synchronised gradient equals the mean of the two halves' gradients computed locally.
"""

import copy
import sys

import torch
import torch.distributed as dist

from sslspk.models import build_model
from sslspk.ssl.simclr import SimCLR, SimCLRConfig
from sslspk.train.distributed import init_distributed

rank, world, _ = init_distributed("cpu")
assert world == 2, world
torch.manual_seed(0)
enc = build_model({"type": "ecapa_tdnn", "channels": 16, "mfa_channels": 48, "attention_channels": 8,
                   "se_channels": 8, "embedding_dim": 16, "frontend": {"type": "fbank", "num_mel_bins": 24}})
task = SimCLR(enc, SimCLRConfig(projector_hidden=16, projector_dim=8))
ref = copy.deepcopy(task)
g = torch.Generator().manual_seed(1)
views = [torch.randn(8, 1, 4000, generator=g) * 0.1, torch.randn(8, 1, 4000, generator=g) * 0.1]
index = torch.arange(8)


def shard(r):
    return {"views": [v[r * 4:(r + 1) * 4] for v in views], "index": index[r * 4:(r + 1) * 4]}


ddp = torch.nn.parallel.DistributedDataParallel(task)
loss, _ = ddp(shard(rank), 0)
loss.backward()
if rank == 0:
    grads = []
    for r in range(2):
        m = copy.deepcopy(ref)
        m(shard(r), 0)[0].backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    worst = 0.0
    for n, p in task.named_parameters():
        if p.grad is None:
            continue
        expect = (grads[0][n] + grads[1][n]) / 2
        worst = max(worst, float((p.grad - expect).abs().max() / (expect.abs().max() + 1e-12)))
    print(f"max relative gradient difference {worst:.2e}")
    ok = worst < 1e-4
else:
    ok = True
flag = torch.tensor([int(ok)])
dist.all_reduce(flag, op=dist.ReduceOp.MIN)
dist.destroy_process_group()
sys.exit(0 if flag.item() else 1)
