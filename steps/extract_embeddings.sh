#!/usr/bin/env bash
# Extract embeddings of a Kaldi data dir with a model dir, in nj parallel jobs.
#
# Usage: steps/extract_embeddings.sh [options] <model-dir> <data-dir> <out-dir>
#  e.g.: steps/extract_embeddings.sh --nj 4 exp/baseline data/test exp/baseline/embeddings/test
#
# Writes <out-dir>/embeddings.scp (merged, sorted; per-job arks beside it) and, with
# --spk-mean true, <out-dir>/spk_embeddings.scp (speaker means). Logs: <out-dir>/log/.
# A finished extraction is not redone (--force true redoes it); after a crash only the
# unfinished jobs run again.
set -euo pipefail

nj=4              # number of parallel jobs
cmd="utils/run.py"  # job runner (see cmd.sh): local or Slurm
device=cpu        # cpu or cuda
spk_mean=false    # also write speaker-mean embeddings (true|false)
force=false       # redo even if finished (true|false)

. utils/parse_options.sh

if [ $# -ne 3 ]; then
  echo "Usage: $0 [--nj N] [--cmd CMD] [--spk-mean true] <model-dir> <data-dir> <out-dir>" >&2
  exit 1
fi
model_dir=$1; data=$2; dir=$3

for f in "$model_dir/config.yaml" "$data/wav.scp" "$data/utt2spk"; do
  [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }
done

if [ "$force" = true ]; then
  rm -f "$dir"/embeddings.*.scp "$dir/embeddings.scp" "$dir/spk_embeddings.scp"
fi

if [ -f "$dir/embeddings.scp" ]; then
  echo "$0: $dir/embeddings.scp exists, skipping extraction"
else
  num_utts=$(wc -l < "$data/utt2spk")
  [ "$nj" -le "$num_utts" ] || nj=$num_utts
  utils/split_data.sh "$data" "$nj"
  mkdir -p "$dir/log"
  echo "$0: extracting $num_utts utterances of $data with $model_dir in $nj jobs (log: $dir/log/extract.*.log)"
  $cmd JOB=1:"$nj" "$dir/log/extract.JOB.log" \
    extract_embeddings.py --device "$device" "$model_dir" "$data/split$nj/JOB" \
      "$dir/embeddings.JOB.ark" "$dir/embeddings.JOB.scp"
  # Merge into one sorted scp, written last (its presence marks the extraction finished).
  for j in $(seq "$nj"); do cat "$dir/embeddings.$j.scp"; done | LC_ALL=C sort > "$dir/.embeddings.scp.tmp"
  n=$(wc -l < "$dir/.embeddings.scp.tmp")
  if [ "$n" -ne "$num_utts" ]; then
    echo "$0: expected $num_utts embeddings, got $n" >&2; exit 1
  fi
  mv "$dir/.embeddings.scp.tmp" "$dir/embeddings.scp"
  echo "$0: wrote $n embeddings to $dir/embeddings.scp"
fi

if [ "$spk_mean" = true ] && [ ! -f "$dir/spk_embeddings.scp" ]; then
  speaker_mean_embeddings.py "$data" "$dir/embeddings.scp" "$dir/spk_embeddings.ark" "$dir/spk_embeddings.scp"
fi
