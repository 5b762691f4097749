#!/usr/bin/env bash
# egs/mini/v1: the embedded default recipe of sslspk (what `make demo` runs). Stage 0 generates a
# small synthetic multi-speaker corpus offline (speech-like audio from a source-filter model, a
# random channel per recording) and its augmentation sets; stages 1-6 are steps/stages.sh, the
# body shared by every recipe. The whole run takes 10-14 minutes on 2 CPUs (RESULTS.md).
#
# Stages:
#   0  data: local/make_mini_corpus.py -> corpus/mini, data/mini/{train,test}, data/mini/test/trials;
#      local/prepare_augmentation.py -> data/augment/{noise,music,babble,rirs} (synthetic)
#   1  lists: utt2dur, validation of the data dirs
#   2  SSL pretraining (conf/ssl.yaml: SimCLR + SSPS, tiny ECAPA-TDNN)     -> exp/mini/ssl
#   3  embeddings of the training data -> AHC of the utterances -> pseudo speakers -> exp/mini/pl_iter1/data
#   4  training on the pseudo-labels (conf/pseudo.yaml: AAM-softmax, DLG-LC) -> exp/mini/pl_iter1
#   5  iteration 2 of stages 3-4                                           -> exp/mini/pl_iter2
#   6  evaluation of every system -> exp/mini/results.md, exp/mini/iterations.md
#
# Examples:
#   ./run.sh                                           # everything
#   ./run.sh --stage 3                                 # resume from clustering
#   ./run.sh --stage 4 --stop-stage 4 --oracle true    # + the supervised reference (true labels)
#   ./run.sh --corpus mydata --train-data /path/train --test-data /path/test \
#            --trials /path/test/trials --stage 1      # your own Kaldi data dirs, the mini configs
set -euo pipefail
. ./path.sh
. ./cmd.sh

# Stage 0: the generated corpus
num_train_speakers=40     # mini corpus size
num_test_speakers=30      # 30 x 16 test utterances: 20,000 trials, all 3,600 target pairs
utts_per_speaker=16
num_trials=20000
# Stages 1-6 (steps/stages.sh): this recipe's values
corpus=mini               # data/<corpus>, exp/<corpus>
num_clusters=0            # no k-means: AHC of the utterances themselves (640 of them)
ahc_clusters=60           # AHC down to 60 clusters (the corpus has 40 training speakers)
# Kept from before the shared defaults became the authors' (Ward of raw embeddings, every cluster kept):
cluster_normalize=l2      # AHC of the unit-norm embeddings (kept from before)
ahc_linkage=average       # average linkage of cosine distances (kept from before)
min_cluster_size=2        # singleton clusters dropped (kept from before)

prepare_data() {
  [ "$corpus" = mini ] || { echo "$0: stage 0 generates only the mini corpus; for '$corpus' pass" \
    "--train-data/--test-data/--trials and --stage 1" >&2; exit 1; }
  local/make_mini_corpus.py "${tforce[@]}" --num-train-speakers $num_train_speakers \
    --num-test-speakers $num_test_speakers --utts-per-speaker $utts_per_speaker --num-trials $num_trials \
    corpus/mini data/mini
  local/prepare_augmentation.py "${tforce[@]}" --audio-dir corpus/augment data/augment
}

. steps/stages.sh
