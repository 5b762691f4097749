#!/usr/bin/env bash
# Score a trial list (cosine, AS-norm or, with --segments-scp, the authors' protocol of whole-utterance
# and segment embeddings; optionally calibrated to LLRs) and compute EER/minDCF
# (+ Cllr/actDCF when calibrated) into <exp-dir>/results.{md,json}.
#
# Usage: steps/score.sh [options] <exp-dir> <trials> <embeddings.scp> <name>
#  e.g.: steps/score.sh --mean-scp exp/baseline/embeddings/train/embeddings.scp \
#          exp/baseline data/test/trials exp/baseline/embeddings/test/embeddings.scp test
#        steps/score.sh --mean-scp ... --cohort-scp exp/baseline/embeddings/train/embeddings.scp \
#          exp/baseline data/test/trials exp/baseline/embeddings/test/embeddings.scp test_asnorm
#
# Scores go to <exp-dir>/scores/<name>.score; the row <name> of results.md is replaced.
set -euo pipefail

mean_scp=      # subtract the mean of these embeddings (e.g. the training set); empty = none
var_norm=false # also divide by their per-dimension std (true|false)
cohort_scp=    # AS-norm cohort (e.g. training embeddings or speaker means); empty = plain cosine
cohort_utt2spk= # with --cohort-scp of utterances: use per-speaker means as the cohort
top_n=300      # AS-norm: closest cohort entries (clipped to the cohort size)
backend=cosine # cosine (AS-norm with --cohort-scp), or plda|lda-cosine of --backend-model (bin/train_backend.py)
backend_model= # LDA/PLDA back-end model for --backend plda|lda-cosine
segments_scp=  # the authors' protocol with these segment embeddings (theolepage/wavlm_ssl_sv:SpeakerNet.py)
calibration=   # calibration JSON (bin/calibrate.py train): scores become LLRs
utt2dur=       # utt2dur file for a calibration with quality measures
llr=false      # the scores are LLRs (report Cllr/actDCF); implied by --calibration
skip_missing=false # score only trials whose ids have embeddings (true|false)
force=false    # rescore even if the score file exists (true|false)

. utils/parse_options.sh

if [ $# -ne 4 ]; then
  echo "Usage: $0 [--mean-scp SCP [--var-norm true]] [--cohort-scp SCP [--top-n N]] [--segments-scp SCP]" >&2
  echo "          [--calibration JSON]" >&2
  echo "          <exp-dir> <trials> <embeddings.scp> <name>" >&2
  exit 1
fi
exp=$1; trials=$2; scp=$3; name=$4
scores=$exp/scores/$name.score

opts=()
[ -z "$mean_scp" ] || opts+=(--mean-scp "$mean_scp")
[ "$var_norm" != true ] || opts+=(--var-norm)
[ -z "$cohort_scp" ] || opts+=(--cohort-scp "$cohort_scp" --top-n "$top_n")
[ -z "$cohort_utt2spk" ] || opts+=(--cohort-utt2spk "$cohort_utt2spk")
[ -z "$segments_scp" ] || opts+=(--segments-scp "$segments_scp")
[ "$backend" = cosine ] || opts+=(--backend "$backend" --backend-model "$backend_model")
[ -z "$calibration" ] || opts+=(--calibration "$calibration")
[ -z "$utt2dur" ] || opts+=(--utt2dur "$utt2dur")
[ "$skip_missing" != true ] || opts+=(--skip-missing)
# Rescore unless the scores' stamp holds the same inputs (their content) and options (bin/stamp.py).
stamp=(--option "score.py=${opts[*]}")
for f in "$scp" "$trials" $mean_scp $cohort_scp $cohort_utt2spk $segments_scp $backend_model $calibration $utt2dur; do
  stamp+=(--input "$f")
done
if [ "$force" != true ] && stamp.py check "${stamp[@]}" "$scores" > /dev/null; then
  echo "$0: $scores is up to date"
else
  rm -f "$scores.stamp" "$scores.opts"   # (.opts: the record of before stamps)
  score.py "${opts[@]}" "$trials" "$scp" "$scores"
  stamp.py write "${stamp[@]}" "$scores"
fi
metric_opts=()
[ "$llr" != true ] || metric_opts+=(--llr)
compute_metrics.py "${metric_opts[@]}" --results-dir "$exp" --name "$name" "$scores"
