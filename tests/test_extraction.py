"""Batched extraction: utterances of different lengths, padded with their lengths, embed as one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslspk.extraction import embed_data_dir, embed_waveforms, length_batches
from sslspk.models import build_model

SR = 16000
TINY_ECAPA = {"type": "ecapa_tdnn", "channels": 32, "mfa_channels": 96, "attention_channels": 16,
              "se_channels": 16, "embedding_dim": 24, "frontend": {"num_mel_bins": 40}}
# 4.1 s, 1.3 s, 2 s twice (an equal-length pair), 0.02 s (shorter than one 25 ms window), 0.7 s
LENGTHS = [65_600, 21_000, 32_000, 32_000, 300, 11_111]


def _wavs(lengths: list[int] = LENGTHS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def _one_by_one(model: torch.nn.Module, wavs: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return np.stack([model(torch.from_numpy(w)[None])[0].numpy() for w in wavs])


def _batched(model: torch.nn.Module, wavs: list[np.ndarray], batch_size: int = 4) -> np.ndarray:
    with torch.inference_mode():
        return np.stack(embed_waveforms(model, wavs, batch_size=batch_size))


@pytest.mark.parametrize("cfg", [
    TINY_ECAPA,
    {**TINY_ECAPA, "global_context": False, "frontend": {"type": "mfcc", "num_mel_bins": 40, "num_ceps": 20}},
    {"type": "resnet", "base_width": 4, "num_blocks": [1, 1, 1, 1], "embedding_dim": 16},
    {"type": "stats", "use_std": False},
], ids=["ecapa", "ecapa-mfcc", "resnet", "stats"])
def test_batched_equals_one_by_one(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    wavs = _wavs()
    np.testing.assert_allclose(_batched(model, wavs), _one_by_one(model, wavs), rtol=0, atol=1e-4)


def test_stats_std_over_own_frames():
    model = build_model({"type": "stats"}).eval()
    wavs = _wavs([32_000, 8_000, 16_000])
    np.testing.assert_allclose(_batched(model, wavs), _one_by_one(model, wavs), rtol=0, atol=1e-4)


def test_logmel_frames_and_batches():
    torch.manual_seed(0)
    model = build_model({**TINY_ECAPA, "frontend": {"type": "logmel", "num_mel_bins": 40}}).eval()
    lengths = [16_000, 8_000, 5_123, 600]
    assert model.frontend.frame_lengths(torch.tensor(lengths)).tolist() == [
        model.frontend(torch.zeros(1, n)).shape[1] for n in lengths]
    wavs = _wavs(lengths)
    np.testing.assert_allclose(_batched(model, wavs), _one_by_one(model, wavs), rtol=0, atol=1e-4)


def _tiny_wavlm(tmp_path, norm: str, head: str) -> torch.nn.Module:
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16,
                      max_bucket_distance=32, mask_time_prob=0.0, feat_extract_norm=norm)
    WavLMModel(cfg).save_pretrained(tmp_path)
    return build_model({"type": "wavlm", "pretrained": str(tmp_path), "embedding_dim": 16, "head_channels": 24,
                        "attention_channels": 8, "mhfa_heads": 4, "mhfa_compression": 8, "head": head,
                        "normalize": True}).eval()


@pytest.mark.parametrize("head", ["ecapa", "mhfa"])
def test_wavlm_layer_norm_batches_with_attention_mask(tmp_path, head):
    model = _tiny_wavlm(tmp_path, "layer", head)
    assert model.honours_lengths
    wavs = _wavs([24_000, 7_000, 16_000, 1_000])
    np.testing.assert_allclose(_batched(model, wavs), _one_by_one(model, wavs), rtol=0, atol=1e-4)


def test_wavlm_group_norm_batches_equal_lengths_only(tmp_path):
    model = _tiny_wavlm(tmp_path, "group", "ecapa")
    assert not model.honours_lengths
    wavs = _wavs([16_000, 8_000, 16_000, 8_000])
    calls: list[int] = []
    model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    np.testing.assert_allclose(_batched(model, wavs), _one_by_one(model, wavs), rtol=0, atol=1e-4)
    assert calls[:2] == [2, 2]  # the two equal-length pairs, each one forward pass
    with pytest.raises(ValueError, match="one at a time"):
        model(torch.zeros(2, 16_000), torch.tensor([16_000, 8_000]))


def test_length_batches():
    lengths = [5, 9, 9, 1, 7, 3]
    assert length_batches(lengths, 2, 100) == [[1, 2], [4, 0], [5, 3]]
    assert length_batches(lengths, 4, 20) == [[1, 2], [4, 0], [5, 3]]  # at most 20 padded samples
    assert length_batches(lengths, 4, 100, equal_lengths_only=True) == [[1, 2], [4], [0], [5], [3]]
    assert length_batches(lengths, 1, 100) == [[1], [2], [4], [0], [5], [3]]


def test_embed_data_dir_batched_keeps_order(tmp_path):
    import soundfile as sf

    wavs = _wavs([16_000, 4_000, 24_000, 8_000, 12_000])
    lines, spk = [], []
    for i, w in enumerate(wavs):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, w, SR, subtype="FLOAT")
        lines.append(f"u{i} {path}\n")
        spk.append(f"u{i} s{i}\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(lines))
    (data / "utt2spk").write_text("".join(spk))
    (data / "spk2utt").write_text("".join(f"s{i} u{i}\n" for i in range(len(wavs))))
    torch.manual_seed(0)
    model = build_model(TINY_ECAPA).eval()
    single = list(embed_data_dir(model, data, SR, progress=False))
    batched = list(embed_data_dir(model, data, SR, progress=False, batch_size=2))
    assert [u for u, _ in batched] == [u for u, _ in single] == [f"u{i}" for i in range(len(wavs))]
    np.testing.assert_allclose(np.stack([e for _, e in batched]), np.stack([e for _, e in single]), rtol=0, atol=1e-4)
    # shards (one DDP rank's part): every n-th utterance, together the whole data dir
    shards = [list(embed_data_dir(model, data, SR, progress=False, shard=(i, 2))) for i in range(2)]
    assert [u for u, _ in shards[0]] == ["u0", "u2", "u4"] and [u for u, _ in shards[1]] == ["u1", "u3"]
    np.testing.assert_allclose(np.stack([e for _, e in shards[1]]), np.stack([e for _, e in single[1::2]]),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="shard 2 of 2"):
        next(embed_data_dir(model, data, SR, progress=False, shard=(2, 2)))


@pytest.mark.parametrize("cuda,batch_size,want", [(True, None, ("cuda", 64)), (False, None, ("cpu", 1)),
                                                  (True, 8, ("cuda", 8))])
def test_device_auto_and_batch_size_by_device(monkeypatch, cuda, batch_size, want):
    """--device auto takes the GPU when torch sees one; the default batch size follows the device (an explicit
    one wins), and both reach the extraction."""
    import sslspk.extraction as extraction

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    seen = {}

    def fake_embed_data_dir(model, data_dir, sample_rate, device, batch_size, channel, **options):
        seen.update(device=device, batch_size=batch_size, options=options)
        return iter([])

    monkeypatch.setattr(extraction, "load_encoder", lambda model_dir, device: (seen.setdefault("model", device), {}))
    monkeypatch.setattr(extraction, "embed_data_dir", fake_embed_data_dir)
    monkeypatch.setattr("sslspk.data.embeddings.write_embeddings", lambda ark, scp, items: len(list(items)))
    extraction.extract("m", "d", "e.ark", "e.scp", "auto", batch_size, 1, None, 3, 2.5)
    assert (seen["device"], seen["batch_size"]) == want and seen["model"] == want[0]
    assert seen["options"] == {"max_seconds": None, "segments": 3, "segment_seconds": 2.5}


def test_no_gpu_for_device_cuda_is_an_input_error(monkeypatch):
    from sslspk.utils.device import resolve_device
    from sslspk.utils.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="torch sees no CUDA device"):
        resolve_device("cuda")


def test_evaluate_passes_the_device_to_extraction(tmp_path):
    """steps/evaluate.sh --device reaches extract_embeddings.py (recorded by a stand-in on PATH)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    fake = tmp_path / "bin" / "extract_embeddings.py"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.yaml").write_text("model: {type: stats}\n")
    for name in ("train", "test"):
        d = tmp_path / name
        d.mkdir()
        (d / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
        (d / "utt2spk").write_text("u1 s1\nu2 s2\n")
    env = {**os.environ, "SSLSPK_PYTHON": sys.executable,
           "PATH": os.pathsep.join([str(fake.parent), str(Path(sys.executable).parent), os.environ["PATH"]])}
    r = subprocess.run(["steps/evaluate.sh", "--device", "cuda", "--nj", "1", str(tmp_path / "exp"),
                        str(tmp_path / "train"), str(tmp_path / "test"), str(tmp_path / "test" / "trials")],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert (tmp_path / "calls").read_text().split()[:2] == ["--device", "cuda"], r.stdout + r.stderr
