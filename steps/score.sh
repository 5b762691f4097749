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
force=false    # rescore even if the score file exists (true|false)

. utils/parse_options.sh

if [ $# -ne 4 ]; then
  echo "Usage: $0 [--mean-scp SCP] <exp-dir> <trials> <embeddings.scp> <name>" >&2
  exit 1
fi
exp=$1; trials=$2; scp=$3; name=$4
scores=$exp/scores/$name.score

if [ -f "$scores" ] && [ "$force" != true ] && [ "$scores" -nt "$scp" ] && [ "$scores" -nt "$trials" ]; then
  echo "$0: $scores is up to date"
else
  score.py ${mean_scp:+--mean-scp "$mean_scp"} "$trials" "$scp" "$scores"
fi
compute_metrics.py --results-dir "$exp" --name "$name" "$scores"
