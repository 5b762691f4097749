#!/usr/bin/env bash
# Evaluate one system (a model dir): embeddings of the cohort and test data, cosine and AS-norm
# scoring, calibration on a dev half of the test speakers -> <model-dir>/results.{md,json}.
#
# Usage: steps/evaluate.sh [options] <model-dir> <cohort-data> <test-data> <trials>
#  e.g.: steps/evaluate.sh --nj 4 exp/mini/ssl data/mini/train data/mini/test data/mini/test/trials
#
# Embeddings go to <model-dir>/embeddings/<name of the data dir>/. The cohort data (training
# utterances, or a subset of them) gives the mean/variance normalisation statistics and the AS-norm
# cohort. Rows of results.md: test (cosine after mean/variance normalisation), test_asnorm,
# test_asnorm_dev / test_asnorm_eval (the trials split into two halves with disjoint test
# speakers), test_asnorm_eval_cal (eval half after logistic calibration trained on the dev half);
# each of --extra-trials adds rows <list name> and <list name>_asnorm. With --segments N, rows test_seg
# and <list name>_seg: the authors' protocol (theolepage/wavlm_ssl_sv:SpeakerNet.py evaluateFromList:
# mean of the whole-utterance cosine and of the mean cosine over the N x N pairs of --segment-seconds
# windows, no mean subtraction, no AS-norm). With --plda-utt2spk, rows test_plda (Kaldi's LDA + PLDA back-end,
# kaldi-asr/kaldi:egs/voxceleb/v2/run.sh, trained on the cohort embeddings with these labels -> <model-dir>/backend/plda.npz)
# and test_lda (cosine after its mean subtraction and LDA), and <list name>_plda, <list name>_lda.
# Every step is skipped when its output is up to date (--force true redoes them all).
set -euo pipefail

nj=2                   # parallel extraction jobs
device=auto            # extraction: auto (cuda when the job sees a GPU), cpu or cuda
cmd="utils/run.py"     # job runner (see cmd.sh)
asnorm_cohort=utt      # AS-norm cohort: utt (cohort embeddings) or spk (their speaker means)
asnorm_top_n=300       # AS-norm: closest cohort entries (clipped to the cohort size)
cal_p_target=0.5       # prior of the score calibration objective
extra_trials=          # more trial lists on <test-data> (space-separated), scored with cosine and AS-norm
max_seconds=           # test embeddings of the first S seconds of each utterance only (empty: all of it)
segments=0             # > 0: also the rows *_seg of the authors' protocol with this many windows per test utterance
segment_seconds=4.015  # their length (400 x 160 + 240 samples at 16 kHz, theolepage/wavlm_ssl_sv:DatasetLoader.py)
plda_utt2spk=          # labels of the cohort utterances to train the LDA/PLDA back-end on (empty: no *_plda, *_lda rows)
plda_labels=           # what they are (e.g. pseudo-labels of pl_iter2), recorded in the back-end model
lda_dim=200            # back-end LDA dimension (Kaldi's egs/voxceleb/v2 value; 0: no LDA)
lda_dim_dev=           # or LDA dimensions (space-separated) to choose from: the lowest PLDA EER on the dev half of the
                       # trials wins, + row test_plda_eval (the other half)
force=false            # redo every step even if up to date (true|false)

. utils/parse_options.sh

if [ $# -ne 4 ]; then
  echo "Usage: $0 [options] <model-dir> <cohort-data> <test-data> <trials>" >&2
  exit 1
fi
sys=$1; cohort_data=$2; test_data=$3; trials=$4
cohort_emb=$sys/embeddings/$(basename "$cohort_data")
test_emb=$sys/embeddings/$(basename "$test_data")
[ "$cohort_emb" != "$test_emb" ] || { echo "$0: the cohort and test data dirs have the same name $(basename "$test_data")" >&2; exit 1; }

extract=(steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --device "$device" --force $force)
"${extract[@]}" $sys "$cohort_data" $cohort_emb   # whole (the cohort's dir may be the clustering's, stages 3 and 5)
"${extract[@]}" --max-seconds "$max_seconds" --segments $segments --segment-seconds $segment_seconds \
  $sys "$test_data" $test_emb
emb=$test_emb/embeddings.scp
norm=(--force $force --mean-scp $cohort_emb/embeddings.scp --var-norm true)
asnorm=("${norm[@]}" --cohort-scp $cohort_emb/embeddings.scp --top-n $asnorm_top_n)
[ "$asnorm_cohort" != spk ] || asnorm+=(--cohort-utt2spk "$cohort_data/utt2spk")
steps/score.sh "${norm[@]}" $sys "$trials" $emb test
steps/score.sh "${asnorm[@]}" $sys "$trials" $emb test_asnorm
seg=(--force $force --segments-scp $test_emb/segments.scp)
[ "$segments" -eq 0 ] || steps/score.sh "${seg[@]}" $sys "$trials" $emb test_seg
fresh() {  # <output> <stamp.py options>: true when <output>'s stamp holds these inputs and options (not with --force)
  local out=$1; shift
  [ "$force" != true ] && stamp.py check "$@" "$out" > /dev/null
}
split=(--input "$test_data/utt2spk" --input "$trials")   # the halves: redone when the trial list's content changes
if ! fresh $sys/trials/eval "${split[@]}"; then
  rm -f $sys/trials/eval.stamp $sys/trials/source   # (source: the record of before stamps)
  split_trials.py "$test_data/utt2spk" "$trials" $sys/trials/dev $sys/trials/eval
  stamp.py write "${split[@]}" $sys/trials/eval
fi
steps/score.sh "${asnorm[@]}" $sys $sys/trials/dev $emb test_asnorm_dev
steps/score.sh "${asnorm[@]}" --llr true $sys $sys/trials/eval $emb test_asnorm_eval
cal=(--input $sys/scores/test_asnorm_dev.score --option p_target=$cal_p_target)
if ! fresh $sys/calibration.json "${cal[@]}"; then
  rm -f $sys/calibration.json.stamp
  calibrate.py train --p-target $cal_p_target $sys/scores/test_asnorm_dev.score $sys/calibration.json
  stamp.py write "${cal[@]}" $sys/calibration.json
fi
steps/score.sh "${asnorm[@]}" --calibration $sys/calibration.json $sys $sys/trials/eval $emb test_asnorm_eval_cal
backend=$sys/backend/plda.npz
if [ -n "$plda_utt2spk" ]; then   # retrained when its embeddings, labels (or dev trials) or options change
  dims=$lda_dim dev=()
  [ -z "$lda_dim_dev" ] || { dims=$lda_dim_dev; dev=(--dev-trials $sys/trials/dev --dev-scp $emb); }
  made=(--input $cohort_emb/embeddings.scp --input "$plda_utt2spk" --option "lda_dim=$dims" --option "labels=$plda_labels")
  [ ${#dev[@]} -eq 0 ] || made+=(--input $sys/trials/dev --input $emb)
  if ! fresh $backend "${made[@]}"; then
    rm -f $backend.stamp $backend.opts   # (.opts: the record of before stamps)
    train_backend.py --lda-dim $dims "${dev[@]}" --labels "$plda_labels" $cohort_emb/embeddings.scp \
      "$plda_utt2spk" $backend
    stamp.py write "${made[@]}" $backend
  fi
  for t in "$trials" $extra_trials; do
    name=test; [ "$t" = "$trials" ] || name=$(basename "$t")
    steps/score.sh --force $force --backend plda --backend-model $backend $sys "$t" $emb ${name}_plda
    steps/score.sh --force $force --backend lda-cosine --backend-model $backend $sys "$t" $emb ${name}_lda
  done
  [ ${#dev[@]} -eq 0 ] || steps/score.sh --force $force --backend plda --backend-model $backend \
    $sys $sys/trials/eval $emb test_plda_eval   # the half not used to choose --lda-dim
fi
for t in $extra_trials; do
  steps/score.sh "${norm[@]}" $sys "$t" $emb "$(basename "$t")"
  steps/score.sh "${asnorm[@]}" $sys "$t" $emb "$(basename "$t")_asnorm"
  [ "$segments" -eq 0 ] || steps/score.sh "${seg[@]}" $sys "$t" $emb "$(basename "$t")_seg"
done
