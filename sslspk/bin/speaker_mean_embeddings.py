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
        from sslspk.data.embeddings import speaker_mean_embeddings_file

        speaker_mean_embeddings_file(args.data_dir, args.emb_scp, args.out_ark, args.out_scp)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
