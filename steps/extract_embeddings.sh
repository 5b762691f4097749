#!/usr/bin/env bash
# Extract embeddings of a Kaldi data dir with a model dir, in nj parallel jobs.
#
# Usage: steps/extract_embeddings.sh [options] <model-dir> <data-dir> <out-dir>
#  e.g.: steps/extract_embeddings.sh --nj 4 exp/baseline data/test exp/baseline/embeddings/test
#
# Writes <out-dir>/embeddings.scp (merged, sorted; per-job arks beside it) and, with
# --spk-mean true, <out-dir>/spk_embeddings.scp (speaker means). Logs: <out-dir>/log/.
# Each scp is recorded with the SHA-256 of its inputs (<scp>.inputs: the model's config.yaml and
# model.pt, the data dir's wav.scp, utt2spk and segments): an extraction from the same inputs is
# not redone (--force true redoes it), one from other inputs is; after a crash only the
# unfinished jobs run again.
set -euo pipefail

nj=4              # number of parallel jobs
cmd="utils/run.py"  # job runner (see cmd.sh): local or Slurm
device=auto       # auto (cuda when the job sees a GPU), cpu or cuda
batch_size=       # utterances per forward pass (empty: 1 on the CPU, 64 on a GPU)
spk_mean=false    # also write speaker-mean embeddings (true|false)
force=false       # redo even if finished (true|false)

. utils/parse_options.sh

if [ $# -ne 3 ]; then
  echo "Usage: $0 [--nj N] [--cmd CMD] [--device auto|cpu|cuda] [--spk-mean true] <model-dir> <data-dir> <out-dir>" >&2
  exit 1
fi
model_dir=$1; data=$2; dir=$3
[ "$nj" -ge 1 ] || { echo "$0: --nj must be at least 1, got $nj" >&2; exit 1; }
[[ -z $batch_size || $batch_size =~ ^[1-9][0-9]*$ ]] ||
  { echo "$0: --batch-size must be a positive integer or empty, got '$batch_size'" >&2; exit 1; }

for f in "$model_dir/config.yaml" "$data/wav.scp" "$data/utt2spk"; do
  [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }
done

inputs_digest() {  # the SHA-256 of sslspk.extraction.inputs_digest(model_dir, $1)
  local f
  for f in "$model_dir/config.yaml" "$model_dir/model.pt" "$1/wav.scp" "$1/utt2spk" "$1/segments"; do
    if [ -f "$f" ]; then sha256sum < "$f" | cut -d' ' -f1; else echo -; fi
  done | sha256sum | cut -d' ' -f1
}

if [ "$force" = true ]; then
  rm -f "$dir"/embeddings.*.scp "$dir/embeddings.scp" "$dir/spk_embeddings.scp"
fi

digest=$(inputs_digest "$data")
if [ -f "$dir/embeddings.scp" ] && [ "$(cat "$dir/embeddings.scp.inputs" 2>/dev/null)" = "$digest" ]; then
  echo "$0: $dir/embeddings.scp exists, skipping extraction"
else
  if [ -f "$dir/embeddings.scp" ]; then
    echo "$0: $dir/embeddings.scp was not made from $model_dir and $data as they are now: extracting again"
  fi
  rm -f "$dir/embeddings.scp.inputs"
  num_utts=$(wc -l < "$data/utt2spk")
  [ "$nj" -le "$num_utts" ] || nj=$num_utts
  utils/split_data.sh "$data" "$nj"
  mkdir -p "$dir/log"
  echo "$0: extracting $num_utts utterances of $data with $model_dir in $nj jobs (log: $dir/log/extract.*.log)"
  $cmd JOB=1:"$nj" "$dir/log/extract.JOB.log" \
    extract_embeddings.py --device "$device" ${batch_size:+--batch-size "$batch_size"} "$model_dir" \
      "$data/split$nj/JOB" "$dir/embeddings.JOB.ark" "$dir/embeddings.JOB.scp"
  # Merge into one sorted scp, written last (with its inputs record, it marks the extraction finished).
  tmp=$dir/.embeddings.scp.tmp
  trap 'rm -f "$tmp"' EXIT
  for j in $(seq "$nj"); do cat "$dir/embeddings.$j.scp"; done | LC_ALL=C sort > "$tmp"
  if ! cut -d' ' -f1 "$tmp" | cmp -s - <(cut -d' ' -f1 "$data/utt2spk"); then
    missing=$(cut -d' ' -f1 "$tmp" | LC_ALL=C comm -13 - <(cut -d' ' -f1 "$data/utt2spk") | wc -l)
    extra=$(cut -d' ' -f1 "$tmp" | LC_ALL=C comm -23 - <(cut -d' ' -f1 "$data/utt2spk") | wc -l)
    echo "$0: the job outputs do not match $data/utt2spk: $missing utterance(s) missing, $extra not in it" >&2
    exit 1
  fi
  mv "$tmp" "$dir/embeddings.scp"
  echo "$digest" > "$dir/.embeddings.scp.inputs.tmp"
  mv "$dir/.embeddings.scp.inputs.tmp" "$dir/embeddings.scp.inputs"
  echo "$0: wrote $(wc -l < "$dir/embeddings.scp") embeddings to $dir/embeddings.scp"
fi

if [ "$spk_mean" = true ] && [ ! "$dir/spk_embeddings.scp" -nt "$dir/embeddings.scp" ]; then
  speaker_mean_embeddings.py "$data" "$dir/embeddings.scp" "$dir/spk_embeddings.ark" "$dir/spk_embeddings.scp"
fi
