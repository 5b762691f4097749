#!/usr/bin/env python3
"""Write a randomly initialised 2-layer WavLM in ``save_pretrained`` format (smoke tests, --tiny).

Usage: local/make_tiny_wavlm.py [--seed 0] <out-dir>

The model has the shapes of a real WavLM scaled down (hidden 32, 2 layers, a 3-layer CNN with
stride 320: 50 frames/s at 16 kHz), so the recipe's from_pretrained path, the layer weighting
and the MHFA head run unchanged on a CPU in seconds. It has learned nothing.
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
    args = p.parse_args(argv)

    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(args.seed)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),
                      num_feat_extract_layers=3, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                      num_buckets=16, max_bucket_distance=32, mask_time_prob=0.0)
    model = WavLMModel(cfg)
    out = Path(args.out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tmp.rename(out)  # a killed write leaves only the .tmp dir behind
    print(f"{out}: tiny random WavLM ({sum(p.numel() for p in model.parameters())} parameters)")


if __name__ == "__main__":
    main(sys.argv[1:])
