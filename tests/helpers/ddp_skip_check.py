"""Run by tests/test_faults.py under ``torchrun --nproc-per-node 2`` (gloo, CPU): DATA_DIR EXP_DIR.

The loss is NaN on rank 1 only, at its second step (train.nan_policy: skip). Both processes must skip
that step (a process skipping its backward alone would desynchronise the gradient all-reduce) and
end with the same number of optimizer steps and the same weights.
"""

import sys

import torch
import torch.distributed as dist

from sslspk.train.dataset import CropDataset, ViewSpec
from sslspk.train.task import TrainTask
from sslspk.train.trainer import TrainConfig, Trainer


class NaNOnRank1(TrainTask):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(4, 2)
        self.calls = 0

    def forward(self, batch, epoch):
        self.calls += 1
        loss = self.encoder(batch["views"][0][:, 0, :4]).pow(2).mean()
        if dist.get_rank() == 1 and self.calls == 2:
            loss = loss * float("nan")
        return loss, {}


data, exp = sys.argv[1:3]
cfg = TrainConfig(epochs=2, batch_size=2, num_workers=0, optimizer="sgd", lr=0.01, warmup_epochs=0, device="cpu",
                  nan_policy="skip", amp=False)
trainer = Trainer(cfg, exp)
task = NaNOnRank1()
trainer.fit(task, CropDataset(data, [ViewSpec(seconds=0.5, count=1, augment=False)], 16000))
state = torch.cat([torch.tensor([float(trainer.global_step)]), *(p.detach().flatten() for p in task.parameters())])
both = [torch.empty_like(state) for _ in range(2)]
dist.all_gather(both, state)
same = torch.equal(both[0], both[1])
if dist.get_rank() == 0 and same:
    print(f"both processes: {trainer.global_step} optimizer steps, same weights")
dist.destroy_process_group()
sys.exit(0 if same else 1)
