"""``local/convert_wavlm_ssl_sv_checkpoint.py``: a checkpoint in the key format of
theolepage/wavlm_ssl_sv (SpeakerNet.state_dict(): fairseq WavLM names under ``__S__.model.``, the
MHFA back-end under ``__S__.backend.``, the AAM weights ``__L__.weight``) written from a tiny WavLM
with known weights, converted, loaded with SpeakerEmbedder.from_pretrained and checked against the
authors' MHFA formula applied to transformers' hidden states of the same weights."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sslspk.api import SpeakerEmbedder

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "local" / "convert_wavlm_ssl_sv_checkpoint.py"
HEADS, COMPRESSION, N_OUT, N_CLASSES = 4, 8, 16, 10


def _load():
    spec = importlib.util.spec_from_file_location("convert_wavlm_ssl_sv_checkpoint", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


conv = _load()

# transformers name -> fairseq name of models/Baseline/WavLM.py, written out for the test
_TO_FAIRSEQ = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2."),
    (r"masked_spec_embed", "mask_emb"),
    (r"feature_projection\.layer_norm\.", "layer_norm."),
    (r"feature_projection\.projection\.", "post_extract_proj."),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const", r"encoder.layers.\1.self_attn.grep_a"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.", r"encoder.layers.\1.self_attn.grep_linear."),
    (r"encoder\.layers\.(\d+)\.attention\.rel_attn_embed\.", r"encoder.layers.\1.self_attn.relative_attention_bias."),
    (r"encoder\.layers\.(\d+)\.attention\.(k|q|v|out)_proj\.", r"encoder.layers.\1.self_attn.\2_proj."),
    (r"encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
]


def _fairseq(name: str) -> str:
    for pattern, repl in _TO_FAIRSEQ:
        new, n = re.subn("^" + pattern, repl, name)
        if n:
            return new
    raise AssertionError(f"no fairseq name for {name}")


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    """(pretrained dir, fine-tuned transformers WavLM, back-end tensors, their checkpoint state dict)."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16,
                      max_bucket_distance=32, layerdrop=0.0, mask_time_prob=0.05)
    pretrained = tmp_path_factory.mktemp("wavlm")
    WavLMModel(cfg).save_pretrained(pretrained)
    tuned = WavLMModel.from_pretrained(pretrained).eval()              # "fine-tuned": every weight moved
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hidden = cfg.hidden_size
    backend = {"weights_k": torch.randn(3), "weights_v": torch.randn(3),
               "cmp_linear_k.weight": torch.randn(COMPRESSION, hidden) / 5,
               "cmp_linear_k.bias": torch.randn(COMPRESSION),
               "cmp_linear_v.weight": torch.randn(COMPRESSION, hidden) / 5,
               "cmp_linear_v.bias": torch.randn(COMPRESSION),
               "att_head.weight": torch.randn(HEADS, COMPRESSION), "att_head.bias": torch.randn(HEADS),
               "pooling_fc.weight": torch.randn(N_OUT, HEADS * COMPRESSION) / 10, "pooling_fc.bias": torch.randn(N_OUT)}
    state = {"__S__.model." + _fairseq(k): v.clone() for k, v in tuned.state_dict().items()}
    assert "__S__.model.mask_emb" in state                            # the authors' WavLM always has one
    state.update({"__S__.backend." + k: v for k, v in backend.items()})
    state["__L__.weight"] = torch.randn(N_CLASSES, N_OUT)
    return str(pretrained), tuned, backend, state


def _authors_embedding(tuned, backend: dict, wav: torch.Tensor) -> torch.Tensor:
    """models/Baseline/Spk_Encoder.py's MHFA on the 13 (here 3) hidden states, written from its formula."""
    with torch.no_grad():
        x = torch.stack(tuned(wav, output_hidden_states=True).hidden_states, dim=-1)   # [B, T, D, L]
        k = (x * torch.softmax(backend["weights_k"], 0)).sum(-1) @ backend["cmp_linear_k.weight"].T
        v = (x * torch.softmax(backend["weights_v"], 0)).sum(-1) @ backend["cmp_linear_v.weight"].T
        k, v = k + backend["cmp_linear_k.bias"], v + backend["cmp_linear_v.bias"]
        att = torch.softmax(k @ backend["att_head.weight"].T + backend["att_head.bias"], dim=1)   # over time
        pooled = torch.stack([(att[:, :, h:h + 1] * v).sum(1) for h in range(HEADS)], dim=1)  # [B, H, C]
        return pooled.reshape(len(wav), -1) @ backend["pooling_fc.weight"].T + backend["pooling_fc.bias"]


@pytest.mark.parametrize("prefix", ["", "module."])
def test_converted_checkpoint_embeds_as_the_authors_model(authors, tmp_path, prefix):
    pretrained, tuned, backend, state = authors
    ckpt = tmp_path / "model000000005.model"
    torch.save({prefix + k: v for k, v in state.items()}, ckpt)
    out = conv.convert(ckpt, pretrained, tmp_path / "exp")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.pt"]
    emb = SpeakerEmbedder.from_pretrained(out)
    model = emb.model.backbone.config
    assert (model.mask_time_prob, model.mask_feature_prob) == (0.0, 0.0)
    assert emb.model.cfg.mhfa_heads == HEADS and emb.model.embedding_dim == N_OUT
    wav = 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    got = emb.embed(wav)
    want = _authors_embedding(tuned, backend, torch.from_numpy(wav)[None])[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    fresh = _authors_embedding(type(tuned).from_pretrained(pretrained).eval(), backend, torch.from_numpy(wav)[None])
    assert not np.allclose(got, fresh[0].numpy(), atol=1e-3)          # the WavLM weights came from the checkpoint


def test_missing_unknown_and_misshapen_keys_fail_by_name(authors, tmp_path):
    pretrained, _, _, state = authors
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "__S__.model.encoder.layers.1.fc2.weight"},
                    r"missing: backbone\.encoder\.layers\.1\.feed_forward\.output_dense\.weight"),
        "unknown": ({**state, "__S__.model.encoder.layers.0.self_attn.foo.weight": torch.zeros(1)},
                    r"unknown keys.*__S__\.model\.encoder\.layers\.0\.self_attn\.foo\.weight"),
        "stray": ({**state, "__X__.bias": torch.zeros(1)}, r"__X__\.bias"),
        "backend": ({k: v for k, v in state.items() if k != "__S__.backend.att_head.weight"},
                    r"__S__\.backend\.att_head\.weight"),
        "layers": ({**state, "__S__.model.encoder.layers.2.fc1.bias": torch.zeros(64)},
                   r"model lacks: backbone\.encoder\.layers\.2\.feed_forward\.intermediate_dense\.bias"),
        "shape": ({**state, "__S__.model.post_extract_proj.bias": torch.zeros(7)},
                  r"backbone\.feature_projection\.projection\.bias \(7,\) != \(32,\)"),
    }
    for name, (bad, message) in cases.items():
        ckpt = tmp_path / f"{name}.model"
        torch.save(bad, ckpt)
        with pytest.raises(conv.ConversionError, match=message):
            conv.convert(ckpt, pretrained, tmp_path / name)
        assert not (tmp_path / name / "model.pt").exists()


def test_cli_reports_a_bad_checkpoint(authors, tmp_path, capsys):
    pretrained, _, _, state = authors
    ckpt = tmp_path / "bad.model"
    torch.save({k: v for k, v in state.items() if k != "__L__.weight"} | {"__L__.bias": torch.zeros(1)}, ckpt)
    with pytest.raises(SystemExit, match=r"__L__\.bias"):
        conv.main([str(ckpt), pretrained, str(tmp_path / "exp")])
