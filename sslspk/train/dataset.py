"""Training datasets: random crops ("views") of the utterances of a Kaldi data dir.

Randomness of an item (crop positions, augmentation) comes from a generator seeded by
``(seed, epoch, index)``, so batches are identical whatever the number of loader workers, threads
or processes, and a resumed run replays exactly the same data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sslspk.utils.config import ConfigError


@dataclass
class ViewSpec:
    """``count`` crops of ``seconds`` each (e.g. DINO: 2 global of 3 s + 4 local of 2 s)."""

    seconds: float
    count: int = 1
    augment: bool = True


def parse_views(views: list[dict[str, Any]] | None, where: str = "data.views") -> list[ViewSpec]:
    """Validate the ``views`` list of a config."""
    from sslspk.utils.config import from_dict

    if not views:
        raise ConfigError(f"{where}: at least one view is required, e.g. [{{seconds: 2.0, count: 2}}]")
    specs = [from_dict(ViewSpec, v, f"{where}[{i}]") for i, v in enumerate(views)]
    for i, s in enumerate(specs):
        if s.seconds <= 0 or s.count < 1:
            raise ConfigError(f"{where}[{i}]: seconds must be > 0 and count >= 1, got {s}")
    return specs




def random_crop(wav: np.ndarray, length: int, rng: np.random.Generator, too_short: str = "repeat") -> np.ndarray:
    """A random ``length``-sample crop; shorter audio is repeated (wrapped) or zero-padded to the length."""
    if len(wav) < length:
        if too_short == "pad":
            return np.pad(wav, (0, length - len(wav)))
        wav = np.tile(wav, length // len(wav) + 1)
    start = int(rng.integers(0, len(wav) - length + 1))
    return wav[start:start + length]


@dataclass
class CropDataset(Dataset):
    """Item ``i`` = the views of utterance ``i``: ``{"views": [Tensor[count, T_v]], "index": i}``.

    ``positive_of`` (set each epoch by SSPS) names, per utterance, another utterance whose crops
    replace the anchor's for views with ``from_positive`` (see :meth:`set_positives`).
    ``labels`` (optional) adds ``"label"`` to items (pseudo-labels for supervised training).
    ``too_short``: an utterance shorter than a view is ``repeat``-ed (wrapped) or zero-``pad``-ded to
    the view's length, or, with ``skip``, left out of the dataset (counted and logged; durations from
    ``utt2dur`` when present, else from the audio headers). ``channel``: ``mix`` or ``first`` channel
    of multi-channel audio. ``threads``: threads preparing the items of a batch (:meth:`__getitems__`).
    ``clean_views`` adds ``"clean_views"``: the same crops before augmentation, shaped as ``"views"``
    (the online DLG-LC corrects labels from them, as the loader of theolepage/wavlm_ssl_sv:
    DatasetLoader.py returns each crop clean and augmented); off, nothing more is made or returned.
    """

    data_dir: str | os.PathLike
    views: list[ViewSpec]
    sample_rate: int = 16000
    augment: dict[str, Any] | None = None
    seed: int = 0
    labels: np.ndarray | None = None
    epoch: int = 0
    positive_of: np.ndarray | None = None
    positive_views: tuple[int, ...] = ()
    too_short: str = "repeat"
    channel: str = "mix"
    threads: int = 1
    clean_views: bool = False
    _augmenter: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from sslspk.data.audio import check_data_options
        from sslspk.data.datadir import DataDir

        check_data_options(self.too_short, self.channel)
        self.data = DataDir.load(self.data_dir)
        self.utts = self.data.utts
        if self.too_short == "skip":
            self.utts = self._long_enough()
        if self.augment:
            from sslspk.augment import Augmenter

            self._augmenter = Augmenter.from_config(self.augment, self.sample_rate)

    def __len__(self) -> int:
        return len(self.utts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_positives(self, positive_of: np.ndarray | None, views: tuple[int, ...]) -> None:
        """Take the crops of views ``views`` (indices into ``self.views``) from ``positive_of[i]``."""
        self.positive_of = positive_of
        self.positive_views = tuple(views) if positive_of is not None else ()

    def _long_enough(self) -> list[str]:
        """The utterances at least as long as the longest view; logs how many are skipped."""
        import logging

        from sslspk.data.durations import utt_durations

        need = max(v.seconds for v in self.views)
        dur = self.data.utt2dur or utt_durations(self.data, str(self.data_dir), progress=False)[1]
        keep = [u for u in self.utts if dur[u] >= need]
        if len(keep) < len(self.utts):
            logging.getLogger("sslspk").warning(
                "%s: %d of %d utterances shorter than %g s skipped (data.too_short: skip)",
                self.data_dir, len(self.utts) - len(keep), len(self.utts), need)
        if not keep:
            raise ConfigError(f"{self.data_dir}: every utterance is shorter than {need:g} s (data.too_short: skip)")
        return keep

    def load(self, index: int) -> np.ndarray:
        return self.data.load_audio(self.utts[index], self.sample_rate, self.channel)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        wav = self.load(index)
        pos = None
        if self.positive_views:
            j = int(self.positive_of[index])
            pos = wav if j == index else self.load(j)
        out: list[torch.Tensor] = []
        clean_out: list[torch.Tensor] = []
        for v, spec in enumerate(self.views):
            src = pos if v in self.positive_views else wav
            length = int(round(spec.seconds * self.sample_rate))
            crops, clean = [], []
            for _ in range(spec.count):
                c = random_crop(src, length, rng, self.too_short)
                if self.clean_views:
                    clean.append(torch.from_numpy(np.array(c, dtype=np.float32)))
                if spec.augment and self._augmenter is not None:
                    c = self._augmenter(c, rng)
                crops.append(torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)))
            out.append(torch.stack(crops))
            if self.clean_views:
                clean_out.append(torch.stack(clean))
        return self.make_item(index, out, clean_out)

    def make_item(self, index: int, views: list[torch.Tensor], clean_views: list[torch.Tensor]) -> dict[str, Any]:
        """The item of utterance ``index`` (what the trainer's tasks read): its ``views``, ``clean_views`` when
        asked for, its label when labelled."""
        item: dict[str, Any] = {"views": views, "index": index}
        if self.clean_views:
            item["clean_views"] = clean_views
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """The items of one batch (the DataLoader's call), thread ``k`` of ``threads`` preparing items
        ``k, k + threads, ...``: each item has its own random generator, so they are the same items.
        Threads pay where numpy/scipy augmentation (which releases the GIL) dominates."""
        n = min(self.threads, len(indices))
        if n <= 1:
            return [self[i] for i in indices]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n) as pool:
            parts = list(pool.map(lambda k: [self[i] for i in indices[k::n]], range(n)))
        items: list[dict[str, Any]] = [{}] * len(indices)
        for k, part in enumerate(parts):
            items[k::n] = part
        return items


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items: ``views[v]`` (and ``clean_views[v]``) becomes ``Tensor[B, count_v, T_v]``; index/label
    become tensors."""
    batch: dict[str, Any] = {key: [torch.stack([it[key][v] for it in items]) for v in range(len(items[0][key]))]
                             for key in ("views", "clean_views") if key in items[0]}
    batch["index"] = torch.tensor([it["index"] for it in items])
    if "label" in items[0]:
        batch["label"] = torch.tensor([it["label"] for it in items])
    return batch
