"""Run by tests/test_pseudo.py under ``torchrun --nproc-per-node 2`` (gloo, CPU): ``DATA_DIR``.

``loss.init_from_centroids`` under DDP: each rank embeds its share of the data dir and the class
sums are all-reduced. Checks that both ranks end with the class weights that one process gets
from the embeddings of every utterance.
"""

import copy
import sys
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist

from sslspk.data.datadir import DataDir
from sslspk.extraction import embed_data_dir
from sslspk.models import build_model
from sslspk.supervised import FinetuneConfig, LossConfig, SupervisedTask
from sslspk.train.distributed import init_distributed

rank, world, _ = init_distributed("cpu")
assert world == 2, world
data_dir = sys.argv[1]
data = DataDir.load(data_dir)
spks = sorted(set(data.utt2spk.values()))
labels = np.array([spks.index(data.utt2spk[u]) for u in data.utts])
torch.manual_seed(0)
enc = build_model({"type": "ecapa_tdnn", "channels": 16, "mfa_channels": 48, "attention_channels": 8,
                   "se_channels": 8, "embedding_dim": 16, "frontend": {"type": "fbank", "num_mel_bins": 24}})
task = SupervisedTask(enc, len(spks) + 1, len(labels), LossConfig(init_from_centroids=True), FinetuneConfig(),
                      labels=labels)   # one class more than used: it keeps its random weights
ref = copy.deepcopy(task)
dataset = SimpleNamespace(data_dir=data_dir, sample_rate=16000, channel="mix", utts=data.utts)
task.on_fit_start(SimpleNamespace(dataset=dataset, device=torch.device("cpu"), is_main=rank == 0))

emb = dict(embed_data_dir(ref.encoder.eval(), data_dir, 16000, progress=False))
ref.init_classes_from(np.stack([emb[u] for u in data.utts]))
w = task.classifier.weight.detach()
parts = [torch.empty_like(w) for _ in range(world)]
dist.all_gather(parts, w)
diff_ref = float((w - ref.classifier.weight.detach()).abs().max())
diff_ranks = float((parts[0] - parts[1]).abs().max())
print(f"rank {rank}: max difference to one process {diff_ref:.2e}, between ranks {diff_ranks:.2e}")
flag = torch.tensor([int(diff_ref < 1e-5 and diff_ranks == 0.0)])
dist.all_reduce(flag, op=dist.ReduceOp.MIN)
dist.destroy_process_group()
sys.exit(0 if flag.item() else 1)
