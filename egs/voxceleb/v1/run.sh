#!/usr/bin/env bash
# egs/voxceleb/v1: the full recipe. Self-supervised speaker verification trained on VoxCeleb2 dev
# without labels, evaluated on VoxCeleb1-O/E/H (published and measured figures: RESULTS.md).
#
# Stages (the same numbers as egs/mini):
#   0  data: [--download true: local/download_voxceleb.sh] -> local/prepare_voxceleb.py ->
#      data/{vox2_dev,vox1_test,vox1_all,musan_noise,musan_music,musan_speech,rirs},
#      trials data/vox1_test/trials/vox1_O, data/vox1_all/trials/vox1_{E,H} (Kaldi format)
#   1  lists: utt2dur; utterances shorter than --min-dur removed -> data/vox2_dev_train;
#      a random --cohort-size subset for score normalisation -> data/vox2_dev_cohort; validation
#   2  SSL pretraining (--ssl-conf: DINO ECAPA-TDNN 1024 by default)      -> <exp>/ssl
#   3  embeddings of the training data -> k-means (--num-clusters) -> AHC (--ahc-clusters)
#      -> pseudo speakers <exp>/pl_iter1/data
#   4  training on the pseudo-labels (--pseudo-conf: WavLM Base+ by default) -> <exp>/pl_iter1
#   5  iterations 2..num_iters of stages 3-4
#   6  evaluation of every system on Vox1-O (cosine, AS-norm, calibration: steps/evaluate.sh) and
#      Vox1-E/H (cosine, AS-norm: steps/score.sh) -> <exp>/results.md, <exp>/iterations.md,
#      DET plots <exp>/det_vox1_{O,E,H}.png
#
# Examples:
#   ./run.sh --raw-dir /data/voxceleb_raw --download true      # everything, downloading first
#   ./run.sh --raw-dir /data/voxceleb_raw --stage 1            # archives already unpacked there
#   ./run.sh --stage 4 --pseudo-conf conf/pseudo_ecapa.yaml --init-from-ssl true --exp exp/ecapa_pl
#   ./run.sh --ssl-conf conf/ssl_simclr_ssps.yaml --exp exp/simclr_ssps --stage 2
#   ./run.sh --raw-dir /tmp/fake_vox --tiny true --nj 1        # all stages at toy size (a smoke test)
# Every configuration value at paper scale is in conf/ and here, with its source in a comment.
set -euo pipefail
. ./path.sh
. ./cmd.sh

stage=0
stop_stage=6
nj=16                     # parallel jobs (extraction, ffmpeg, utt2dur)
raw_dir=raw               # downloaded/unpacked corpora: voxceleb1/ voxceleb2/ musan/ RIRS_NOISES/
download=false            # stage 0 downloads into --raw-dir first (needs VoxCeleb URLs: see local/download_voxceleb.sh)
convert_m4a=false         # stage 0 converts VoxCeleb2 m4a to wav (<raw-dir>/voxceleb2_wav) instead of ffmpeg pipes
min_dur=2.0               # stage 1 drops shorter training utterances (chosen: the 2 s local crops need them)
cohort_size=20000         # stage 1: random training utterances for score normalisation and AS-norm (chosen)
exp=exp                   # experiment dir: <exp>/ssl, <exp>/pl_iterN, results
ssl_conf=conf/ssl_dino_ecapa1024.yaml        # stage 2
pseudo_conf=conf/pseudo_wavlm_base_plus.yaml # stages 4-5
init_from_ssl=false       # start the pseudo-label models from the SSL encoder (true for conf/pseudo_ecapa.yaml)
retrain_from=previous     # iterations >= 2 start from: previous (the last iteration's model) or initial
num_iters=2               # pseudo-label iterations (chosen; the first in stages 3-4, the others in stage 5)
num_clusters=50000        # k-means clusters (Miara, Lepage, Dehak 2024)
ahc_clusters=7500         # AHC of the k-means centroids down to this many (Miara, Lepage, Dehak 2024)
min_cluster_size=2        # smaller clusters are dropped (chosen)
true_speakers=true        # VoxCeleb2's utt2spk holds real speakers: report NMI/purity (diagnostics only)
eval_systems=             # systems evaluated in stage 6 (default: <exp>/ssl and every <exp>/pl_iterN)
asnorm_cohort=utt         # AS-norm cohort: utt (the cohort utterances) or spk (their true-speaker means: uses labels)
asnorm_top_n=300          # AS-norm: closest cohort entries (as wespeaker's VoxCeleb recipes)
cal_p_target=0.5          # prior of the score calibration objective
force=false               # true: redo the finished steps of the stages run (training, extraction, clustering, scoring)
tiny=false                # true: smoke-test sizes, not results (conf/tiny/*.yaml with a random tiny WavLM, 4->3 clusters, cohort 8)

. utils/parse_options.sh
tforce=(); [ "$force" != true ] || tforce=(--force)   # the training entry points' flag

if [ "$tiny" = true ]; then  # overrides the configs and sizes set above or on the command line
  ssl_conf=conf/tiny/ssl_dino_ecapa.yaml; pseudo_conf=conf/tiny/pseudo_wavlm.yaml
  num_clusters=4; ahc_clusters=3; min_cluster_size=1; cohort_size=8; asnorm_top_n=5
fi
train_data=data/vox2_dev_train
cohort_data=data/vox2_dev_cohort
eval_data=data/vox1_all            # embeddings of all of VoxCeleb1 serve the three trial lists
trials_o=data/vox1_test/trials/vox1_O
ref=()   # true speakers, for diagnostics only
[ "$true_speakers" != true ] || ref=(--ref-utt2spk "$train_data/utt2spk")

cluster_iteration() {  # <iteration> <model dir whose training-set embeddings are clustered>
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --force $force $2 $train_data $2/embeddings/train_full
  steps/cluster.sh --force $force --cmd "$cmd" --k $num_clusters ${ahc_clusters:+--ahc-clusters $ahc_clusters} \
    --min-cluster-size $min_cluster_size "${ref[@]}" --report-dir $exp/pl_iter$1/clusters \
    $2/embeddings/train_full/embeddings.scp $train_data $exp/pl_iter$1/data
}
train_iteration() {  # <iteration> [<model dir to start from>]
  steps/train.sh train_pseudo.py "${tforce[@]}" --config $pseudo_conf --data $exp/pl_iter$1/data \
    --exp-dir $exp/pl_iter$1 ${2:+--init $2} "${ref[@]}"
}
initial=; [ "$init_from_ssl" != true ] || initial=$exp/ssl   # where pseudo-label training starts

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: data ($raw_dir -> data/)"
  [ "$download" != true ] || local/download_voxceleb.sh "$raw_dir"
  convert=(); [ "$convert_m4a" != true ] || convert=(--convert-dir "$raw_dir/voxceleb2_wav")
  local/prepare_voxceleb.py --nj $nj --vox1-dir "$raw_dir/voxceleb1" --vox2-dir "$raw_dir/voxceleb2" \
    --musan-dir "$raw_dir/musan" --rirs-dir "$raw_dir/RIRS_NOISES" "${convert[@]}" data
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: lists"
  for d in data/vox2_dev data/vox1_test data/vox1_all; do
    [ "$force" != true ] && [ -f $d/utt2dur ] || utils/compute_utt2dur.sh --nj $nj $d
    utils/validate_data_dir.sh $d
  done
  awk -v m=$min_dur '$2 >= m { print $1 }' data/vox2_dev/utt2dur > data/vox2_dev/.long_utts
  echo "Stage 1: $(( $(wc -l < data/vox2_dev/utt2dur) - $(wc -l < data/vox2_dev/.long_utts) )) of" \
       "$(wc -l < data/vox2_dev/utt2dur) utterances of data/vox2_dev are shorter than $min_dur s: removed"
  utils/subset_data_dir.sh --utt-list data/vox2_dev/.long_utts data/vox2_dev $train_data
  n=$(wc -l < $train_data/utt2spk); [ $cohort_size -le $n ] || cohort_size=$n
  utils/subset_data_dir.sh --random $cohort_size --seed 0 $train_data $cohort_data
  for d in $train_data $cohort_data data/musan_noise data/musan_music data/musan_speech data/rirs; do
    utils/validate_data_dir.sh $d
  done
  for t in $trials_o data/vox1_all/trials/vox1_E data/vox1_all/trials/vox1_H; do
    [ -f $t ] || { echo "$0: no trial list $t (stage 0)" >&2; exit 1; }
  done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: SSL pretraining ($ssl_conf) -> $exp/ssl"
  steps/train.sh train_ssl.py "${tforce[@]}" --config $ssl_conf --data $train_data --exp-dir $exp/ssl
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: clustering the training embeddings of $exp/ssl -> $exp/pl_iter1/data"
  cluster_iteration 1 $exp/ssl
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: training on the pseudo-labels ($pseudo_conf) -> $exp/pl_iter1"
  [ "$tiny" != true ] || [ -d exp/tiny_wavlm ] || local/make_tiny_wavlm.py exp/tiny_wavlm
  train_iteration 1 $initial
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for it in $(seq 2 $num_iters); do
    echo "Stage 5: iteration $it: clustering with $exp/pl_iter$((it - 1)), training -> $exp/pl_iter$it"
    cluster_iteration $it $exp/pl_iter$((it - 1))
    if [ "$retrain_from" = previous ]; then train_iteration $it $exp/pl_iter$((it - 1)); else train_iteration $it $initial; fi
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: evaluation on Vox1-O/E/H"
  if [ -n "$eval_systems" ]; then read -r -a systems <<< "$eval_systems"; else
    systems=(); for d in $exp/ssl $exp/pl_iter*; do [ ! -f $d/model.pt ] || systems+=("$d"); done
  fi
  [ ${#systems[@]} -gt 0 ] || { echo "$0: no trained system in $exp (stages 2-5)" >&2; exit 1; }
  for sys in "${systems[@]}"; do   # Vox1-O: rows test, test_asnorm (+ calibration rows)
    steps/evaluate.sh --nj $nj --cmd "$cmd" --force $force --asnorm-cohort $asnorm_cohort --asnorm-top-n $asnorm_top_n \
      --cal-p-target $cal_p_target $sys $cohort_data $eval_data $trials_o
    norm=(--force $force --mean-scp "$sys/embeddings/train/embeddings.scp" --var-norm true)
    asnorm=("${norm[@]}" --cohort-scp "$sys/embeddings/train/embeddings.scp" --top-n "$asnorm_top_n")
    [ "$asnorm_cohort" != spk ] || asnorm+=(--cohort-utt2spk "$cohort_data/utt2spk")
    for t in E H; do   # Vox1-E/H on the same embeddings: rows vox1_E, vox1_E_asnorm, ...
      steps/score.sh "${norm[@]}" $sys data/vox1_all/trials/vox1_$t $sys/embeddings/test/embeddings.scp vox1_$t
      steps/score.sh "${asnorm[@]}" $sys data/vox1_all/trials/vox1_$t $sys/embeddings/test/embeddings.scp vox1_${t}_asnorm
    done
  done
  for t in O E H; do   # DET curves of the AS-norm scores of every system
    name=vox1_${t}_asnorm; [ $t != O ] || name=test_asnorm
    det=(); for s in "${systems[@]}"; do det+=("$(basename "$s")=$s/scores/$name.score"); done
    plot_det.py --title "Vox1-$t (AS-norm)" --out $exp/det_vox1_$t.png "${det[@]}"
  done
  compare_results.py --trials test --trials test_asnorm --trials vox1_E --trials vox1_E_asnorm \
    --trials vox1_H --trials vox1_H_asnorm "${systems[@]}" > $exp/results.md
  ls -d $exp/pl_iter* >/dev/null 2>&1 && loop_report.py --trials test_asnorm $exp > $exp/iterations.md && cat $exp/iterations.md
  echo "Rows: test* = Vox1-O (cleaned), vox1_E* = Vox1-E (cleaned), vox1_H* = Vox1-H (cleaned)"
  cat $exp/results.md
fi
