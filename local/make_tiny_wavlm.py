#!/usr/bin/env python3
"""Write a randomly initialised 2-layer WavLM in ``save_pretrained`` format (smoke tests, --tiny).

Usage: local/make_tiny_wavlm.py [--seed 0] [--backbone wavlm|hubert|wav2vec2|whisper] <out-dir>

The model has the shapes of a real WavLM scaled down (hidden 32, 2 layers, a 3-layer CNN with
stride 320: 50 frames/s at 16 kHz), so the recipe's from_pretrained path, the layer weighting
and the MHFA head run unchanged on a CPU in seconds. It has learned nothing. ``--backbone`` writes a
HuBERT or wav2vec 2.0 of the same shapes instead, or a 2-layer Whisper (hidden 32, 80 mel bins, the
real 1,500-row positional table: 50 frames/s, 30 s) with its feature extractor's preprocessor_config.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", choices=("wavlm", "hubert", "wav2vec2", "whisper"), default="wavlm")
    args = p.parse_args(argv)

    import torch
    import transformers

    torch.manual_seed(args.seed)
    extractor = None
    if args.backbone == "whisper":
        model = transformers.WhisperModel(transformers.WhisperConfig(
            d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=32,
            vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1))
        extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    else:
        common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),
                      num_feat_extract_layers=3, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                      mask_time_prob=0.0)
        if args.backbone == "wavlm":
            model = transformers.WavLMModel(transformers.WavLMConfig(**common, num_buckets=16,
                                                                     max_bucket_distance=32))
        elif args.backbone == "hubert":
            model = transformers.HubertModel(transformers.HubertConfig(**common))
        else:
            model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**common))
    out = Path(args.out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if extractor is not None:
        extractor.save_pretrained(tmp)
    tmp.rename(out)  # a killed write leaves only the .tmp dir behind
    print(f"{out}: tiny random {args.backbone} ({sum(p.numel() for p in model.parameters())} parameters)")


if __name__ == "__main__":
    main(sys.argv[1:])
