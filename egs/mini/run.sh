#!/usr/bin/env bash
# egs/mini: the embedded default recipe of sslspk. Generates a small synthetic
# multi-speaker corpus offline and runs the whole pipeline on 2 CPUs in minutes.
#
# Stages (the same numbers as egs/voxceleb):
#   0  data: generate the mini corpus (--corpus mini) or prepare FSDD (--corpus fsdd)
#   1  lists: utt2num_samples/utt2dur, validation of the data dirs
#   2  SSL pretraining of the speaker encoder (conf/ssl.yaml)            -> exp/<corpus>/ssl
#   3  embeddings of the training data -> k-means (+AHC) -> pseudo-labels -> data/<corpus>/train_pl_iter1
#   4  training on the pseudo-labels (conf/pseudo.yaml, AAM + DLG-LC)    -> exp/<corpus>/pl_iter1
#   5  iterations 2..num_iters of stages 3-4 (re-extract, re-cluster, re-train)
#   6  evaluation of every system: cosine, AS-norm, calibration -> exp/<corpus>/<system>/results.md,
#      exp/<corpus>/results.md (all systems) and exp/<corpus>/iterations.md (the loop)
#
# Examples:
#   ./run.sh                                                   # everything (what `make demo` runs)
#   ./run.sh --stage 3                                         # resume from clustering
#   ./run.sh --stage 4 --stop-stage 4 --oracle true            # + the supervised reference (true labels)
#   ./run.sh --corpus fsdd --corpus-dir ../../../shared/data/fsdd/recordings
#   ./run.sh --corpus mydata --train-data /path/train --test-data /path/test \
#            --trials /path/test/trials --stage 1              # your own Kaldi data dirs
set -euo pipefail
. ./path.sh
. ./cmd.sh

stage=0
stop_stage=6
nj=2                      # parallel jobs for extraction
corpus=mini               # name of the corpus: mini and fsdd are prepared by stage 0
corpus_dir=               # audio of --corpus fsdd (the FSDD recordings/ folder)
train_data=               # default: data/<corpus>/train
test_data=                # default: data/<corpus>/test
trials=                   # default: <test-data>/trials (Kaldi or VoxCeleb format)
num_train_speakers=40     # mini corpus size
num_test_speakers=30     # 30 x 16 test utterances: 20,000 trials, all 3,600 target pairs
utts_per_speaker=16
num_trials=20000
baseline_conf=conf/baseline.yaml   # conf/baseline_nocmn.yaml where the channel is tied to the speaker (FSDD)
ssl_conf=conf/ssl.yaml    # stage 2
pseudo_conf=conf/pseudo.yaml  # stages 4-5
init_embedder=ssl         # embeddings seeding the first clustering: ssl (stage 2) or baseline
init_from_ssl=true        # start the pseudo-label models from the SSL encoder (false: e.g. WavLM configs)
retrain_from=previous     # iterations >= 2 start from: previous (the last iteration's model) or initial
num_iters=2               # pseudo-label iterations (the first in stages 3-4, the others in stage 5)
num_clusters=0            # k-means clusters; 0: no k-means, AHC of the utterances themselves (small corpora)
ahc_clusters=60           # AHC of the k-means centroids (or utterances) down to this many clusters (empty: none)
min_cluster_size=2        # smaller clusters are dropped
true_speakers=true        # the training utt2spk holds real speakers: report NMI/purity, DLG-LC accuracy
oracle=false              # stage 4 also trains the supervised reference on the true labels -> exp/<corpus>/oracle
asnorm_cohort=utt          # AS-norm cohort: utt (training embeddings) or spk (training speaker means)
asnorm_top_n=300           # AS-norm: closest cohort entries (clipped to the cohort size)
cal_p_target=0.5           # prior of the score calibration objective
force=false               # true: redo the finished steps of the stages run (training, extraction, clustering, scoring)

. utils/parse_options.sh
tforce=(); [ "$force" != true ] || tforce=(--force)   # the training entry points' flag

train_data=${train_data:-data/$corpus/train}
test_data=${test_data:-data/$corpus/test}
trials=${trials:-$test_data/trials}
exp=exp/$corpus

ref=()   # true speakers, for diagnostics only
[ "$true_speakers" != true ] || ref=(--ref-utt2spk "$train_data/utt2spk")

baseline=$exp/$(basename $baseline_conf .yaml)   # the non-learned baseline's model dir
make_baseline() {  # (re)creates it when new or when its config changed
  if ! cmp -s $baseline_conf $baseline/config.yaml; then
    rm -rf $baseline && mkdir -p $baseline && cp $baseline_conf $baseline/config.yaml
  fi
}
cluster_iteration() {  # <iteration> <model dir whose training-set embeddings are clustered>
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --force $force $2 "$train_data" $2/embeddings/train
  steps/cluster.sh --force $force --k $num_clusters ${ahc_clusters:+--ahc-clusters $ahc_clusters} \
    --min-cluster-size $min_cluster_size "${ref[@]}" --report-dir $exp/pl_iter$1/clusters \
    $2/embeddings/train/embeddings.scp "$train_data" data/$corpus/train_pl_iter$1
}
train_iteration() {  # <iteration> [<model dir to start from>]
  steps/train.sh train_pseudo.py "${tforce[@]}" --config $pseudo_conf --data data/$corpus/train_pl_iter$1 \
    --exp-dir $exp/pl_iter$1 ${2:+--init $2} "${ref[@]}"
}
initial=; [ "$init_from_ssl" != true ] || initial=$exp/ssl   # where pseudo-label training starts
seed=$exp/ssl; [ "$init_embedder" != baseline ] || seed=$baseline   # its embeddings seed iteration 1

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: data ($corpus)"
  case $corpus in
    mini) local/make_mini_corpus.py "${tforce[@]}" --num-train-speakers $num_train_speakers \
            --num-test-speakers $num_test_speakers --utts-per-speaker $utts_per_speaker --num-trials $num_trials \
            corpus/mini data/mini ;;
    fsdd) [ -n "$corpus_dir" ] || { echo "$0: --corpus fsdd needs --corpus-dir" >&2; exit 1; }
          local/prepare_fsdd.py "$corpus_dir" data/fsdd ;;
    *) echo "$0: stage 0 prepares only mini and fsdd; for '$corpus' pass --train-data/--test-data/--trials and start at --stage 1" >&2
       exit 1 ;;
  esac
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: lists"
  for d in "$train_data" "$test_data"; do
    [ "$force" != true ] && [ -f "$d/utt2dur" ] || utils/compute_utt2dur.sh "$d"
    utils/validate_data_dir.sh "$d"
  done
  [ -f "$trials" ] || { echo "$0: no trial list $trials" >&2; exit 1; }
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: SSL pretraining ($ssl_conf) -> $exp/ssl"
  steps/train.sh train_ssl.py "${tforce[@]}" --config $ssl_conf --data "$train_data" --exp-dir $exp/ssl
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  [ "$init_embedder" != baseline ] || make_baseline
  echo "Stage 3: clustering the training embeddings of $seed -> data/$corpus/train_pl_iter1"
  cluster_iteration 1 $seed
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: training on the pseudo-labels ($pseudo_conf) -> $exp/pl_iter1"
  train_iteration 1 $initial
  if [ "$oracle" = true ]; then
    echo "Stage 4: the same training on the true labels (supervised reference) -> $exp/oracle"
    steps/train.sh train_pseudo.py "${tforce[@]}" --config $pseudo_conf --data "$train_data" --exp-dir $exp/oracle \
      ${initial:+--init $initial}
  fi
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for it in $(seq 2 $num_iters); do
    echo "Stage 5: iteration $it: clustering with $exp/pl_iter$((it - 1)), training -> $exp/pl_iter$it"
    cluster_iteration $it $exp/pl_iter$((it - 1))
    if [ "$retrain_from" = previous ]; then train_iteration $it $exp/pl_iter$((it - 1)); else train_iteration $it $initial; fi
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: evaluation"
  make_baseline
  systems=($baseline)
  if [ -f $exp/ssl/model.pt ]; then   # the SSL encoder before training: its initial weights
    mkdir -p $exp/ssl_untrained
    cmp -s $exp/ssl/config.yaml $exp/ssl_untrained/config.yaml || cp $exp/ssl/config.yaml $exp/ssl_untrained/
    systems+=($exp/ssl_untrained $exp/ssl)
  fi
  for d in $exp/pl_iter* $exp/oracle; do [ ! -f $d/model.pt ] || systems+=($d); done
  for sys in "${systems[@]}"; do
    steps/evaluate.sh --nj $nj --cmd "$cmd" --force $force --asnorm-cohort $asnorm_cohort --asnorm-top-n $asnorm_top_n \
      --cal-p-target $cal_p_target $sys "$train_data" "$test_data" "$trials"
  done
  compare_results.py --trials test --trials test_asnorm "${systems[@]}" > $exp/results.md
  ls -d $exp/pl_iter* >/dev/null 2>&1 && loop_report.py --start $(basename $seed) $exp > $exp/iterations.md && cat $exp/iterations.md
  cat $exp/results.md
fi
