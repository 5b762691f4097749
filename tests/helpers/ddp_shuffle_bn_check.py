"""Run by tests/test_ssl_dino_moco.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

MoCo's shuffle-BN across two processes: each process's keys come back for its own rows, in order;
without BatchNorm they equal the unshuffled computation; with train-mode BatchNorm each process
normalised a mix of both halves (the statistics of the other process's samples enter).
"""

import sys

import torch
import torch.distributed as dist

from sslspk.ssl.moco import shuffled_forward
from sslspk.train.distributed import init_distributed

rank, world, _ = init_distributed("cpu")
torch.manual_seed(0)                                  # same data and networks on both processes
full = torch.randn(2 * 6, 3)
full[6:] += 5.0                                       # the second process's half has another mean
mine = full[rank * 6:(rank + 1) * 6]
lin = torch.nn.Linear(3, 2)
torch.manual_seed(10 + rank)                          # the permutation must come from rank 0 anyway
ok = torch.allclose(shuffled_forward(lin, mine), lin(mine).detach(), atol=1e-6)
print(f"rank {rank}: linear keys in order: {ok}")
bn = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2, affine=False))
keys = shuffled_forward(bn, mine)
local = bn(mine).detach()                             # statistics of this process's half only
mixed = not torch.allclose(keys, local, atol=1e-3)
print(f"rank {rank}: BN keys differ from the local-batch ones: {mixed}")
ok = ok and mixed
flag = torch.tensor([int(ok)])
dist.all_reduce(flag, op=dist.ReduceOp.MIN)
dist.destroy_process_group()
sys.exit(0 if flag.item() else 1)
