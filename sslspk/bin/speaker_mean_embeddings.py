#!/usr/bin/env python3
"""Speaker-mean embeddings (mean of length-normalised utterance embeddings per speaker).

Usage: speaker_mean_embeddings.py DATA_DIR EMB_SCP OUT_ARK OUT_SCP

Speakers come from DATA_DIR/utt2spk; keys of OUT_SCP are speaker ids.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir")
    p.add_argument("emb_scp")
    p.add_argument("out_ark")
    p.add_argument("out_scp")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from pathlib import Path

        from sslspk.data.embeddings import load_embeddings, speaker_means, write_embeddings
        from sslspk.utils.fileio import check_outputs_are_not_inputs, read_kv

        check_outputs_are_not_inputs([args.emb_scp, Path(args.data_dir) / "utt2spk"], [args.out_ark, args.out_scp])
        keys, mat = load_embeddings(args.emb_scp)
        spks, means = speaker_means(keys, mat, read_kv(Path(args.data_dir) / "utt2spk"))
        n = write_embeddings(args.out_ark, args.out_scp, zip(spks, means))
        print(f"wrote {n} speaker embeddings to {args.out_scp}")

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
