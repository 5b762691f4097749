#!/usr/bin/env bash
# Evaluate one system (a model dir): embeddings of the training and test data, cosine and
# AS-norm scoring, calibration on a dev half of the test speakers -> <model-dir>/results.{md,json}.
#
# Usage: steps/evaluate.sh [options] <model-dir> <train-data> <test-data> <trials>
#  e.g.: steps/evaluate.sh --nj 4 exp/mini/ssl data/mini/train data/mini/test data/mini/test/trials
#
# Rows of results.md: test (cosine after train-set mean/variance normalisation), test_asnorm,
# test_asnorm_dev / test_asnorm_eval (the trials split into two halves with disjoint test speakers),
# test_asnorm_eval_cal (eval half after logistic calibration trained on the dev half).
# Every step is skipped when its output is up to date (--force true redoes them all).
set -euo pipefail

nj=2                   # parallel extraction jobs
device=auto            # extraction: auto (cuda when the job sees a GPU), cpu or cuda
cmd="utils/run.py"     # job runner (see cmd.sh)
asnorm_cohort=utt      # AS-norm cohort: utt (training embeddings) or spk (training speaker means)
asnorm_top_n=300       # AS-norm: closest cohort entries (clipped to the cohort size)
cal_p_target=0.5       # prior of the score calibration objective
force=false            # redo every step even if up to date (true|false)

. utils/parse_options.sh

if [ $# -ne 4 ]; then
  echo "Usage: $0 [options] <model-dir> <train-data> <test-data> <trials>" >&2
  exit 1
fi
sys=$1; train_data=$2; test_data=$3; trials=$4

extract=(steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --device "$device" --force $force)
"${extract[@]}" $sys "$train_data" $sys/embeddings/train
"${extract[@]}" $sys "$test_data" $sys/embeddings/test
emb=$sys/embeddings/test/embeddings.scp
norm=(--force $force --mean-scp $sys/embeddings/train/embeddings.scp --var-norm true)
steps/score.sh "${norm[@]}" $sys "$trials" $emb test
asnorm=("${norm[@]}" --cohort-scp $sys/embeddings/train/embeddings.scp --top-n $asnorm_top_n)
[ "$asnorm_cohort" != spk ] || asnorm+=(--cohort-utt2spk "$train_data/utt2spk")
steps/score.sh "${asnorm[@]}" $sys "$trials" $emb test_asnorm
if [ "$force" = true ] || [ ! -f $sys/trials/eval ] || [ "$trials" -nt $sys/trials/eval ]; then
  split_trials.py "$test_data/utt2spk" "$trials" $sys/trials/dev $sys/trials/eval
fi
steps/score.sh "${asnorm[@]}" $sys $sys/trials/dev $emb test_asnorm_dev
steps/score.sh "${asnorm[@]}" --llr true $sys $sys/trials/eval $emb test_asnorm_eval
if [ "$force" = true ] || [ ! -f $sys/calibration.json ] || [ $sys/scores/test_asnorm_dev.score -nt $sys/calibration.json ]; then
  calibrate.py train --p-target $cal_p_target $sys/scores/test_asnorm_dev.score $sys/calibration.json
fi
steps/score.sh "${asnorm[@]}" --calibration $sys/calibration.json $sys $sys/trials/eval $emb test_asnorm_eval_cal
