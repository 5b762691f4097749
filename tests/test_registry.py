"""Model types and SSL methods are found by their classes' ``type_name`` (sslspk.utils.registry)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sslspk.models import build_model
from sslspk.models.base import MODELS, Model
from sslspk.ssl import build_ssl_task, parse_ssl_config
from sslspk.ssl.base import SSL_METHODS, SSLTask
from sslspk.train.dataset import ViewSpec
from sslspk.utils.config import ConfigError

TINY_ECAPA = {"type": "ecapa_tdnn", "channels": 16, "mfa_channels": 48, "attention_channels": 8,
              "se_channels": 8, "embedding_dim": 12, "frontend": {"num_mel_bins": 24}}


def _tiny_model_configs(tmp_path) -> dict[str, dict]:
    """One small ``model:`` block per model type (a new type must add one here)."""
    from transformers import WavLMConfig, WavLMModel

    WavLMModel(WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16,
                           max_bucket_distance=32)).save_pretrained(tmp_path)
    return {
        "ecapa_tdnn": TINY_ECAPA,
        "resnet": {"type": "resnet", "base_width": 4, "num_blocks": [1, 1, 1, 1], "embedding_dim": 10,
                   "frontend": {"num_mel_bins": 24}},
        "stats": {"type": "stats", "frontend": {"num_mel_bins": 24}},
        "pretrained": {"type": "pretrained", "pretrained": str(tmp_path), "embedding_dim": 8, "mhfa_heads": 2,
                       "mhfa_compression": 4},
    }


def test_every_model_type_builds_and_embeds(tmp_path):
    configs = _tiny_model_configs(tmp_path)
    configs["wavlm"] = {**configs["pretrained"], "type": "wavlm"}   # the earlier name of pretrained
    assert sorted(MODELS.names()) == sorted(configs)
    wav = torch.randn(2, 8000)
    for name, cfg in configs.items():
        model = build_model(cfg).eval()
        assert type(model) is MODELS.get(name) and name in (model.type_name, *getattr(model, "type_aliases", ()))
        with torch.no_grad():
            assert model(wav).shape == (2, model.embedding_dim)


SSL_OPTIONS = {"dino": {"out_dim": 6, "hidden": 8, "bottleneck": 4},
               "moco": {"queue_size": 8, "projector_hidden": 8, "projector_dim": 4, "shuffle_bn": False},
               "simclr": {"projector_hidden": 8, "projector_dim": 4}}


def test_every_ssl_method_builds():
    assert sorted(SSL_METHODS.names()) == sorted(SSL_OPTIONS)
    dataset = SimpleNamespace(views=[ViewSpec(0.5, 1), ViewSpec(0.5, 1)])
    for name, options in SSL_OPTIONS.items():
        task = build_ssl_task({"method": name, **options}, build_model(TINY_ECAPA), dataset, total_epochs=2)
        assert type(task) is SSL_METHODS.get(name) and task.type_name == name
        assert task.cfg == parse_ssl_config({"method": name, **options})[1]


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"model.type: unknown model type 'nope'; "
                                          r"available: ecapa_tdnn, resnet, stats, pretrained, wavlm$"):
        build_model({"type": "nope"})
    with pytest.raises(ConfigError, match=r"ssl.method must be one of dino, moco, simclr, got 'byol'$"):
        parse_ssl_config({"method": "byol"})
    with pytest.raises(ConfigError, match=r"got None$"):
        parse_ssl_config({})


def test_a_class_registers_by_defining_type_name():
    class Mean(Model):
        type_name = "test_mean"
        embedding_dim = 1

        @classmethod
        def from_config(cls, cfg):
            return cls()

        def forward(self, wav, lengths=None):
            return wav.mean(1, keepdim=True)

    class Twin(SSLTask):
        type_name = "test_twin"
        type_aliases = ("test_twin_old",)
        config_cls = dict

    class Abstract(SSLTask):   # no type_name: a base for others, not a method
        pass

    try:
        assert isinstance(build_model({"type": "test_mean"}), Mean)
        assert SSL_METHODS.get("test_twin") is SSL_METHODS.get("test_twin_old") is Twin
        assert "" not in SSL_METHODS.names() and SSL_METHODS.names()[-2:] == ["test_twin", "test_twin_old"]
        assert "test_mean" in str(pytest.raises(ConfigError, build_model, {"type": "other"}).value)
        with pytest.raises(TypeError, match="type_name 'test_mean' is already"):
            type("Other", (Model,), {"type_name": "test_mean"})
    finally:
        MODELS.remove("test_mean")
        SSL_METHODS.remove("test_twin")
        SSL_METHODS.remove("test_twin_old")
    assert "test_mean" not in MODELS.names()


def test_an_alias_is_the_class_it_names_everywhere():
    """An earlier name (``type_aliases``, here ``wavlm`` of the pretrained encoder) goes through the registry
    only: with_sample_rate asks the class it names for its fixed rate, as build_model builds that class."""
    from sslspk.models import with_sample_rate
    from sslspk.models.wavlm import PretrainedEncoder

    assert MODELS.find("wavlm") is MODELS.find("pretrained") is PretrainedEncoder and MODELS.find("nope") is None
    for name in ("pretrained", "wavlm"):
        with pytest.raises(ConfigError, match=f"^x: sample_rate 8000: a model of type {name} takes 16000 Hz audio$"):
            with_sample_rate({"type": name}, 8000, "x")
        assert with_sample_rate({"type": name}, 16000) == {"type": name}   # no front-end of ours added

    class Narrowband(Model):
        type_name = "test_narrowband"
        type_aliases = ("test_narrowband_old",)
        fixed_sample_rate = 8000

    try:
        with pytest.raises(ConfigError, match="a model of type test_narrowband_old takes 8000 Hz audio"):
            with_sample_rate({"type": "test_narrowband_old"}, 16000)
        assert with_sample_rate({"type": "test_narrowband_old"}, 8000) == {"type": "test_narrowband_old"}
    finally:
        MODELS.remove("test_narrowband")
        MODELS.remove("test_narrowband_old")
    # A type with a front-end (or an unknown one, which build_model names) takes the config's rate.
    for name in ("ecapa_tdnn", "nope"):
        assert with_sample_rate({"type": name}, 8000) == {"type": name, "frontend": {"sample_rate": 8000}}
