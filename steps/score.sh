#!/usr/bin/env bash
# Cosine-score a trial list and compute EER/minDCF into <exp-dir>/results.{md,json}.
#
# Usage: steps/score.sh [options] <exp-dir> <trials> <embeddings.scp> <name>
#  e.g.: steps/score.sh --mean-scp exp/baseline/embeddings/train/embeddings.scp \
#          exp/baseline data/test/trials exp/baseline/embeddings/test/embeddings.scp test
#
# Scores go to <exp-dir>/scores/<name>.score; the row <name> of results.md is replaced.
set -euo pipefail

mean_scp=      # subtract the mean of these embeddings (e.g. the training set); empty = none
var_norm=false # also divide by their per-dimension std (true|false)
force=false    # rescore even if the score file exists (true|false)

. utils/parse_options.sh

if [ $# -ne 4 ]; then
  echo "Usage: $0 [--mean-scp SCP [--var-norm true]] <exp-dir> <trials> <embeddings.scp> <name>" >&2
  exit 1
fi
exp=$1; trials=$2; scp=$3; name=$4
scores=$exp/scores/$name.score

opts=()
[ -z "$mean_scp" ] || opts+=(--mean-scp "$mean_scp")
[ "$var_norm" != true ] || opts+=(--var-norm)
# Rescore unless the scores are newer than their inputs and were made with the same options.
if [ -f "$scores" ] && [ "$force" != true ] && [ "$scores" -nt "$scp" ] && [ "$scores" -nt "$trials" ] \
   && [ "$(cat "$scores.opts" 2>/dev/null)" = "${opts[*]}" ]; then
  echo "$0: $scores is up to date"
else
  score.py "${opts[@]}" "$trials" "$scp" "$scores"
  echo "${opts[*]}" > "$scores.opts"
fi
compute_metrics.py --results-dir "$exp" --name "$name" "$scores"
