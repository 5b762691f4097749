#!/usr/bin/env python3
"""Import embeddings saved as torch.save({audio path: tensor}) into Kaldi ark/scp keyed by a data dir's utterances.

Usage: import_embeddings.py [--allow-missing] EMBEDDINGS.pt DATA_DIR OUT_DIR

The format of the DINO embeddings published by theolepage/wavlm_ssl_sv (README.md, step 1):
a Dict[str, torch.Tensor] whose keys are paths such as id00012/21Uxsk56VDQ/00001.wav and whose
values are [D] or [1, D] tensors. A key matches the utterance whose id, or whose wav.scp audio
file, ends in the same <speaker>/<video>/<file> (any extension: m4a converted to flac still matches).
Writes OUT_DIR/embeddings.ark and OUT_DIR/embeddings.scp in DATA_DIR's utterance order, the input
of cluster.py. Keys matching no utterance are reported and ignored; an utterance without an
embedding is an error unless --allow-missing (then it is left out, and clustering needs a data dir
of the matched utterances: utils/subset_data_dir.sh --utt-list).

Example (stage 3 from the authors' embeddings; steps/stages.sh --init-embeddings does this):
  import_embeddings.py dino_vox2_embeddings.pt data/vox2_dev_train exp/voxceleb/init_embeddings/vox2_dev_train
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("embeddings", help="torch.save file of a dict {relative audio path: [D] or [1, D] tensor}")
    p.add_argument("data_dir", help="the Kaldi data dir whose utterances the keys name")
    p.add_argument("out_dir", help="where embeddings.ark and embeddings.scp go")
    p.add_argument("--allow-missing", action="store_true",
                   help="leave out utterances without an embedding instead of failing")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.data.torch_embeddings import import_embeddings_file

        import_embeddings_file(args.embeddings, args.data_dir, args.out_dir, allow_missing=args.allow_missing)

    run_cli(work)


if __name__ == "__main__":
    main()
