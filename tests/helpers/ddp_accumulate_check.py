"""Run by tests/test_trainer_step.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

Each rank runs one Trainer.step over 2 micro-batches of 2 items (train.accumulate 2) through DDP; every
rank then checks that the weights equal those of one single-process step on all 8 items, and that the
gradients were all-reduced once (``no_sync`` on the first micro-batch), counted by a DDP comm hook.
"""

import copy
import sys
import tempfile

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from sslspk.train.task import TrainTask
from sslspk.train.trainer import TrainConfig, Trainer


class Regression(TrainTask):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1))

    def forward(self, batch, epoch):
        return ((self.encoder(batch["x"]).squeeze(1) - batch["y"]) ** 2).mean(), {}


cfg = TrainConfig(optimizer="sgd", lr=0.5, momentum=0.0, nesterov=False, weight_decay=0.0, grad_clip=None,
                  amp=False, device="cpu", accumulate=2)
with tempfile.TemporaryDirectory() as tmp:
    trainer = Trainer(cfg, tmp)
    rank = trainer.rank
    torch.manual_seed(0)
    task = Regression()
    ref = copy.deepcopy(task)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 6, generator=g), torch.randn(8, generator=g)
    micro = [{"x": x[i:i + 2], "y": y[i:i + 2]} for i in (rank * 4, rank * 4 + 2)]
    ddp = nn.parallel.DistributedDataParallel(task)
    reductions = []

    def hook(state, bucket):
        reductions.append(1)
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(dist.group.WORLD, hook)
    trainer.step(task, trainer._optimizer(task), micro, 0, model=ddp)
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    ref({"x": x, "y": y}, 0)[0].backward()
    opt.step()
    worst = max(float((a - b).abs().max()) for a, b in zip(task.parameters(), ref.parameters()))
    print(f"rank {rank}: max weight difference {worst:.2e}, all-reduces {len(reductions)}")
    ok = worst < 1e-6 and len(reductions) == 1
flag = torch.tensor([int(ok)])
dist.all_reduce(flag, op=dist.ReduceOp.MIN)
dist.destroy_process_group()
sys.exit(0 if flag.item() else 1)
