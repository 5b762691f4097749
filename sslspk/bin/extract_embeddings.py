#!/usr/bin/env python3
"""Extract utterance embeddings of a Kaldi data dir with a model dir → Kaldi ark/scp.

Usage: extract_embeddings.py [--device auto] [--batch-size N] [--max-seconds S | --segments N [--segment-seconds S]]
                             [--force] MODEL_DIR DATA_DIR OUT_ARK OUT_SCP

Each entry is one utterance's embedding; with ``--segments N``, the ``[N, D]`` matrix of the
embeddings of N evenly spaced windows of ``--segment-seconds`` (the authors' test-time segments,
theolepage/wavlm_ssl_sv:DatasetLoader.py loadWAV; shorter utterances repeated first).

An utterance with no speech (no 25 ms frame at -60 dBFS or louder: silence, dither, a noise floor)
stops the extraction naming it, with nothing written: leave it out of the data dir (e.g. with
utils/subset_data_dir.sh) or, if it holds speech, raise its level. MODEL_DIR without model.pt (an
unfinished training) is an error, unless its model has no weights to learn or it holds an
UNTRAINED file (the initial weights on purpose, as stage 6's <exp>/ssl_untrained).

OUT_SCP is written last, after the ark is complete, and OUT_SCP.inputs then records the SHA-256
of the inputs (the model's config.yaml and model.pt, the data dir's wav.scp, utt2spk and
segments), followed by the options --max-seconds or --segments and --segment-seconds when set.
The work is skipped when OUT_SCP exists and was made from the same inputs and options, so a
killed parallel extraction redoes only the unfinished jobs, and a job whose data dir, model or
options changed is redone. A job holds a lock on its output while it runs: a second process for the same
OUT_SCP (e.g. a rerun while a job of a killed run is still going) says which process holds it
and waits for it.
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
    p.add_argument("--force", action="store_true", help="re-extract even if OUT_SCP is up to date")
    args = p.parse_args(argv)

    from pathlib import Path

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.data.tables import MANAGED_FILES
        from sslspk.extraction import MODEL_FILES, SEGMENT_SECONDS, extraction_options, inputs_digest
        from sslspk.utils.errors import InputError
        from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs, dir_and_files, exclusive_lock

        check_outputs_are_not_inputs([*dir_and_files(args.model_dir, MODEL_FILES),
                                      *dir_and_files(args.data_dir, MANAGED_FILES)], [args.out_ark, args.out_scp])

        out_scp = Path(args.out_scp)
        record = Path(f"{out_scp}.inputs")
        with exclusive_lock(out_scp.with_name(f".{out_scp.name}.lock"), f"extraction into {out_scp}"):
            if args.segments < 0 or (args.segment_seconds is not None and not args.segments):
                raise InputError(f"--segments must be >= 0 and --segment-seconds needs --segments, got "
                                 f"--segments {args.segments} --segment-seconds {args.segment_seconds}")
            if args.segments and args.max_seconds is not None:
                raise InputError("--max-seconds applies to whole-utterance embeddings, not to --segments")
            for name, value in (("--max-seconds", args.max_seconds), ("--segment-seconds", args.segment_seconds)):
                if value is not None and not value > 0:
                    raise InputError(f"{name} must be > 0, got {value}")
            seconds = SEGMENT_SECONDS if args.segment_seconds is None else args.segment_seconds
            digest = inputs_digest(args.model_dir, args.data_dir,
                                   extraction_options(args.segments, seconds, args.max_seconds))
            if out_scp.exists() and not args.force:
                if record.is_file() and record.read_text().strip() == digest:
                    print(f"{out_scp} exists, made from the same model and data: nothing to do (use --force to redo)")
                    return
                print(f"{out_scp} exists but was not made from this model and data: extracting again")
            record.unlink(missing_ok=True)
            n = extract(args.model_dir, args.data_dir, args.out_ark, args.out_scp, args.device, args.batch_size,
                        args.num_threads, args.max_seconds, args.segments, seconds)
            with atomic_write(record) as f:
                f.write(f"{digest}\n")
        print(f"wrote {n} embeddings to {out_scp}")

    run_cli(work)


def extract(model_dir: str, data_dir: str, out_ark: str, out_scp: str, device: str, batch_size: int | None,
            num_threads: int, max_seconds: float | None, segments: int, segment_seconds: float) -> int:
    """Embed every utterance of ``data_dir`` (its first ``max_seconds``, or ``segments`` windows of
    ``segment_seconds``: see :func:`sslspk.extraction.embed_data_dir`) into ``out_ark``/``out_scp`` on
    ``device`` (``auto`` resolved), ``batch_size`` at a time (None: by device); returns the count."""
    import torch

    from sslspk.data.embeddings import write_embeddings
    from sslspk.extraction import default_batch_size, embed_data_dir, load_encoder
    from sslspk.utils.device import resolve_device
    from sslspk.utils.errors import InputError

    device = resolve_device(device)
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    print(f"extracting on {device}, {batch_size} utterance(s) per forward pass", flush=True)
    torch.set_num_threads(num_threads)
    model, cfg = load_encoder(model_dir, device)
    return write_embeddings(out_ark, out_scp,
                            embed_data_dir(model, data_dir, cfg.get("sample_rate", 16000), device,
                                           batch_size=batch_size,
                                           channel=(cfg.get("data") or {}).get("channel", "mix"),
                                           max_seconds=max_seconds, segments=segments,
                                           segment_seconds=segment_seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
