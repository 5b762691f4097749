"""voxceleb_trainer's speaker-aware sampler (train.sampler: speaker_distinct), as theolepage/wavlm_ssl_sv
uses it (DatasetLoader.py, train_dataset_sampler): per epoch, at most ``max_per_speaker`` utterances of
each (pseudo) speaker, in a random order in which an utterance whose speaker is already in the batch being
filled is left out, so that no batch of a process holds a speaker twice; the list is cut to whole batches of
every process and each process takes its contiguous share (its batches are whole chunks of the list)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def speaker_distinct_order(labels: np.ndarray, batch: int, max_per_speaker: int, seed: int,
                           world: int = 1) -> list[int]:
    """Indices of one epoch, speakers distinct within each chunk of ``batch`` (one process's batch), cut to
    a multiple of ``batch * world``: see the module doc."""
    g = torch.Generator()
    g.manual_seed(seed)
    per_speaker: dict[int, list[int]] = {}
    for i in torch.randperm(len(labels), generator=g).tolist():
        per_speaker.setdefault(int(labels[i]), []).append(i)
    picked = [i for spk in sorted(per_speaker) for i in per_speaker[spk][:max_per_speaker]]
    order: list[int] = []
    in_batch: set[int] = set()
    for j in torch.randperm(len(picked), generator=g).tolist():
        if len(order) % batch == 0:
            in_batch = set()
        spk = int(labels[picked[j]])
        if spk not in in_batch:
            in_batch.add(spk)
            order.append(picked[j])
    return order[:len(order) - len(order) % (batch * world)]


class SpeakerDistinctSampler(torch.utils.data.Sampler):
    """This process's share of :func:`speaker_distinct_order` (``batch_size`` per process), new every epoch."""

    def __init__(self, labels: np.ndarray, batch_size: int, max_per_speaker: int, rank: int, world: int, seed: int):
        self.labels = np.array(labels)   # the given labels (later corrections do not change the sampling)
        self.batch_size, self.max_per_speaker = batch_size, max_per_speaker
        self.rank, self.world, self.seed = rank, world, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        order = speaker_distinct_order(self.labels, self.batch_size, self.max_per_speaker, self.seed + epoch,
                                       self.world)
        share = len(order) // self.world
        self.indices = order[self.rank * share:(self.rank + 1) * share]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
