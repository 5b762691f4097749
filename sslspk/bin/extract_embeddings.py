#!/usr/bin/env python3
"""Extract utterance embeddings of a Kaldi data dir with a model dir → Kaldi ark/scp.

Usage: extract_embeddings.py [--device cpu] [--batch-size 1] [--force] MODEL_DIR DATA_DIR OUT_ARK OUT_SCP

Skips the work when OUT_SCP already exists (it is written last, after the ark is complete),
so a killed parallel extraction redoes only the unfinished jobs.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="exp dir with config.yaml (and model.pt for trained models)")
    p.add_argument("data_dir", help="Kaldi data dir (wav.scp, utt2spk, optional segments)")
    p.add_argument("out_ark")
    p.add_argument("out_scp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-threads", type=int, default=1, help="torch intra-op threads (1 per parallel job)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="utterances per forward pass, sorted by length and padded (same embeddings); "
                        "for GPUs: on CPU one at a time is fastest (docs/benchmarks.md)")
    p.add_argument("--force", action="store_true", help="re-extract even if OUT_SCP exists")
    args = p.parse_args(argv)

    from pathlib import Path

    from sslspk.utils.errors import run_cli

    def work() -> None:
        if Path(args.out_scp).exists() and not args.force:
            print(f"{args.out_scp} exists: nothing to do (use --force to redo)")
            return
        import torch

        from sslspk.data.embeddings import write_embeddings
        from sslspk.extraction import embed_data_dir, load_encoder

        torch.set_num_threads(args.num_threads)
        model, cfg = load_encoder(args.model_dir, args.device)
        n = write_embeddings(args.out_ark, args.out_scp,
                             embed_data_dir(model, args.data_dir, cfg.get("sample_rate", 16000), args.device,
                                            batch_size=args.batch_size,
                                            channel=(cfg.get("data") or {}).get("channel", "mix")))
        print(f"wrote {n} embeddings to {args.out_scp}")

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
