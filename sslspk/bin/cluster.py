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
marker newer than the inputs) is not redone unless --force.

Example (the authors' theolepage/wavlm_ssl_sv:pseudo_labeling.py: Euclidean k-means 50k of the raw
embeddings, k-means++ seeding, 300 iterations, Ward AHC of the raw centroids to 7.5k, every cluster kept):
  cluster.py --normalize none --spherical false --init kmeans++ --niter 300 --k 50000 \\
      --ahc-clusters 7500 --ahc-linkage ward --min-cluster-size 1 \\
      exp/ssl/embeddings/train/embeddings.scp data/train data/train_pl_iter1
"""

from __future__ import annotations

import argparse
import os
import sys


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("emb_scp", help="embeddings of DATA_DIR's utterances (Kaldi scp)")
    p.add_argument("data_dir", help="the Kaldi data dir the embeddings were extracted from")
    p.add_argument("out_dir", help="output data dir with pseudo speakers (e.g. data/train_pl_iter1)")
    p.add_argument("--standardize", type=_bool, default=False,
                   help="subtract each dimension's mean and divide by its std over the data set before the L2 "
                        "normalisation (true|false, default false; e.g. for statistics embeddings, whose "
                        "dimensions have very different scales)")
    p.add_argument("--normalize", choices=["l2", "none"], default="l2",
                   help="l2: cluster unit-norm embeddings (cosine geometry; AHC on unit-norm centroids); none: "
                        "the raw embeddings and centroids (Euclidean geometry, the authors'; default l2)")
    g = p.add_argument_group("k-means (faiss)")
    g.add_argument("--k", type=int, required=True,
                   help="number of k-means clusters; 0: no k-means, AHC of the embeddings (needs --ahc-*)")
    g.add_argument("--niter", type=int, default=20,
                   help="k-means iterations at most: faiss stops earlier once the objective is unchanged (default 20)")
    g.add_argument("--nredo", type=int, default=1, help="k-means runs, the best objective is kept (default 1)")
    g.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    g.add_argument("--spherical", type=_bool, default=True,
                   help="normalise centroids each iteration: cosine k-means (true|false, default true; false: "
                        "Euclidean k-means)")
    g.add_argument("--max-points-per-centroid", type=int, default=256,
                   help="faiss trains on at most k times this many sampled rows (default 256)")
    g.add_argument("--init", choices=["random", "kmeans++", "afkmc2"], default="random",
                   help="centroid initialisation: random rows, kmeans++ (faiss's D^2 seeding) or afkmc2 "
                        "(default random)")
    g.add_argument("--gpu", choices=["auto", "yes", "no"], default="auto",
                   help="faiss GPU k-means: auto = when faiss sees a GPU (default auto)")
    g.add_argument("--num-threads", type=int, default=0, help="faiss/BLAS CPU threads (0 = library default)")
    g.add_argument("--batch-size", type=int, default=65536, help="rows per assignment batch (default 65536)")
    g = p.add_argument_group("agglomerative clustering of the centroids")
    a = g.add_mutually_exclusive_group()
    a.add_argument("--ahc-clusters", type=int, help="cut the AHC tree into this many clusters")
    a.add_argument("--ahc-threshold", type=float, help="merge centroids closer than this distance")
    g.add_argument("--ahc-linkage", choices=["average", "complete", "single", "ward"], default="average",
                   help="average/complete/single use cosine distance, ward euclidean (of unit-norm centroids with "
                        "--normalize l2, of the raw ones with none; default average)")
    g = p.add_argument_group("output")
    g.add_argument("--min-cluster-size", type=int, default=1, help="smaller clusters are dropped or merged (default 1)")
    g.add_argument("--small-clusters", choices=["drop", "merge"], default="drop",
                   help="drop the utterances of small clusters or merge them into the nearest big cluster")
    g.add_argument("--prefix", default="pl", help="pseudo speaker id prefix (default pl)")
    g.add_argument("--ref-utt2spk", help="true speakers (utt2spk) to score the clusters against")
    g.add_argument("--report-dir", help="where clusters.json and report.md go (default OUT_DATA_DIR)")
    g.add_argument("--force", action="store_true", help="redo even if OUT_DATA_DIR is complete")
    args = p.parse_args(argv)

    import logging
    import shlex

    from sslspk.utils.errors import run_cli

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)

    def work() -> None:
        from sslspk.cluster.pseudo_labels import ClusterConfig, make_pseudo_labels
        from sslspk.data.tables import MANAGED_FILES
        from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files

        check_outputs_are_not_inputs([args.emb_scp, *dir_and_files(args.data_dir, MANAGED_FILES), args.ref_utt2spk],
                                     [*dir_and_files(args.out_dir, MANAGED_FILES),
                                      *(os.path.join(args.report_dir or args.out_dir, name)
                                        for name in ("report.md", "clusters.json"))])

        if args.num_threads > 0:
            import faiss

            faiss.omp_set_num_threads(args.num_threads)
        cfg = ClusterConfig(
            k=args.k, standardize=args.standardize, normalize=args.normalize, niter=args.niter, seed=args.seed,
            spherical=args.spherical, nredo=args.nredo, max_points_per_centroid=args.max_points_per_centroid,
            init=args.init, gpu=args.gpu,
            ahc_clusters=args.ahc_clusters, ahc_threshold=args.ahc_threshold, ahc_linkage=args.ahc_linkage,
            min_cluster_size=args.min_cluster_size, small_clusters=args.small_clusters, prefix=args.prefix,
            batch=args.batch_size)
        command = shlex.join(["cluster.py", *(sys.argv[1:] if argv is None else argv)])
        s = make_pseudo_labels(args.emb_scp, args.data_dir, args.out_dir, cfg, ref_utt2spk=args.ref_utt2spk,
                               report_dir=args.report_dir, force=args.force, command=command)
        if s is None:
            print(f"{args.out_dir} is complete and up to date: nothing to do (use --force to redo)")
            return
        steps = ([f"k-means {s['num_kmeans_clusters']}"] if args.k else []) + (
            [f"AHC {s['num_ahc_clusters']}"] if s["num_ahc_clusters"] is not None else [])
        msg = (f"{s['num_utts_out']} of {s['num_utts_in']} utts in {s['num_clusters']} pseudo speakers "
               f"({', '.join(steps)})")
        if "reference" in s and "final" in s["reference"]:
            m = s["reference"]["final"]
            msg += (f"; vs reference: NMI {m['nmi']:.4f} ARI {m['ari']:.4f} purity {m['purity']:.4f} "
                    f"inverse purity {m['inverse_purity']:.4f}")
        print(f"wrote {args.out_dir}: {msg}")

    run_cli(work)


if __name__ == "__main__":
    main()
