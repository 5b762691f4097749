"""finetune.cache_frozen_backbone (sslspk.train.state_cache) and head: stats, on a tiny random Whisper encoder:
the cached states give the head outputs of the uncached frozen forward; the backbone stays frozen through a
training; what cannot be cached is a ConfigError."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from test_pretrained_backbones import _model, _save
from test_train import make_data

from sslspk.models.wavlm import StatsHead
from sslspk.train.dataset import ViewSpec
from sslspk.train.state_cache import CachedStatesDataset, cache_hidden_states, check_cacheable
from sslspk.utils.config import ConfigError


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> str:
    return _save("whisper", tmp_path_factory.mktemp("whisper"), encoder_layerdrop=0.0)


def test_stats_head_is_masked_mean_and_std_per_state():
    torch.manual_seed(0)
    head = StatsHead(2, 3, 4).eval()
    states = [torch.randn(2, 5, 3), torch.randn(2, 5, 3)]
    frames = torch.tensor([5, 3])
    out = head(states, (torch.arange(5) < frames[:, None]).float()[:, None])
    for b, n in enumerate(frames.tolist()):
        x = [s[b, :n].double().numpy() for s in states]
        stats = np.concatenate([np.concatenate([h.mean(0), h.std(0)]) for h in x])   # numpy: population std
        stats = stats / np.sqrt(1 + head.norm.eps)                                     # BN at its initial stats
        want = head.fc.weight.detach().double().numpy() @ stats + head.fc.bias.detach().double().numpy()
        np.testing.assert_allclose(out[b].detach().numpy(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head", ["mhfa", "stats"])
def test_padded_batch_equals_one_by_one_with_stats_head(whisper, head):
    m = _model(whisper, head=head, freeze_backbone=True).eval()
    wav = torch.randn(2, 8000)
    lengths = torch.tensor([8000, 5000])
    with torch.no_grad():
        batch = m(wav, lengths)
        one = torch.cat([m(wav[:1]), m(wav[1:, :5000])])
    torch.testing.assert_close(batch, one, rtol=1e-4, atol=1e-5)


def test_stats_head_rejects_a_layer_weighting(whisper):
    with pytest.raises(ConfigError, match="head stats has no layer weighting"):
        _model(whisper, head="stats", layer_weighting="average")


@pytest.mark.parametrize("head", ["mhfa", "stats"])
def test_cached_states_give_the_uncached_frozen_forward(whisper, tmp_path, head):
    """A crop covering a whole utterance is its cached states: the head on it equals the encoder on the audio
    (eval mode); a shorter crop is a slice of consecutive frames of those states."""
    data = make_data(tmp_path / "data", n_spk=2, n_utt=2)   # 1-s utterances: 50 frames
    m = _model(whisper, head=head, freeze_backbone=True)
    ds = CachedStatesDataset(data, [ViewSpec(1.0), ViewSpec(0.4, count=2)], seed=3)
    ds.set_states(cache_hidden_states(m, ds, progress=False))
    assert m.training   # restored
    m.eval()
    for i in range(len(ds)):
        item = ds[i]
        whole, part = item["views"]
        assert whole.shape == (1, 3, 50, 32) and part.shape == (2, 3, 20, 32) and whole.dtype == torch.float16
        wav = torch.as_tensor(ds.load(i))[None]
        with torch.no_grad():
            want = m(wav)
            states = torch.stack([s[0] for s in m.hidden_states(wav)])
            got = m.pool(whole[:, :].float().unbind(1))
        torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)   # float16 cache
        for crop in part:
            start = [s for s in range(31) if torch.equal(crop, states[:, s:s + 20].half())]
            assert start, "a crop is consecutive frames of the whole utterance's states"


def test_short_utterance_is_wrapped(whisper, tmp_path):
    data = make_data(tmp_path / "data", n_spk=2, n_utt=1)
    m = _model(whisper, freeze_backbone=True)
    ds = CachedStatesDataset(data, [ViewSpec(1.5)])
    ds.set_states(cache_hidden_states(m, ds, progress=False))
    x = ds.states[0]
    crop = ds[0]["views"][0][0]
    assert crop.shape[1] == 75
    tiled = torch.cat([x, x, x], dim=1)
    assert any(torch.equal(crop, tiled[:, s:s + 75]) for s in range(tiled.shape[1] - 74))


def test_what_cannot_be_cached_is_an_error(whisper, tmp_path):
    data = make_data(tmp_path / "data", n_spk=2, n_utt=1)
    with pytest.raises(ConfigError, match="freeze_backbone: true"):
        check_cacheable(_model(whisper), "c.yaml")
    with pytest.raises(ConfigError, match="layerdrop"):
        check_cacheable(_model(whisper, freeze_backbone=True, layerdrop=0.1), "c.yaml")
    with pytest.raises(ConfigError, match="type pretrained"):
        check_cacheable(torch.nn.Linear(2, 2), "c.yaml")
    with pytest.raises(ConfigError, match="remove data.augment"):
        CachedStatesDataset(data, [ViewSpec(0.5)], augment={"prob": 0.5})
    with pytest.raises(ConfigError, match="too_short pad"):
        CachedStatesDataset(data, [ViewSpec(0.5)], too_short="pad")


def test_training_on_the_cache_leaves_the_backbone_frozen(whisper, tmp_path):
    """train_pseudo on the cache: the exported backbone is the pretrained one bit for bit, the head moved,
    and the model extracts from audio as any other."""
    from sslspk.experiment import train_from_config
    from sslspk.extraction import load_encoder

    data = make_data(tmp_path / "data", n_spk=2, n_utt=4)
    model = {"type": "pretrained", "pretrained": whisper, "embedding_dim": 16, "mhfa_heads": 4, "mhfa_compression": 8,
             "freeze_backbone": True, "head": "stats"}
    cfg = {"sample_rate": 16000, "model": model, "data": {"views": [{"seconds": 0.5, "count": 1}]},
           "loss": {"margin": 0.2, "scale": 16}, "finetune": {"cache_frozen_backbone": True},
           "train": {"epochs": 2, "batch_size": 4, "num_workers": 0, "optimizer": "adamw", "lr": 0.01}}
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    train_from_config(conf, data, tmp_path / "exp", kind="pseudo")
    built = _model(whisper, head="stats", freeze_backbone=True)
    trained = load_encoder(tmp_path / "exp")[0]
    for (name, p), q in zip(built.backbone.state_dict().items(), trained.backbone.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(built.head.fc.weight, trained.head.fc.weight)
    assert "cache_frozen_backbone: true" in (tmp_path / "exp" / "config.yaml").read_text()
    cfg["model"]["freeze_backbone"] = False
    conf.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="freeze_backbone: true"):
        train_from_config(conf, data, tmp_path / "exp2", kind="pseudo")
