#!/usr/bin/env bash
# egs/mini: the embedded default recipe of sslspk. Generates a small synthetic
# multi-speaker corpus offline and runs the pipeline on 2 CPUs in minutes.
#
# Stages (the same numbers as egs/voxceleb):
#   0  data: generate the mini corpus (--corpus mini) or prepare FSDD (--corpus fsdd)
#   1  lists: utt2num_samples/utt2dur, validation of the data dirs
#   2  SSL pretraining of the speaker encoder           (not yet available)
#   3  clustering of embeddings -> pseudo speaker labels  (not yet available)
#   4  fine-tuning on the pseudo-labels                   (not yet available)
#   5  iterative refinement (3-4 again)                   (not yet available)
#   6  evaluation: embeddings -> cosine and AS-norm scoring, calibration -> EER/minDCF/Cllr
#      in exp/<corpus>/<system>/results.md
#
# Examples:
#   ./run.sh --stage 0 --stop-stage 1 && ./run.sh --stage 6       # the baseline, end to end
#   ./run.sh --corpus fsdd --corpus-dir ../../../shared/data/fsdd/recordings --stage 0 --stop-stage 1
#   ./run.sh --corpus fsdd --baseline-conf conf/baseline_nocmn.yaml --stage 6
#   ./run.sh --corpus mydata --train-data /path/train --test-data /path/test \
#            --trials /path/test/trials --stage 1                # your own Kaldi data dirs
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
num_test_speakers=10
utts_per_speaker=16
baseline_conf=conf/baseline.yaml   # conf/baseline_nocmn.yaml where the channel is tied to the speaker (FSDD)
asnorm_cohort=utt          # AS-norm cohort: utt (training embeddings) or spk (training speaker means)
asnorm_top_n=300           # AS-norm: closest cohort entries (clipped to the cohort size)
cal_p_target=0.5           # prior of the score calibration objective

. utils/parse_options.sh

train_data=${train_data:-data/$corpus/train}
test_data=${test_data:-data/$corpus/test}
trials=${trials:-$test_data/trials}
exp=exp/$corpus

not_available() {
  echo "$0: stage $1 ($2) is not yet available in this version of sslspk." >&2
  echo "$0: run --stop-stage $(($1 - 1)) or --stage 6 to evaluate the baseline." >&2
  exit 1
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: data ($corpus)"
  case $corpus in
    mini) local/make_mini_corpus.py --num-train-speakers $num_train_speakers \
            --num-test-speakers $num_test_speakers --utts-per-speaker $utts_per_speaker \
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
    [ -f "$d/utt2dur" ] || utils/compute_utt2dur.sh "$d"
    utils/validate_data_dir.sh "$d"
  done
  [ -f "$trials" ] || { echo "$0: no trial list $trials" >&2; exit 1; }
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then not_available 2 "SSL pretraining"; fi
if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then not_available 3 "clustering into pseudo-labels"; fi
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then not_available 4 "fine-tuning on pseudo-labels"; fi
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then not_available 5 "iterative refinement"; fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: evaluation"
  sys=$exp/$(basename $baseline_conf .yaml)
  if ! cmp -s $baseline_conf $sys/config.yaml; then   # new or changed config: start afresh
    rm -rf $sys && mkdir -p $sys && cp $baseline_conf $sys/config.yaml
  fi
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $sys "$train_data" $sys/embeddings/train
  steps/extract_embeddings.sh --nj $nj --cmd "$cmd" $sys "$test_data" $sys/embeddings/test
  emb=$sys/embeddings/test/embeddings.scp
  norm=(--mean-scp $sys/embeddings/train/embeddings.scp --var-norm true)
  steps/score.sh "${norm[@]}" $sys "$trials" $emb test
  # AS-norm; cohort: the training utterances (asnorm_cohort=utt) or their speaker means (spk).
  asnorm=("${norm[@]}" --cohort-scp $sys/embeddings/train/embeddings.scp --top-n $asnorm_top_n)
  [ "$asnorm_cohort" != spk ] || asnorm+=(--cohort-utt2spk "$train_data/utt2spk")
  steps/score.sh "${asnorm[@]}" $sys "$trials" $emb test_asnorm
  # Calibration: the test speakers are split into two disjoint halves; the AS-norm scores of the
  # dev half train it, the eval half is reported before (scores read as LLRs) and after.
  if [ ! -f $sys/trials/eval ] || [ "$trials" -nt $sys/trials/eval ]; then
    split_trials.py "$test_data/utt2spk" "$trials" $sys/trials/dev $sys/trials/eval
  fi
  steps/score.sh "${asnorm[@]}" $sys $sys/trials/dev $emb test_asnorm_dev
  steps/score.sh "${asnorm[@]}" --llr true $sys $sys/trials/eval $emb test_asnorm_eval
  if [ ! -f $sys/calibration.json ] || [ $sys/scores/test_asnorm_dev.score -nt $sys/calibration.json ]; then
    calibrate.py train --p-target $cal_p_target $sys/scores/test_asnorm_dev.score $sys/calibration.json
  fi
  steps/score.sh "${asnorm[@]}" --calibration $sys/calibration.json $sys $sys/trials/eval $emb test_asnorm_eval_cal
  cat $sys/results.md
fi
