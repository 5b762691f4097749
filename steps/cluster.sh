#!/usr/bin/env bash
# Cluster the embeddings of a training data dir into pseudo speaker labels (recipe stage 3).
#
# Usage: steps/cluster.sh [options] <embeddings.scp> <data-dir> <out-data-dir>
#  e.g.: steps/cluster.sh --k 50000 --ahc-clusters 7500 --min-cluster-size 5 \
#          exp/ssl/embeddings/train/embeddings.scp data/train data/train_pl_iter1
#
# Embeddings are L2-normalised (--normalize l2; none: raw, as the authors; after a per-dimension mean/std
# normalisation with --standardize true) and clustered with faiss k-means (--k; GPU when faiss sees one and
# --gpu is auto|yes); --ahc-clusters N (or --ahc-threshold T) then merges the k-means centroids with
# agglomerative clustering (--k 0: no k-means, AHC of the embeddings themselves, for small
# corpora such as egs/mini). <out-data-dir> is <data-dir> with utt2spk/spk2utt holding pseudo
# speakers pl00000, pl00001, ... (by decreasing size); utterances of clusters smaller than
# --min-cluster-size are removed (--small-clusters drop) or moved to the nearest big cluster
# (--small-clusters merge). clusters.json and report.md (sizes; NMI, ARI, purity and inverse purity
# against --ref-utt2spk) go to --report-dir (default <out-data-dir>); the log to <report-dir>/log/.
# A complete, up-to-date output (same options, newer than its inputs) is not redone (--force true redoes it).
set -euo pipefail

k=                      # number of k-means clusters (required); 0: no k-means, AHC of the embeddings
standardize=false       # per-dimension mean/std normalisation of the embeddings before the L2 one (true|false)
normalize=l2            # l2: cluster unit-norm embeddings and centroids; none: the raw ones (Euclidean)
niter=20                # k-means iterations (at most: faiss stops once the objective is unchanged)
nredo=1                 # k-means runs (the best is kept)
seed=1234               # random seed
spherical=true          # cosine k-means: normalise the centroids (true|false; false: Euclidean k-means)
max_points_per_centroid=256  # faiss trains on at most k * this many sampled embeddings
init=random             # centroid initialisation: random|kmeans++|afkmc2
gpu=auto                # faiss GPU: auto|yes|no
num_threads=0           # CPU threads for faiss (0 = all)
ahc_clusters=           # AHC of the centroids down to this many clusters (empty = no AHC)
ahc_threshold=          # ... or merge centroids closer than this (cosine) distance
ahc_linkage=average     # average|complete|single (cosine) or ward (euclidean; of unit-norm centroids unless --normalize none)
min_cluster_size=1      # clusters with fewer utterances are dropped or merged
small_clusters=drop     # drop|merge
prefix=pl               # pseudo speaker id prefix
ref_utt2spk=            # true speakers to score the clusters against (e.g. data/train/utt2spk)
report_dir=             # where clusters.json and report.md go (default <out-data-dir>)
cmd="utils/run.py"      # job runner (see cmd.sh): local or Slurm
force=false             # redo even if complete (true|false)

. utils/parse_options.sh

if [ $# -ne 3 ] || [ -z "$k" ]; then
  echo "Usage: $0 --k K [--ahc-clusters N] [--min-cluster-size M] [--ref-utt2spk FILE] <embeddings.scp> <data-dir> <out-data-dir>" >&2
  exit 1
fi
scp=$1; data=$2; dir=$3
report_dir=${report_dir:-$dir}

for f in "$scp" "$data/utt2spk" "$data/wav.scp" ${ref_utt2spk:+"$ref_utt2spk"}; do
  [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }
done

opts=(--k "$k" --standardize "$standardize" --normalize "$normalize" --niter "$niter" --nredo "$nredo" --seed "$seed" --spherical "$spherical"
      --max-points-per-centroid "$max_points_per_centroid" --init "$init" --gpu "$gpu"
      --num-threads "$num_threads" --ahc-linkage "$ahc_linkage" --min-cluster-size "$min_cluster_size"
      --small-clusters "$small_clusters" --prefix "$prefix" --report-dir "$report_dir")
[ -z "$ahc_clusters" ] || opts+=(--ahc-clusters "$ahc_clusters")
[ -z "$ahc_threshold" ] || opts+=(--ahc-threshold "$ahc_threshold")
[ -z "$ref_utt2spk" ] || opts+=(--ref-utt2spk "$ref_utt2spk")
[ "$force" != true ] || opts+=(--force)

mkdir -p "$report_dir/log"
echo "$0: clustering $(wc -l < "$scp") embeddings of $data into $dir (log: $report_dir/log/cluster.log)"
if ! $cmd "$report_dir/log/cluster.log" cluster.py "${opts[@]}" "$scp" "$data" "$dir"; then
  grep -v "^#" "$report_dir/log/cluster.log" | tail -n 5 >&2
  exit 1
fi
grep -v "^#" "$report_dir/log/cluster.log" | tail -n 1
