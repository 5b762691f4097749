"""Run by tests/test_train.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

Each rank computes a SimCLR step on its half of a fixed batch through DDP, its views contrasted with
the views of both ranks (gathered, as sslsv's SimCLRLoss); rank 0 then checks that the synchronised
gradient equals that of the mean of the two ranks' losses, computed here in one process by hand (each
half encoded on its own, as its rank does: batch norm statistics per half).
"""

import copy
import sys

import torch
import torch.distributed as dist
from torch.nn import functional as F

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
    z = []   # per half: its 4 anchor then 4 positive vectors, normalised
    for r in range(2):
        v = shard(r)["views"]
        z.append(F.normalize(torch.cat([ref.projector(ref.embed(v[0])[0]), ref.projector(ref.embed(v[1])[0])]), dim=1))
    everything = torch.cat(z)                        # the 16 views of both ranks
    total = 0.0
    for r in range(2):
        for i in range(8):
            row = 8 * r + i
            logits = everything[row] @ everything.T / ref.cfg.temperature
            logits = torch.cat([logits[:row], logits[row + 1:]])      # itself excluded
            positive = 8 * r + (i + 4) % 8
            total = total + (torch.logsumexp(logits, 0) - logits[positive - (positive > row)]) / 8
    (total / 2).backward()
    grads = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    scale = max(float(g.abs().max()) for g in grads.values())   # relative to the largest gradient (the
    worst = max(float((p.grad - grads[n]).abs().max()) / scale  # biases before a batch norm get ~0)
                for n, p in task.named_parameters() if p.grad is not None)
    print(f"max relative gradient difference {worst:.2e}")
    ok = worst < 1e-4
else:
    ok = True
flag = torch.tensor([int(ok)])
dist.all_reduce(flag, op=dist.ReduceOp.MIN)
dist.destroy_process_group()
sys.exit(0 if flag.item() else 1)
