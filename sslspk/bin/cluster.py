#!/usr/bin/env python3
"""Cluster utterance embeddings into pseudo speakers → a new Kaldi data dir (recipe stage 3).

Usage: cluster.py [options] --k K EMB_SCP DATA_DIR OUT_DATA_DIR

Embeddings are L2-normalised (--normalize l2; --normalize none: the raw embeddings, Euclidean
k-means and Ward AHC as the authors) and clustered with faiss k-means (GPU with --gpu auto|yes when
faiss sees one); --ahc-clusters N (or --ahc-threshold T) merges the k-means centroids with
agglomerative clustering, every utterance following its centroid; clusters smaller than
--min-cluster-size are dropped (their utterances leave OUT_DATA_DIR) or merged into the
nearest remaining cluster (--small-clusters merge). --k 0 skips k-means: AHC then runs on
the embeddings themselves (exact, O(n^2) memory: corpora of up to some 10^4 utterances; refused
before the distances are computed when the condensed distance matrix exceeds the available memory).
OUT_DATA_DIR is DATA_DIR with utt2spk and spk2utt holding pseudo speakers <prefix>NNNNN (pl00000 is
the largest cluster); clusters.json and report.md (sizes; NMI, ARI, purity, inverse purity with --ref-utt2spk) go to
--report-dir (default OUT_DATA_DIR). A complete, up-to-date OUT_DATA_DIR (same options,
the same content of its inputs: its stamp) is not redone unless --force true. The clustering options are the
fields of sslspk.cluster.config.ClusterConfig (made from them); booleans take true|false.

Example (the authors' theolepage/wavlm_ssl_sv:pseudo_labeling.py: Euclidean k-means 50k of the raw
embeddings, k-means++ seeding, 300 iterations, Ward AHC of the raw centroids to 7.5k, every cluster kept):
  cluster.py --normalize none --spherical false --init kmeans++ --niter 300 --k 50000 \\
      --ahc-clusters 7500 --ahc-linkage ward --min-cluster-size 1 \\
      exp/ssl/embeddings/train/embeddings.scp data/train data/train_pl_iter1
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The options: every field of ``sslspk.cluster.config.ClusterConfig`` (defined there once), then the inputs,
    reports and run control of this entry point."""
    from sslspk.cluster.config import add_options
    from sslspk.utils.config import parse_bool

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("emb_scp", help="embeddings of DATA_DIR's utterances (Kaldi scp)")
    p.add_argument("data_dir", help="the Kaldi data dir the embeddings were extracted from")
    p.add_argument("out_dir", help="output data dir with pseudo speakers (e.g. data/train_pl_iter1)")
    add_options(p)
    p.add_argument("--ahc-clusters-from", metavar="CLUSTERS_JSON",
                   help="AHC into as many clusters as the clustering of CLUSTERS_JSON found (e.g. iteration 1's, "
                        "cut at --ahc-threshold); not with --ahc-clusters/--ahc-threshold")
    p.add_argument("--num-threads", type=int, default=0, help="faiss/BLAS CPU threads (0 = library default)")
    p.add_argument("--ref-utt2spk", help="true speakers (utt2spk) to score the clusters against")
    p.add_argument("--report-dir", help="where clusters.json and report.md go (default OUT_DATA_DIR)")
    p.add_argument("--force", type=parse_bool, default=False, metavar="true|false",
                   help="redo even if OUT_DATA_DIR is complete and up to date (default false)")
    p.add_argument("--check-options", type=parse_bool, default=False, metavar="true|false",
                   help="only check the options (and exit 0 when they can work): steps/cluster.sh does this "
                        "before it submits the job")
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)

    import logging
    import shlex

    from sslspk.utils.errors import run_cli

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)

    def work() -> None:
        from sslspk.cluster.config import from_args
        from sslspk.cluster.pseudo_labels import cluster_stage

        cluster_stage(args.emb_scp, args.data_dir, args.out_dir, from_args(args),
                      ahc_clusters_from=args.ahc_clusters_from, num_threads=args.num_threads,
                      ref_utt2spk=args.ref_utt2spk, report_dir=args.report_dir, force=args.force,
                      check_only=args.check_options,
                      command=shlex.join(["cluster.py", *(sys.argv[1:] if argv is None else argv)]))

    run_cli(work)


if __name__ == "__main__":
    main()
