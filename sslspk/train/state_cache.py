"""Training a pretrained encoder's head on cached hidden states of its frozen backbone
(``finetune.cache_frozen_backbone``).

With the backbone frozen (``model.freeze_backbone: true``), every epoch would run the same backbone
over new crops of the same utterances; most of a step's time goes there (Whisper tiny.en, 2 layers,
batch 64 x 2 s: 1.6 CPU s of a step's 1.6-4 s). :func:`cache_hidden_states` runs it once per
utterance instead, over the whole utterance in ``eval()`` mode, and keeps its hidden states in memory
in float16; :class:`CachedStatesDataset` then gives, per view, a random crop of ``seconds`` of them
(the frames of a ``seconds`` crop of audio), so an epoch costs only the head.

What differs from training on audio crops, by construction:

* no data augmentation: the states are those of the clean audio (``data.augment`` is an error);
* each crop's frames carry the context of the whole utterance (the Transformer attended over all of
  it), as the embeddings extracted from whole utterances do; an audio crop's states see the crop only;
* no dropout or layer drop in the backbone (cached in ``eval()`` mode: ``model.layerdrop`` must be 0).

Memory: ``(layers + 1) x hidden x 2`` bytes per frame (Whisper: 50 frames a second; tiny.en, all 4
layers: 192 kB a second of audio, 0.9 GB for the 1.3 hours of egs/speechocean762's train_dev).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sslspk.train.dataset import CropDataset, random_crop
from sslspk.utils.config import ConfigError


def check_cacheable(encoder: Any, where: str) -> None:
    """ConfigError unless ``encoder`` is a pretrained-backbone encoder whose cached states equal what training
    would compute: the backbone frozen and no layer drop."""
    from sslspk.models.wavlm import PretrainedEncoder

    if not isinstance(encoder, PretrainedEncoder):
        raise ConfigError(f"{where}: finetune.cache_frozen_backbone needs a model of type pretrained "
                          f"(a frozen pretrained backbone), got {type(encoder).__name__}")
    if encoder.backbone_trainable:
        raise ConfigError(f"{where}: finetune.cache_frozen_backbone needs model.freeze_backbone: true "
                          "(a backbone that trains changes its hidden states every step)")
    if encoder.layerdrop > 0:
        raise ConfigError(f"{where}: finetune.cache_frozen_backbone: model.layerdrop is {encoder.layerdrop} "
                          "(the checkpoint's, when not set): cached states have no layer drop; set model.layerdrop: 0")


def cache_hidden_states(encoder: Any, dataset: CropDataset, device: str | torch.device = "cpu",
                        progress: bool = True) -> list[torch.Tensor]:
    """The hidden states of ``encoder``'s frozen backbone for each utterance of ``dataset`` (in its order),
    whole, in ``eval()`` mode: ``[num_states, frames, hidden]`` float16 tensors on the CPU."""
    from tqdm import tqdm

    was_training = encoder.training
    encoder.eval().to(device)
    out = []
    try:
        with torch.inference_mode():
            for i in tqdm(range(len(dataset)), desc="cache hidden states", unit="utt", disable=not progress,
                          mininterval=10):
                wav = torch.as_tensor(np.ascontiguousarray(dataset.load(i), dtype=np.float32))[None].to(device)
                states = encoder.hidden_states(wav)
                out.append(torch.stack([s[0] for s in states]).to("cpu", torch.float16))
    finally:
        encoder.train(was_training)
    return out


def cache_states(encoder: Any, dataset: "CachedStatesDataset", device: str, where: str) -> None:
    """finetune.cache_frozen_backbone: the frozen backbone's hidden states of every utterance of ``dataset``
    computed once on ``device`` (train.device) and set in it, with its frame rate; prints the cache's size."""
    from sslspk.utils.device import resolve_device

    check_cacheable(encoder, where)
    sample_rate = dataset.sample_rate
    dataset.frames_per_second = float(encoder.frame_lengths(torch.tensor([100 * sample_rate]))) / 100
    t0 = time.time()
    dataset.set_states(cache_hidden_states(encoder, dataset, resolve_device(device)))
    size = sum(s.numel() * s.element_size() for s in dataset.states)
    print(f"cached the frozen backbone's hidden states of {len(dataset)} utterances ({size / 2 ** 20:.0f} MiB) "
          f"in {time.time() - t0:.0f} s")


@dataclass
class CachedStatesDataset(CropDataset):
    """:class:`CropDataset` whose views are crops of cached hidden states instead of audio: item ``i`` =
    ``{"views": [Tensor[count, num_states, frames, hidden]], "index": i}`` (+ ``"label"``, and
    ``"clean_views"``, the same tensors: there is no augmentation), the frames of a crop of ``seconds``.

    ``states``: :func:`cache_hidden_states` of this dataset; ``frames_per_second``: the backbone's frame
    rate. An utterance shorter than a crop is repeated (``too_short: repeat``, wrapped as audio would be)
    or left out (``skip``); ``pad`` is an error (padded frames would enter the statistics)."""

    states: list[torch.Tensor] = field(default_factory=list, repr=False)
    frames_per_second: float = 50.0

    def __post_init__(self) -> None:
        if self.augment:
            raise ConfigError("finetune.cache_frozen_backbone: the cached states are of the clean audio: "
                              "remove data.augment (it would not be applied)")
        if self.too_short == "pad":
            raise ConfigError("finetune.cache_frozen_backbone: data.too_short pad is not supported "
                              "(use repeat or skip)")
        super().__post_init__()

    def set_states(self, states: list[torch.Tensor]) -> None:
        """The cache, one tensor ``[num_states, frames, hidden]`` per utterance, in the dataset's order."""
        if len(states) != len(self):
            raise ValueError(f"{len(states)} cached utterances for a dataset of {len(self)}")
        self.states = states

    def crop_frames(self, seconds: float) -> int:
        """Frames of a crop of ``seconds``."""
        return max(1, int(round(seconds * self.frames_per_second)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.states:
            raise RuntimeError("CachedStatesDataset: no states (call set_states with cache_hidden_states' result)")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        x = self.states[index]
        frames = np.arange(x.shape[1])
        out = []
        for spec in self.views:
            length = self.crop_frames(spec.seconds)
            out.append(torch.stack([x[:, torch.from_numpy(random_crop(frames, length, rng, "repeat"))]
                                    for _ in range(spec.count)]))
        return self.make_item(index, out, out)  # no augmentation: the clean views are the views
