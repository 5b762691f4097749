#!/usr/bin/env bash
# egs/TEMPLATE/v1: the skeleton of a new recipe (docs/adapting.md). Copy this directory to
# egs/<corpus>/v1 (`cp -r egs/TEMPLATE/v1 egs/<corpus>/v1`: its links reach the shared utils/,
# steps/ and local/ at the same depth), write stage 0 below, size conf/*.yaml. Stages 1-6 are
# steps/stages.sh, the body shared by every recipe, and work on any Kaldi data dirs.
#
# Stages:
#   0  data: prepare_data below must write <train-data>, <test-data> and <trials> (and the
#      augmentation sources that conf/*.yaml name)
#   1  lists: utt2dur, validation of the data dirs
#   2  SSL pretraining of the speaker encoder (conf/ssl.yaml)            -> exp/<corpus>/ssl
#   3  embeddings of the training data -> k-means/AHC -> pseudo speakers -> exp/<corpus>/pl_iter1/data
#   4  training on the pseudo-labels (conf/pseudo.yaml: AAM-softmax, DLG-LC) -> exp/<corpus>/pl_iter1
#   5  iterations 2..num_iters of stages 3-4
#   6  evaluation of every system -> exp/<corpus>/results.md
#
# Example:
#   ./run.sh --corpus mycorpus --train-data /path/train --test-data /path/test --trials /path/trials --stage 1
set -euo pipefail
. ./path.sh
. ./cmd.sh

corpus=mycorpus           # data/<corpus>, exp/<corpus>
num_clusters=60           # k-means clusters (about 5-10x the number of speakers you expect)
ahc_clusters=0            # AHC of the centroids down to this many clusters (0: none)
# The shared defaults are the authors' (theolepage/wavlm_ssl_sv:pseudo_labeling.py); this skeleton keeps
# the small-corpus values it had before (./run.sh --help lists the options):
cluster_normalize=l2      # cluster the unit-norm embeddings (kept from before)
kmeans_spherical=true     # spherical (cosine) k-means (kept from before)
kmeans_init=random        # random rows as initial centroids (kept from before)
kmeans_iters=20           # k-means iterations (kept from before)
min_cluster_size=2        # singleton clusters dropped (kept from before)

prepare_data() {  # stage 0: replace with your corpus preparation, e.g. local/prepare_<corpus>.py ... data/$corpus
  echo "$0: write stage 0 (prepare_data in run.sh: see docs/adapting.md); with data dirs already" \
       "made, pass --train-data/--test-data/--trials and --stage 1" >&2
  exit 1
}

. steps/stages.sh
