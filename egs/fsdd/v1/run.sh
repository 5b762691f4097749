#!/usr/bin/env bash
# egs/fsdd/v1: the Free Spoken Digit Dataset (3,000 real 8 kHz recordings of single digits by 6
# speakers), a sanity check on real speech, not a benchmark: FSDD has no held-out speakers, so the
# test trials (its trials.txt) are over the training files. Stage 0 is this recipe's; stages 1-6
# are steps/stages.sh, the body shared by every recipe. Results: RESULTS.md.
#
# Stages:
#   0  data: local/prepare_fsdd.py --corpus-dir -> data/fsdd/{train,test}, data/fsdd/test/trials;
#      local/prepare_augmentation.py -> data/augment/{noise,music,babble,rirs} (synthetic)
#   1  lists: utt2dur, validation
#   2  SSL pretraining (conf/ssl.yaml: DINO, tiny ECAPA-TDNN, no CMN)      -> exp/fsdd/ssl
#   3  embeddings of the training data -> k-means 60 -> AHC 6 -> pseudo speakers -> exp/fsdd/pl_iter1/data
#   4  training on the pseudo-labels (conf/pseudo.yaml)                    -> exp/fsdd/pl_iter1
#   5  iteration 2 of stages 3-4                                           -> exp/fsdd/pl_iter2
#   6  evaluation of every system -> exp/fsdd/results.md, exp/fsdd/iterations.md
#
# Examples:
#   ./run.sh                                    # everything, FSDD from ../shared/data/fsdd
#   ./run.sh --corpus-dir /data/fsdd/recordings # FSDD elsewhere
#   ./run.sh --ssl-conf conf/ssl_simclr_ssps.yaml --stage 2 --stop-stage 2
#   ./run.sh --ssl-conf conf/ssl_simclr_ssps_embedding.yaml --stage 2 --stop-stage 2   # sslsv's SSPS rule (RESULTS.md)
set -euo pipefail
. ./path.sh
. ./cmd.sh

# Stage 0: FSDD
corpus_dir=$SSLSPK_ROOT/../shared/data/fsdd/recordings   # the FSDD recordings/ folder (trials.txt beside it)
# Stages 1-6 (steps/stages.sh): this recipe's values
corpus=fsdd               # data/<corpus>, exp/<corpus>
num_clusters=60           # k-means 60 (about speakers x digits), then
ahc_clusters=6            # AHC of the centroids to 6 (chosen on a dev list of our own, RESULTS.md)
# Kept from before the shared defaults became the authors' (Euclidean k-means++ of raw embeddings, 300
# iterations, Ward AHC, every cluster kept), so that RESULTS.md still holds:
cluster_normalize=l2      # cluster the unit-norm embeddings (kept from before)
kmeans_spherical=true     # spherical (cosine) k-means (kept from before)
kmeans_init=random        # random rows as initial centroids (kept from before)
kmeans_iters=20           # k-means iterations (kept from before)
ahc_linkage=average       # average linkage of cosine distances (kept from before)
min_cluster_size=2        # singleton clusters dropped (kept from before)

prepare_data() {
  [ -d "$corpus_dir" ] || { echo "$0: FSDD recordings not found at $corpus_dir (--corpus-dir)" >&2; exit 1; }
  local/prepare_fsdd.py "$corpus_dir" data/fsdd
  local/prepare_augmentation.py "${tforce[@]}" --audio-dir corpus/augment data/augment
}

. steps/stages.sh
