#!/usr/bin/env python3
"""Extract utterance embeddings of a Kaldi data dir with a model dir → Kaldi ark/scp.

Usage: extract_embeddings.py [--device auto] [--batch-size N] [--max-seconds S | --segments N [--segment-seconds S]]
                             [--force true] MODEL_DIR DATA_DIR OUT_ARK OUT_SCP

Each entry is one utterance's embedding; with ``--segments N``, the ``[N, D]`` matrix of the
embeddings of N evenly spaced windows of ``--segment-seconds`` (the authors' test-time segments,
theolepage/wavlm_ssl_sv:DatasetLoader.py loadWAV; shorter utterances repeated first).

An utterance with no speech (no 25 ms frame at -60 dBFS or louder: silence, dither, a noise floor)
stops the extraction naming it, with nothing written: leave it out of the data dir (e.g. with
utils/subset_data_dir.sh) or, if it holds speech, raise its level. MODEL_DIR without model.pt (an
unfinished training) is an error, unless its model has no weights to learn or it holds an
UNTRAINED file (the initial weights on purpose, as stage 6's <exp>/ssl_untrained).

OUT_SCP is written last, after the ark is complete, and its stamp OUT_SCP.stamp (sslspk/utils/stamp.py)
then records the SHA-256 of the inputs (the model's config.yaml and model.pt, the data dir's wav.scp,
utt2spk and segments) and the options --max-seconds or --segments and --segment-seconds when set.
The work is skipped when OUT_SCP exists and was made from the same inputs and options (an OUT_SCP
made before stamps: when its old OUT_SCP.inputs record matches; it is then stamped), so a
killed parallel extraction redoes only the unfinished jobs, and a job whose data dir, model or
options changed is redone. A job holds a lock on its output while it runs: a second process for the same
OUT_SCP (e.g. a rerun while a job of a killed run is still going) says which process holds it
and waits for it.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    from sslspk.utils.config import parse_bool

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="exp dir with config.yaml (and model.pt for trained models)")
    p.add_argument("data_dir", help="Kaldi data dir (wav.scp, utt2spk, optional segments)")
    p.add_argument("out_ark")
    p.add_argument("out_scp")
    p.add_argument("--device", default="auto", help="auto (cuda when torch sees a GPU, else cpu), cpu or cuda")
    p.add_argument("--num-threads", type=int, default=1, help="torch intra-op threads (1 per parallel job)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="utterances per forward pass, sorted by length and padded (same embeddings); "
                        "default 1 on the CPU, where one at a time is fastest (docs/benchmarks.md), 64 on a GPU")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="embed only the first S seconds of each utterance (default: all of it)")
    p.add_argument("--segments", type=int, default=0,
                   help="write [N, D] matrices: embeddings of N evenly spaced windows per utterance (default 0: "
                        "one whole-utterance embedding)")
    p.add_argument("--segment-seconds", type=float, default=None,
                   help="with --segments: window length (default 4.015 = 400 frames x 160 + 240 samples at 16 kHz, "
                        "theolepage/wavlm_ssl_sv:DatasetLoader.py loadWAV)")
    p.add_argument("--force", type=parse_bool, default=False, metavar="true|false",
                   help="re-extract even if OUT_SCP is up to date (default false)")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.extraction import extract_to_scp

        extract_to_scp(args.model_dir, args.data_dir, args.out_ark, args.out_scp, device=args.device,
                       batch_size=args.batch_size, num_threads=args.num_threads, max_seconds=args.max_seconds,
                       segments=args.segments, segment_seconds=args.segment_seconds, force=args.force)

    run_cli(work)


if __name__ == "__main__":
    main(sys.argv[1:])
