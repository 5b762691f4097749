"""WavLM encoder: tiny randomly initialised WavLM saved with save_pretrained and loaded back
through ``build_model`` (the same ``from_pretrained`` path as ``microsoft/wavlm-base-plus``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslspk.losses import AAMSoftmax
from sslspk.models import build_model
from sslspk.models.wavlm import LayerWeighting, WavLMEncoder
from sslspk.utils.config import ConfigError

SR = 16000


def _save_tiny_wavlm(path, **overrides) -> str:
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    cfg = WavLMConfig(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                         "conv_dim": (32, 32), "conv_kernel": (10, 3), "conv_stride": (5, 2),
                         "num_feat_extract_layers": 2, "num_conv_pos_embeddings": 16,
                         "num_conv_pos_embedding_groups": 2, "num_buckets": 16, "max_bucket_distance": 32,
                         "layerdrop": 0.1, "mask_time_prob": 0.0, **overrides})
    WavLMModel(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory) -> str:
    return _save_tiny_wavlm(tmp_path_factory.mktemp("tiny_wavlm"))


def _model(path: str, seed: int = 0, **kw) -> WavLMEncoder:
    torch.manual_seed(seed)
    cfg = {"type": "wavlm", "pretrained": path, "embedding_dim": 16, "head_channels": 24,
           "attention_channels": 8, "mhfa_heads": 4, "mhfa_compression": 8, **kw}
    return build_model(cfg)


def _cnn_params(m: WavLMEncoder) -> list[torch.nn.Parameter]:
    return list(m.backbone.feature_extractor.parameters())


@pytest.mark.parametrize("head", ["ecapa", "mhfa"])
@pytest.mark.parametrize("weighting", ["weighted_sum", "average", "last"])
def test_shapes_heads_and_weightings(tiny_wavlm, head, weighting):
    m = _model(tiny_wavlm, head=head, layer_weighting=weighting)
    assert isinstance(m, WavLMEncoder) and m.embedding_dim == 16
    assert len(m.hidden_states(torch.randn(2, 4000))) == 3        # projected CNN output + 2 layers
    m.train()
    out = m(torch.randn(3, 4000))
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    out.square().sum().backward()
    head_params = list(m.head_parameters())
    assert all(p.grad is not None for p in head_params if p.requires_grad)
    n_weights = sum(p.numel() for n, p in m.head.named_parameters() if "logits" in n)
    assert n_weights == (0 if weighting != "weighted_sum" else 3 * (2 if head == "mhfa" else 1))
    ids = {id(p) for p in m.backbone_parameters()} | {id(p) for p in head_params}
    assert ids.isdisjoint(id(p) for p in _cnn_params(m))                  # freeze_cnn (the default)
    assert ids | {id(p) for p in _cnn_params(m)} == {id(p) for p in m.parameters()}


def test_layer_weighting_values():
    states = [torch.full((1, 2, 3), float(i)) for i in range(3)]
    assert LayerWeighting(3, "last")(states).eq(2).all()
    assert LayerWeighting(3, "average")(states).eq(1).all()
    lw = LayerWeighting(3, "weighted_sum")
    with torch.no_grad():
        lw.logits.copy_(torch.tensor([0.0, 0.0, math.log(2.0)]))       # weights 1/4, 1/4, 1/2
    assert torch.allclose(lw(states), torch.full((1, 2, 3), 0.25 + 1.0))
    assert torch.allclose(lw.weights(), torch.tensor([0.25, 0.25, 0.5]))


def test_frozen_cnn_builds_no_graph(tiny_wavlm):
    m = _model(tiny_wavlm).train()                                    # freeze_cnn: true by default
    assert not any(p.requires_grad for p in _cnn_params(m))
    seen = {}
    m.backbone.feature_extractor.register_forward_hook(lambda mod, i, o: seen.update(grad=o.requires_grad))
    m(torch.randn(2, 4000)).sum().backward()
    assert seen["grad"] is False                                      # no graph through the CNN
    assert all(p.grad is None for p in _cnn_params(m))
    assert m.backbone.feature_projection.projection.weight.grad is not None
    m.set_backbone_trainable(False)
    m.set_backbone_trainable(True)                                    # the CNN stays frozen
    assert not any(p.requires_grad for p in _cnn_params(m))
    m = _model(tiny_wavlm, freeze_cnn=False).train()
    m(torch.randn(2, 4000)).sum().backward()
    assert all(p.grad is not None for p in _cnn_params(m))


def test_frozen_cnn_survives_adamw_step_bit_for_bit(tiny_wavlm):
    m = _model(tiny_wavlm, head="mhfa", layerdrop=0.0).train()      # every layer gets a gradient
    backbone, head = m.backbone_parameters(), list(m.head_parameters())
    opt = torch.optim.AdamW([{"params": backbone, "lr": 1e-2}, {"params": head, "lr": 1e-2}], weight_decay=0.1)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt.isdisjoint(id(p) for p in _cnn_params(m))
    cnn0 = [p.detach().clone() for p in _cnn_params(m)]
    layers0 = [p.detach().clone() for p in m.backbone.encoder.layers.parameters()]
    m(torch.randn(2, 4000)).square().sum().backward()
    opt.step()
    assert all(torch.equal(p, p0) for p, p0 in zip(_cnn_params(m), cnn0))
    assert all(not torch.equal(p, p0) for p, p0 in zip(m.backbone.encoder.layers.parameters(), layers0))


def test_layer_parameter_lists(tiny_wavlm):
    m = _model(tiny_wavlm, mask_time_prob=0.1)
    layers = m.backbone_layer_parameters()
    assert len(layers) == 2
    for layer, ps in zip(m.backbone.encoder.layers, layers):         # bottom layer first
        assert [id(p) for p in ps] == [id(p) for p in layer.parameters()]
    names = {id(p): n for n, p in m.backbone.named_parameters()}
    other = sorted(names[id(p)] for p in m.backbone_other_parameters())
    assert other == sorted(n for n in names.values() if not n.startswith(("encoder.layers.", "feature_extractor.")))
    assert "masked_spec_embed" in other and "encoder.pos_conv_embed.conv.bias" in other
    assert "feature_projection.projection.weight" in other and "encoder.layer_norm.weight" in other
    together = [id(p) for ps in layers for p in ps] + [id(p) for p in m.backbone_other_parameters()]
    assert sorted(together) == sorted(id(p) for p in m.backbone_parameters())
    unfrozen = _model(tiny_wavlm, freeze_cnn=False)
    assert {id(p) for p in unfrozen.backbone.feature_extractor.parameters()} <= {
        id(p) for p in unfrozen.backbone_other_parameters()}


def test_masking_options(tmp_path):
    no_dropout = _save_tiny_wavlm(tmp_path, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                                  feat_proj_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05)  # the checkpoint masks
    wav = torch.randn(2, 8000)
    off = _model(no_dropout, head="mhfa").train()                     # the default: no masking
    assert (off.backbone.config.mask_time_prob, off.backbone.config.mask_feature_prob) == (0.0, 0.0)
    torch.testing.assert_close(off(wav), off(wav), rtol=0, atol=0)    # training mode, yet deterministic
    on = _model(no_dropout, head="mhfa", mask_time_prob=0.5, mask_feature_prob=0.3)
    assert (on.backbone.config.mask_time_prob, on.backbone.config.mask_feature_prob) == (0.5, 0.3)
    on.load_state_dict(off.state_dict(), strict=False)                # + the masking vector
    assert not torch.allclose(on.train()(wav), off(wav))              # masking on: the features change
    torch.testing.assert_close(on.eval()(wav), off.eval()(wav))       # and never in evaluation


def test_layerdrop_skips_layers_but_keeps_every_hidden_state(tmp_path):
    no_dropout = _save_tiny_wavlm(tmp_path, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                                  feat_proj_dropout=0.0, layerdrop=0.1)
    assert _model(no_dropout).layerdrop == 0.1                        # null: the checkpoint's config.json
    m = _model(no_dropout, layerdrop=0.999999, head="mhfa")
    assert m.backbone.config.layerdrop == 0.0                         # transformers' own layer drop is off
    wav = torch.randn(2, 4000)
    kept = m.eval().hidden_states(wav)
    assert len(kept) == 3 and not torch.equal(kept[2], kept[1])       # evaluation: no layer skipped
    dropped = m.train().hidden_states(wav)
    assert len(dropped) == 3
    torch.testing.assert_close(dropped[1], kept[1], rtol=1e-5, atol=1e-5)   # the first layer is never skipped
    assert torch.equal(dropped[2], dropped[1])                        # the second is: its output is its input
    m(wav).sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in m.backbone.encoder.layers[1].parameters())
    assert m.backbone.encoder.layers[0].feed_forward.output_dense.weight.grad is not None


def test_backbone_freezing_and_unfreezing(tiny_wavlm):
    m = _model(tiny_wavlm, head="ecapa", freeze_backbone=True, freeze_cnn=False, layerdrop=0.0).train()
    assert not any(p.requires_grad for p in m.backbone_parameters())
    assert all(p.requires_grad for p in m.head_parameters())
    assert not any(h.requires_grad for h in m.hidden_states(torch.randn(2, 4000)))   # no backbone graph
    emb = m(torch.randn(2, 4000))
    assert emb.requires_grad
    emb.sum().backward()
    assert all(p.grad is None for p in m.backbone_parameters())
    assert m.head.weighting.logits.grad is not None
    m.zero_grad()
    m.set_backbone_trainable(True)
    assert m.backbone_trainable and all(p.requires_grad for p in m.backbone.parameters())
    m(torch.randn(2, 4000)).square().sum().backward()
    assert all(p.grad is not None for p in _cnn_params(m))
    assert m.backbone.encoder.layers[1].feed_forward.output_dense.weight.grad is not None
    # param groups for a lower backbone learning rate
    opt = torch.optim.AdamW([{"params": list(m.head_parameters()), "lr": 1e-3},
                             {"params": list(m.backbone_parameters()), "lr": 1e-5}])
    assert len(opt.param_groups) == 2


def test_state_dict_round_trip(tiny_wavlm):
    cfg = {"head": "mhfa", "layer_weighting": "weighted_sum"}
    a = _model(tiny_wavlm, seed=0, **cfg)
    with torch.no_grad():
        for p in a.parameters():                                      # a "fine-tuned" state
            p.add_(0.01 * torch.randn_like(p))
    state = {k: v.clone() for k, v in a.state_dict().items()}
    b = _model(tiny_wavlm, seed=1, **cfg)
    wav = torch.randn(2, 4000)
    a.eval(), b.eval()
    assert not torch.allclose(a(wav), b(wav))
    b.load_state_dict(state)
    torch.testing.assert_close(b(wav), a(wav))


def test_normalisation_option(tiny_wavlm):
    m = _model(tiny_wavlm, normalize=True)
    wav = 0.1 * torch.randn(2, 4000) + 0.5
    x = m.prepare(wav)
    assert torch.allclose(x.mean(1), torch.zeros(2), atol=1e-5) and torch.allclose(x.std(1), torch.ones(2), atol=1e-3)
    assert torch.equal(_model(tiny_wavlm).prepare(wav), wav)          # default: as wavlm-base-plus (off)


def test_config_errors(tiny_wavlm, tmp_path):
    with pytest.raises(ConfigError, match="valid keys:.*layer_weighting"):
        _model(tiny_wavlm, bogus=1)
    with pytest.raises(ConfigError, match="ecapa, mhfa"):
        _model(tiny_wavlm, head="xvector")
    with pytest.raises(ConfigError, match="weighted_sum, average, last"):
        _model(tiny_wavlm, layer_weighting="max")
    with pytest.raises(ConfigError, match="mask_time_prob"):
        _model(tiny_wavlm, mask_time_prob=1.0)
    with pytest.raises(ConfigError, match="layerdrop"):
        _model(tiny_wavlm, layerdrop=-0.1)
    with pytest.raises(ConfigError, match="valid keys"):              # the old gradient scale is gone
        _model(tiny_wavlm, cnn_grad_mult=0.1)
    with pytest.raises(ConfigError, match="pretrained"):
        _model(str(tmp_path / "missing"))


def _tone_set(n_per: int, seed: int, seconds: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """3 'speakers': harmonic tones at different F0s with random phase, level and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wavs, labels = [], []
    for spk, f0 in enumerate((150.0, 330.0, 700.0)):
        for _ in range(n_per):
            f = f0 * rng.uniform(0.95, 1.05)
            x = sum(np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
            x = rng.uniform(0.2, 0.5) * x + 0.1 * rng.standard_normal(t.size)
            wavs.append(x)
            labels.append(spk)
    return torch.tensor(np.stack(wavs), dtype=torch.float32), torch.tensor(labels)


def _separation(m: WavLMEncoder, wavs: torch.Tensor, labels: torch.Tensor) -> float:
    m.eval()
    with torch.no_grad():
        e = torch.nn.functional.normalize(m(wavs), dim=1)
    sim = e @ e.T
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool)
    return float(sim[same & off].mean() - sim[~same].mean())


def test_aam_training_lowers_loss_and_separates_speakers(tiny_wavlm):
    torch.manual_seed(0)
    m = _model(tiny_wavlm, head="ecapa")
    aam = AAMSoftmax(m.embedding_dim, 3, margin=0.2, scale=30.0)
    wavs, labels = _tone_set(6, seed=0)
    test_wavs, test_labels = _tone_set(4, seed=1)
    before = _separation(m, test_wavs, test_labels)
    opt = torch.optim.Adam([{"params": list(m.head_parameters()) + list(aam.parameters()), "lr": 3e-3},
                            {"params": list(m.backbone_parameters()), "lr": 3e-4}])
    losses = []
    for step in range(12):
        m.train()
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(step))[:12]
        loss, _ = aam(m(wavs[perm]), labels[perm])
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(loss.mean().item())
    after = _separation(m, test_wavs, test_labels)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert after > before + 0.1 and after > 0.3
