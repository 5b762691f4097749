#!/usr/bin/env bash
# Extract embeddings of a Kaldi data dir with a model dir, in nj parallel jobs.
#
# Usage: steps/extract_embeddings.sh [options] <model-dir> <data-dir> <out-dir>
#  e.g.: steps/extract_embeddings.sh --nj 4 exp/baseline data/test exp/baseline/embeddings/test
#
# Writes <out-dir>/embeddings.scp (merged, sorted; per-job arks beside it), with --segments N
# <out-dir>/segments.scp ([N, D] matrices of window embeddings, the authors' test-time segments:
# theolepage/wavlm_ssl_sv:DatasetLoader.py loadWAV) and, with --spk-mean true,
# <out-dir>/spk_embeddings.scp (speaker means). Logs: <out-dir>/log/.
# Each scp has a stamp (<scp>.stamp, bin/stamp.py: the SHA-256 of the model's config.yaml and model.pt
# and of the data dir's wav.scp, utt2spk and segments, and the options --max-seconds or
# --segments/--segment-seconds): an extraction from the same inputs is not redone (--force true redoes
# it), one from other inputs is; after a crash only the unfinished jobs run again. An scp made before
# stamps (with its old <scp>.inputs record) is accepted once when that record matches, then stamped.
set -euo pipefail

nj=4              # number of parallel jobs
cmd="utils/run.py"  # job runner (see cmd.sh): local or Slurm
device=auto       # auto (cuda when the job sees a GPU), cpu or cuda
batch_size=       # utterances per forward pass (empty: 1 on the CPU, 64 on a GPU)
spk_mean=false    # also write speaker-mean embeddings (true|false)
max_seconds=      # embed only the first S seconds of each utterance (empty: all of it)
segments=0        # > 0: also <out-dir>/segments.scp, per utterance the [N, D] embeddings of N evenly spaced windows
segment_seconds=4.015  # window length: 400 x 160 + 240 samples at 16 kHz (theolepage/wavlm_ssl_sv:DatasetLoader.py)
force=false       # redo even if finished (true|false)

. utils/parse_options.sh

if [ $# -ne 3 ]; then
  echo "Usage: $0 [--nj N] [--cmd CMD] [--device auto|cpu|cuda] [--spk-mean true] [--max-seconds S]" >&2
  echo "          [--segments N [--segment-seconds S]] <model-dir> <data-dir> <out-dir>" >&2
  exit 1
fi
model_dir=$1; data=$2; dir=$3
[ "$nj" -ge 1 ] || { echo "$0: --nj must be at least 1, got $nj" >&2; exit 1; }
[[ -z $batch_size || $batch_size =~ ^[1-9][0-9]*$ ]] ||
  { echo "$0: --batch-size must be a positive integer or empty, got '$batch_size'" >&2; exit 1; }
number='^([0-9]+\.?[0-9]*|\.[0-9]+)$'   # a positive decimal (checked > 0 by extract_embeddings.py)
[[ -z $max_seconds || $max_seconds =~ $number ]] ||
  { echo "$0: --max-seconds must be a number of seconds or empty, got '$max_seconds'" >&2; exit 1; }
[[ $segment_seconds =~ $number ]] ||
  { echo "$0: --segment-seconds must be a number of seconds, got '$segment_seconds'" >&2; exit 1; }

for f in "$model_dir/config.yaml" "$data/wav.scp" "$data/utt2spk"; do
  [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }
done

legacy_digest() {  # <options>: the <scp>.inputs record of before stamps (sslspk.extraction.inputs_digest)
  local f digest
  digest=$(for f in "$model_dir/config.yaml" "$model_dir/model.pt" "$data/wav.scp" "$data/utt2spk" "$data/segments"; do
    if [ -f "$f" ]; then sha256sum < "$f" | cut -d' ' -f1; else echo -; fi
  done | sha256sum | cut -d' ' -f1)
  echo "$digest${1:+ $1}"
}

tmp=; trap 'rm -f "$tmp"' EXIT
jforce=(); [ "$force" != true ] || jforce=(--force true)
stamp_inputs=()   # what every scp is made from (sslspk.extraction.extraction_stamp)
for f in "$model_dir/config.yaml" "$model_dir/model.pt" "$data/wav.scp" "$data/utt2spk" "$data/segments"; do
  stamp_inputs+=(--input "$f")
done
extract() {  # <name> <options record> [extract_embeddings.py options]: writes $dir/<name>.scp
  local name=$1 options=$2 log=$dir/log/${1/embeddings/extract}.JOB.log num_utts missing extra j o
  local stamp=("${stamp_inputs[@]}")
  shift 2
  for o in $options; do stamp+=(--option "$o"); done
  local legacy=()   # an scp made before stamps: accepted once when its old record matches
  [ ! -f "$dir/$name.scp.inputs" ] || legacy=(--legacy-marker "$dir/$name.scp.inputs" --legacy-content "$(legacy_digest "$options")")
  if [ "$force" != true ] && [ -f "$dir/$name.scp" ] && stamp.py check "${stamp[@]}" "${legacy[@]}" "$dir/$name.scp" > /dev/null; then
    echo "$0: $dir/$name.scp exists, skipping extraction"
    return
  fi
  if [ -f "$dir/$name.scp" ]; then
    echo "$0: $dir/$name.scp was not made from $model_dir and $data ${options:+($options) }as they are now: extracting again"
  fi
  rm -f "$dir/$name.scp.stamp" "$dir/$name.scp.inputs"
  num_utts=$(wc -l < "$data/utt2spk")
  [ "$nj" -le "$num_utts" ] || nj=$num_utts
  utils/split_data.sh "$data" "$nj"
  mkdir -p "$dir/log"
  echo "$0: extracting $num_utts utterances of $data with $model_dir ${options:+($options) }in $nj jobs (log: $log)"
  $cmd JOB=1:"$nj" "$log" \
    extract_embeddings.py --device "$device" ${batch_size:+--batch-size "$batch_size"} "${jforce[@]}" "$@" "$model_dir" \
      "$data/split$nj/JOB" "$dir/$name.JOB.ark" "$dir/$name.JOB.scp"
  # Merge into one sorted scp, written last (with its inputs record, it marks the extraction finished).
  tmp=$dir/.$name.scp.tmp   # global: removed on exit
  for j in $(seq "$nj"); do cat "$dir/$name.$j.scp"; done | LC_ALL=C sort > "$tmp"
  # ids as the library reads them: the first field of a line split at any run of whitespace (tabs too)
  if ! awk '{print $1}' "$tmp" | cmp -s - <(awk '{print $1}' "$data/utt2spk"); then
    missing=$(awk '{print $1}' "$tmp" | LC_ALL=C comm -13 - <(awk '{print $1}' "$data/utt2spk") | wc -l)
    extra=$(awk '{print $1}' "$tmp" | LC_ALL=C comm -23 - <(awk '{print $1}' "$data/utt2spk") | wc -l)
    echo "$0: the job outputs do not match $data/utt2spk: $missing utterance(s) missing, $extra not in it" >&2
    exit 1
  fi
  mv "$tmp" "$dir/$name.scp"
  stamp.py write "${stamp[@]}" "$dir/$name.scp"
  echo "$0: wrote $(wc -l < "$dir/$name.scp") embeddings to $dir/$name.scp"
}

full=(); full_options=
if [ -n "$max_seconds" ]; then full=(--max-seconds "$max_seconds"); full_options="max_seconds=$(LC_ALL=C printf %g "$max_seconds")"; fi
extract embeddings "$full_options" "${full[@]}"
if [ "$segments" -gt 0 ]; then
  extract segments "segments=$segments segment_seconds=$(LC_ALL=C printf %g "$segment_seconds")" \
    --segments "$segments" --segment-seconds "$segment_seconds"
fi

means=(--input "$dir/embeddings.scp" --input "$data/utt2spk")
if [ "$spk_mean" = true ] && { [ "$force" = true ] || ! stamp.py check "${means[@]}" "$dir/spk_embeddings.scp" > /dev/null; }; then
  rm -f "$dir/spk_embeddings.scp.stamp"
  speaker_mean_embeddings.py "$data" "$dir/embeddings.scp" "$dir/spk_embeddings.ark" "$dir/spk_embeddings.scp"
  stamp.py write "${means[@]}" "$dir/spk_embeddings.scp"
fi
