#!/usr/bin/env bash
# egs/voxceleb/v1: the full recipe. Self-supervised speaker verification trained on VoxCeleb2 dev
# without labels, evaluated on VoxCeleb1-O/E/H (published and measured figures: RESULTS.md).
# Stage 0 is this recipe's; stages 1-6 are steps/stages.sh, the body shared by every recipe.
#
# Stages:
#   0  data: [--download true: local/download_voxceleb.sh] -> local/prepare_voxceleb.py ->
#      data/{vox2_dev,vox1_test,vox1_all} (VoxCeleb2's m4a decoded once to --m4a files), trial lists
#      data/vox1_test/trials/vox1_O, data/vox1_all/trials/vox1_{E,H} (Kaldi format); utterances
#      shorter than --min-dur removed -> data/vox2_dev_train; local/prepare_augmentation.py:
#      MUSAN and RIRS_NOISES -> data/augment/{noise,music,babble,rirs}
#   1  lists: utt2dur, validation
#   2  SSL pretraining (--ssl-conf: DINO ECAPA-TDNN 1024 by default)      -> <exp>/ssl
#   3  embeddings of the training data (or the authors' file of them: --init-embeddings FILE.pt) -> k-means
#      (--num-clusters) -> AHC (--ahc-clusters) -> pseudo speakers <exp>/pl_iter1/data
#   4  training on the pseudo-labels (--pseudo-conf: WavLM Base+ by default) -> <exp>/pl_iter1
#   5  iterations 2..num_iters of stages 3-4, each fine-tuning the pretrained WavLM again (--retrain-from
#      initial) on its new pseudo-labels; then large-margin fine-tuning of the last iteration's model
#      on its pseudo-labels (--lmft-conf: margin 0.5, 6-s crops, 5 epochs)   -> <exp>/lmft
#   6  evaluation of every system on Vox1-O (cosine, AS-norm, calibration) and Vox1-E/H (cosine,
#      AS-norm), each also with the authors' protocol (rows *_seg: the utterance's first 43.75 s, as
#      in every row, + 15 windows of 4.015 s, theolepage/wavlm_ssl_sv:SpeakerNet.py evaluateFromList) -> <exp>/results.md,
#      <exp>/iterations.md, DET plots <exp>/det_{test,vox1_E,vox1_H}.png
#
# Examples:
#   ./run.sh --raw-dir /data/voxceleb_raw --download true      # everything, downloading first
#   ./run.sh --raw-dir /data/voxceleb_raw --stage 1            # archives already unpacked there
#   ./run.sh --stage 4 --pseudo-conf conf/pseudo_ecapa.yaml --init-from-ssl true --retrain-from previous \
#     --lmft-conf '' --exp exp/ecapa_pl      # ECAPA iterations chained as before, no WavLM LMFT step
#   ./run.sh --ssl-conf conf/ssl_simclr_ssps.yaml --exp exp/simclr_ssps --stage 2
#   ./run.sh --stage 2 --ssl-conf conf/ssl_cluster_dino.yaml --train-data exp/voxceleb/pl_iter1/data \
#            --exp exp/voxceleb_cadino                         # Cluster-Aware DINO on a first run's clusters
#   ./run.sh --raw-dir /tmp/fake_vox --tiny true --nj 1        # all stages at toy size (a smoke test)
#   # the authors' published final model (theolepage/wavlm_ssl_sv README: wavlm_mhfa_dlg_lc_lmft) scored
#   # in stage 6 beside ours: convert their SpeakerNet state dict into an exp dir, then evaluate it
#   local/convert_wavlm_ssl_sv_checkpoint.py /path/to/wavlm_mhfa_dlg_lc_lmft/model0000000NN.model \
#     microsoft/wavlm-base-plus exp/authors_lmft
#   ./run.sh --stage 6 --eval-systems "exp/authors_lmft exp/voxceleb/pl_iter5"
#   # Validation during training (train.average_best: model.pt = the checkpoints with the best dev EER) needs
#   # speakers the model never trains on: a held-out slice of VoxCeleb2 dev speakers, never Vox1-O (the test
#   # list, which would then choose the model). Not the default (the recipe trains as the authors do, no dev split):
#   cut -d' ' -f2 data/vox2_dev_train/utt2spk | sort -u | head -n 100 > data/vox2_heldout.spk   # 100 speakers
#   cut -d' ' -f2 data/vox2_dev_train/utt2spk | sort -u | tail -n +101 > data/vox2_train_minus_heldout.spk
#   utils/subset_data_dir.sh --spk-list data/vox2_heldout.spk data/vox2_dev_train data/vox2_heldout
#   utils/subset_data_dir.sh --spk-list data/vox2_train_minus_heldout.spk data/vox2_dev_train data/vox2_train_minus
#   utils/make_trials.py --num-target 5000 --num-nontarget 5000 data/vox2_heldout/utt2spk data/vox2_heldout/trials
#   ./run.sh --stage 1 --train-data data/vox2_train_minus --exp exp/voxceleb_validated --pseudo-tag validated \
#     --pseudo-args "--set validation.data=data/vox2_heldout --set validation.trials=data/vox2_heldout/trials \
#                    --set validation.every_epochs=1 --set train.average_best=3"
# Every configuration value at paper scale is in conf/ and here, with its source in a comment.
set -euo pipefail
. ./path.sh
. ./cmd.sh

# Stage 0: VoxCeleb1/2, MUSAN, RIRS_NOISES
raw_dir=raw               # downloaded/unpacked corpora: voxceleb1/ voxceleb2/ musan/ RIRS_NOISES/
download=false            # stage 0 downloads into --raw-dir first (needs VoxCeleb URLs: see local/download_voxceleb.sh)
m4a=flac                  # stage 0: VoxCeleb2 m4a decoded once to flac|wav files in <raw-dir>/voxceleb2_<m4a>, resumable; pipe: ffmpeg at every read
min_dur=2.0               # stage 0 drops shorter training utterances (chosen: the 2 s local crops need them)
tiny=false                # true: smoke-test sizes, not results (conf/tiny/*.yaml with a random tiny WavLM, 4->3 clusters, cohort 8)
# Stages 1-6 (steps/stages.sh): this recipe's values
corpus=voxceleb           # exp/<corpus>
nj=16                     # parallel jobs (extraction, ffmpeg, utt2dur)
train_data=data/vox2_dev_train
test_data=data/vox1_all   # embeddings of all of VoxCeleb1 serve the three trial lists
trials=data/vox1_test/trials/vox1_O
extra_trials="data/vox1_all/trials/vox1_E data/vox1_all/trials/vox1_H"
baseline_conf=            # no non-learned baseline at this scale
ssl_conf=conf/ssl_dino_ecapa1024.yaml        # stage 2
pseudo_conf=conf/pseudo_wavlm_base_plus.yaml # stages 4-5
init_from_ssl=false       # WavLM starts from its pretrained weights (true for conf/pseudo_ecapa.yaml)
retrain_from=initial      # each iteration fine-tunes the pretrained WavLM again: theolepage/wavlm_ssl_sv:README.md (Iterative process: new save_path, no initial_model)
lmft_conf=conf/pseudo_wavlm_base_plus_lmft.yaml  # stage 5's last step: theolepage/wavlm_ssl_sv:README.md (Step 4); '' for none
init_embeddings=          # stage 3 from the authors' DINO embeddings file (dino_vox2_embeddings.pt, theolepage/wavlm_ssl_sv:README.md) instead of our SSL model's
# Clustering (stages 3 and 5): theolepage/wavlm_ssl_sv:pseudo_labeling.py value by value
num_clusters=50000        # k-means clusters: --n_clusters default 50000 (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
cluster_normalize=none    # k-means on the raw embeddings, no normalisation (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
kmeans_spherical=false    # Euclidean k-means: cuML KMeans (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
kmeans_init=kmeans++      # cuML's default init scalable-k-means++ (k-means||), of which this is the exact form (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
kmeans_iters=300          # at most: cuML's default max_iter=300 (theolepage/wavlm_ssl_sv:pseudo_labeling.py; cuML stops at tol 1e-4, faiss once the objective is unchanged)
ahc_clusters=7500         # AHC of the k-means centroids: --n_clusters_ahc default 7500 (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
ahc_linkage=ward          # sklearn AgglomerativeClustering defaults: Ward, Euclidean, of the raw centroids (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
min_cluster_size=1        # every cluster kept: each file gets its label (theolepage/wavlm_ssl_sv:pseudo_labeling.py)
eval_untrained=false      # a random encoder is not worth a Vox1-E/H extraction
cohort_size=20000         # stage 6: training utterances for score normalisation and AS-norm (chosen)
eval_segments=15          # stage 6 rows *_seg, the authors' protocol: num_eval=15 (theolepage/wavlm_ssl_sv:SpeakerNet.py)
eval_max_seconds=43.75    # test utterances cut at 700000 samples (theolepage/wavlm_ssl_sv:SpeakerNet.py)

adjust_options() {  # --tiny true overrides the configs and sizes set above or on the command line
  [ "$tiny" = true ] || return 0
  ssl_conf=conf/tiny/ssl_dino_ecapa.yaml; pseudo_conf=conf/tiny/pseudo_wavlm.yaml
  [ -z "$lmft_conf" ] || lmft_conf=conf/tiny/pseudo_wavlm_lmft.yaml
  num_clusters=4; ahc_clusters=3; min_cluster_size=1; cohort_size=8; asnorm_top_n=5
}

prepare_data() {
  [ "$download" != true ] || local/download_voxceleb.sh "$raw_dir"
  local/prepare_voxceleb.py --nj $nj --vox1-dir "$raw_dir/voxceleb1" --vox2-dir "$raw_dir/voxceleb2" --m4a $m4a data
  local/prepare_augmentation.py --musan-dir "$raw_dir/musan" --rirs-dir "$raw_dir/RIRS_NOISES" data/augment
  [ "$force" != true ] && [ -f data/vox2_dev/utt2dur ] || utils/compute_utt2dur.sh --nj $nj data/vox2_dev
  awk -v m=$min_dur '$2 >= m { print $1 }' data/vox2_dev/utt2dur > data/vox2_dev/.long_utts
  echo "$0: $(( $(wc -l < data/vox2_dev/utt2dur) - $(wc -l < data/vox2_dev/.long_utts) )) of" \
       "$(wc -l < data/vox2_dev/utt2dur) utterances of data/vox2_dev are shorter than $min_dur s: removed"
  utils/subset_data_dir.sh --utt-list data/vox2_dev/.long_utts data/vox2_dev $train_data
  for d in data/augment/{noise,music,babble,rirs}; do utils/validate_data_dir.sh $d; done
  [ "$tiny" != true ] || [ -d data/tiny_wavlm ] || local/make_tiny_wavlm.py data/tiny_wavlm
}

. steps/stages.sh
