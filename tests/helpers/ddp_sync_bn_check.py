"""Run by tests/test_ssl_dino_moco.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

train.sync_bn under DDP turns every BatchNorm of a DINO task (head with BN) into SyncBatchNorm, keeping
the same parameter objects; sync_bn false leaves them plain. Prints one line per check.
"""

import sys

import torch
import torch.distributed as dist

from sslspk.ssl.dino import DINO, DINOConfig
from sslspk.train.distributed import init_distributed
from sslspk.train.trainer import sync_batchnorm
from sslspk.utils.errors import TrainingError


class Enc(torch.nn.Module):
    embedding_dim = 4

    def __init__(self):
        super().__init__()
        self.lin, self.bn = torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x[:, :8]))


init_distributed("cpu")
task = DINO(Enc(), DINOConfig(out_dim=6, hidden=8, bottleneck=4, head_bn=True), total_epochs=2)
params = [id(p) for p in task.parameters()]
n_bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in task.modules())
same = sync_batchnorm(task, False, torch.device("cuda"))
ok = same is task and not any(isinstance(m, torch.nn.SyncBatchNorm) for m in task.modules())
print("sync_bn false keeps BatchNorm:", ok)
try:
    sync_batchnorm(task, True, torch.device("cpu"))
    ok = False
except TrainingError:
    print("sync_bn on CPU refused")
# The conversion itself (the device only matters to SyncBatchNorm's forward).
conv = sync_batchnorm(task, True, torch.device("cuda"))
n_sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in conv.modules())
left = sum(type(m) is torch.nn.BatchNorm1d for m in conv.modules())
# student + teacher: the encoder's BN and the head's two each
print(f"BatchNorm {n_bn} -> SyncBatchNorm {n_sync}, plain left {left}")
ok = ok and n_bn == 6 and n_sync == n_bn and left == 0 and [id(p) for p in conv.parameters()] == params
flag = torch.tensor([int(ok)])
dist.all_reduce(flag, op=dist.ReduceOp.MIN)
dist.destroy_process_group()
sys.exit(0 if flag.item() else 1)
