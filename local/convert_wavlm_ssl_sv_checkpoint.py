#!/usr/bin/env python3
"""Convert a checkpoint of the authors' code (theolepage/wavlm_ssl_sv) into an sslspk experiment dir.

Usage: local/convert_wavlm_ssl_sv_checkpoint.py CKPT.pt PRETRAINED_DIR OUT_EXP_DIR

CKPT.pt is what theolepage/wavlm_ssl_sv:SpeakerNet.py ``ModelTrainer.saveParameters`` writes (e.g.
their published ``wavlm_mhfa_dlg_lc_lmft`` model): the state dict of ``SpeakerNet``, keys

* ``__S__.model.<name>``: the WavLM of models/Baseline/WavLM.py (fairseq names),
* ``__S__.backend.<name>``: the MHFA back-end of models/Baseline/Spk_Encoder.py,
* ``__L__.weight``: the AAM-softmax class weights of loss/aamsoftmax.py,

optionally all behind a ``module.`` prefix (their ``loadParameters`` accepts both). PRETRAINED_DIR
is a ``transformers`` WavLM (``save_pretrained`` dir or hub name) with the same architecture: it
gives the config; every weight comes from CKPT.pt. The WavLM names are mapped onto
``transformers.WavLMModel``'s (the correspondence of transformers' own WavLM conversion), the
back-end onto sslspk's MHFA head (``sslspk.models.wavlm.MhfaHead``). Every key of CKPT.pt must be
used and every weight of the sslspk model given: otherwise the conversion fails listing the keys.
Two keys are read and left out on purpose: ``__L__.weight`` (the classifier, not part of the
speaker embedding) and ``__S__.model.mask_emb`` (the masking vector; the authors' fine-tuning never
masks, and neither does the converted model).

OUT_EXP_DIR gets ``config.yaml`` (``sample_rate`` + the ``model:`` block) and ``model.pt``: an
experiment dir as training writes it, for ``SpeakerEmbedder.from_pretrained``, extraction and
``steps/evaluate.sh`` (e.g. ``run.sh --stage 6 --eval-systems exp/authors_lmft``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

WAVLM_PREFIX = "__S__.model."
BACKEND_PREFIX = "__S__.backend."
CLASSIFIER_KEYS = ("__L__.weight",)
UNUSED_WAVLM_KEYS = ("mask_emb",)

# models/Baseline/Spk_Encoder.py MHFA parameter -> sslspk MhfaHead parameter
BACKEND_NAMES = {
    "weights_k": "key_weighting.logits",
    "weights_v": "value_weighting.logits",
    "cmp_linear_k.weight": "key_proj.weight",
    "cmp_linear_k.bias": "key_proj.bias",
    "cmp_linear_v.weight": "value_proj.weight",
    "cmp_linear_v.bias": "value_proj.bias",
    "att_head.weight": "attention.weight",
    "att_head.bias": "attention.bias",
    "pooling_fc.weight": "fc.weight",
    "pooling_fc.bias": "fc.bias",
}

# Inside encoder.layers.<i>: fairseq module -> transformers module
LAYER_MODULES = {
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj",
    "self_attn.grep_linear": "attention.gru_rel_pos_linear",
    "self_attn.relative_attention_bias": "attention.rel_attn_embed",
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}


class ConversionError(ValueError):
    """The checkpoint does not match the expected key format or the target architecture."""


def _hf_pos_conv_name(param: str, weight_norm_style: str) -> str:
    """``weight_g``/``weight_v``/``bias`` of the weight-normed positional convolution in the installed
    transformers' spelling (``parametrizations.weight.original0/1`` or ``weight_g/weight_v``)."""
    if weight_norm_style == "parametrizations" and param in ("weight_g", "weight_v"):
        return {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}[param]
    return param


def wavlm_name(name: str, weight_norm_style: str) -> str | None:
    """``transformers.WavLMModel`` name of a fairseq WavLM parameter (``None``: not a known name)."""
    m = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", name)
    if m:
        return f"feature_extractor.conv_layers.{m[1]}.conv.{m[2]}"
    # the norm of a CNN block: GroupNorm at index 2 (extractor_mode default, first block only) or the
    # LayerNorm inside Sequential(TransposeLast, LayerNorm, TransposeLast) at index 2 (layer_norm mode)
    m = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.2(?:\.1)?\.(weight|bias)", name)
    if m:
        return f"feature_extractor.conv_layers.{m[1]}.layer_norm.{m[2]}"
    m = re.fullmatch(r"(layer_norm|post_extract_proj)\.(weight|bias)", name)
    if m:
        return f"feature_projection.{'layer_norm' if m[1] == 'layer_norm' else 'projection'}.{m[2]}"
    m = re.fullmatch(r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)", name)
    if m:
        return f"encoder.pos_conv_embed.conv.{_hf_pos_conv_name(m[1], weight_norm_style)}"
    m = re.fullmatch(r"encoder\.layer_norm\.(weight|bias)", name)
    if m:
        return name
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.grep_a", name)
    if m:
        return f"encoder.layers.{m[1]}.attention.gru_rel_pos_const"
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", name)
    if m and m[2] in LAYER_MODULES:
        return f"encoder.layers.{m[1]}.{LAYER_MODULES[m[2]]}.{m[3]}"
    return None


def split_checkpoint(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The WavLM, back-end and classifier parts of a SpeakerNet state dict (prefixes removed)."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    wavlm, backend, classifier, unknown = {}, {}, {}, []
    for key, value in state.items():
        if key.startswith(WAVLM_PREFIX):
            wavlm[key[len(WAVLM_PREFIX):]] = value
        elif key.startswith(BACKEND_PREFIX):
            backend[key[len(BACKEND_PREFIX):]] = value
        elif key in CLASSIFIER_KEYS:
            classifier[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"keys outside {WAVLM_PREFIX}*, {BACKEND_PREFIX}* and {', '.join(CLASSIFIER_KEYS)}: "
                              f"{', '.join(sorted(unknown))}")
    return wavlm, backend, classifier


def model_config(backend: dict[str, Any], pretrained: str) -> dict[str, Any]:
    """The sslspk ``model:`` block of the authors' model, its sizes read from the back-end's weights."""
    missing = sorted(set(BACKEND_NAMES) - set(backend))
    if missing:
        raise ConversionError(f"back-end keys missing: {', '.join(BACKEND_PREFIX + k for k in missing)}")
    heads, compression = backend["att_head.weight"].shape
    return {"type": "wavlm", "pretrained": pretrained, "normalize": False, "head": "mhfa",
            "mhfa_heads": int(heads), "mhfa_compression": int(compression), "layer_weighting": "weighted_sum",
            "embedding_dim": int(backend["pooling_fc.weight"].shape[0]), "freeze_cnn": True,
            "mask_time_prob": 0.0, "mask_feature_prob": 0.0}


def convert_state(state: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """sslspk encoder state dict (``backbone.*``, ``head.*``) from a SpeakerNet state dict, checked
    against ``target`` (the converted model's own state dict: the same keys and shapes)."""
    wavlm, backend, _ = split_checkpoint(state)
    style = "parametrizations" if any(".parametrizations." in k for k in target) else "weight_g"
    out: dict[str, Any] = {}
    unknown = []
    for name, value in wavlm.items():
        if name in UNUSED_WAVLM_KEYS:
            continue
        hf = wavlm_name(name, style)
        if hf is None:
            unknown.append(WAVLM_PREFIX + name)
        else:
            out["backbone." + hf] = value
    for name, value in backend.items():
        if name in BACKEND_NAMES:
            out["head." + BACKEND_NAMES[name]] = value
        else:
            unknown.append(BACKEND_PREFIX + name)
    if unknown:
        raise ConversionError(f"unknown keys in the checkpoint: {', '.join(sorted(unknown))}")
    missing = sorted(set(target) - set(out))
    extra = sorted(set(out) - set(target))
    if missing or extra:
        raise ConversionError("the checkpoint does not match the architecture of the pretrained WavLM: "
                              + "; ".join(s for s in (f"weights missing: {', '.join(missing)}" if missing else "",
                                                      f"weights the model lacks: {', '.join(extra)}" if extra else "")
                                          if s))
    wrong = [f"{k} {tuple(out[k].shape)} != {tuple(target[k].shape)}" for k in target
             if tuple(out[k].shape) != tuple(target[k].shape)]
    if wrong:
        raise ConversionError(f"shape mismatches (checkpoint != model): {'; '.join(wrong)}")
    return {k: out[k].to(target[k].dtype) for k in target}


def convert(ckpt: str | Path, pretrained: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/{model.pt,config.yaml}`` from the authors' checkpoint; returns ``out_dir``."""
    import torch

    from sslspk.models import build_model
    from sslspk.utils.config import save_yaml
    from sslspk.utils.fileio import atomic_write

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise ConversionError(f"{ckpt}: cannot read a state dict: {e}") from e
    if not isinstance(state, dict):
        raise ConversionError(f"{ckpt}: expected a state dict, got {type(state).__name__}")
    if Path(pretrained).exists():
        pretrained = str(Path(pretrained).resolve())
    cfg = {"sample_rate": 16000, "model": model_config(split_checkpoint(state)[1], pretrained)}
    model = build_model(cfg["model"])
    converted = convert_state(state, model.state_dict())
    model.load_state_dict(converted)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "model.pt", "wb") as f:
        torch.save({"model": converted, "converted_from": str(Path(ckpt).resolve())}, f)
    save_yaml(cfg, out_dir / "config.yaml")  # last: a dir with a config but no model.pt would load untrained
    return out_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="the authors' SpeakerNet state dict (torch.save of SpeakerNet.state_dict())")
    p.add_argument("pretrained", help="transformers WavLM (save_pretrained dir or hub name) giving the architecture")
    p.add_argument("out_dir", help="experiment dir to write (config.yaml + model.pt)")
    args = p.parse_args(argv)
    from sslspk.utils.config import ConfigError

    try:
        out = convert(args.ckpt, args.pretrained, args.out_dir)
    except (ConversionError, ConfigError) as e:
        sys.exit(f"{Path(sys.argv[0]).name}: {e}")
    print(f"{out}: converted {args.ckpt}")


if __name__ == "__main__":
    main(sys.argv[1:])
