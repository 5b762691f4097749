#!/usr/bin/env bash
# Cluster the embeddings of a training data dir into pseudo speaker labels (recipe stage 3).
#
# Usage: steps/cluster.sh [--cmd CMD] [cluster.py options] <embeddings.scp> <data-dir> <out-data-dir>
#  e.g.: steps/cluster.sh --k 50000 --ahc-clusters 7500 --min-cluster-size 5 \
#          exp/ssl/embeddings/train/embeddings.scp data/train data/train_pl_iter1
#
# Every option but --cmd goes to bin/cluster.py untouched (`cluster.py --help` lists them: the fields of
# sslspk.cluster.config.ClusterConfig, --ref-utt2spk, --report-dir, --force true|false, ...): an option added
# there needs no change here. The options are checked before the job starts (`cluster.py --check-options
# true`), then cluster.py runs through --cmd with its log in <report-dir>/log/cluster.log (--report-dir,
# default <out-data-dir>, is where clusters.json and report.md go). <out-data-dir> is <data-dir> with
# utt2spk/spk2utt holding pseudo speakers pl00000, pl00001, ... (by decreasing size). A complete output
# made from the same inputs and options (its stamp) is not redone (--force true redoes it).
set -euo pipefail

cmd="utils/run.py"   # job runner (see cmd.sh): local or Slurm
usage="Usage: $0 [--cmd CMD] --k K [cluster.py options] <embeddings.scp> <data-dir> <out-data-dir> (cluster.py --help: the options)"
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --cmd) [ $# -ge 2 ] || { echo "$usage" >&2; exit 1; }; cmd=$2; shift 2 ;;
    --cmd=*) cmd=${1#--cmd=}; shift ;;
    --help|-h) echo "$usage"; exec cluster.py --help ;;
    *) args+=("$1"); shift ;;
  esac
done
n=${#args[@]}
[ $n -ge 3 ] || { echo "$usage" >&2; exit 1; }
scp=${args[n-3]}; data=${args[n-2]}; dir=${args[n-1]}
report_dir=$dir
for ((i = 0; i < n - 4; i++)); do [ "${args[i]}" != --report-dir ] || report_dir=${args[i+1]}; done

if ! err=$(cluster.py --check-options true "${args[@]}" 2>&1 > /dev/null); then
  printf '%s\n%s\n' "$err" "$usage" >&2
  exit 1
fi
for f in "$scp" "$data/utt2spk"; do [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }; done
mkdir -p "$report_dir/log"
echo "$0: clustering $(wc -l < "$scp") embeddings of $data into $dir (log: $report_dir/log/cluster.log)"
if ! $cmd "$report_dir/log/cluster.log" cluster.py "${args[@]}"; then
  grep -v "^#" "$report_dir/log/cluster.log" | tail -n 5 >&2
  exit 1
fi
grep -v "^#" "$report_dir/log/cluster.log" | tail -n 1
