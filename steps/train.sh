#!/usr/bin/env bash
# Launch a training entry point with torchrun: one process per GPU (or one on CPU), one or
# several nodes. Every option of the entry point goes after the options of this script.
#
# Usage: steps/train.sh [options] <entry-point> [entry-point options]
#  e.g.: steps/train.sh train_ssl.py --config conf/ssl.yaml --data data/train --exp-dir exp/ssl
#        steps/train.sh --nproc-per-node 8 train_ssl.py ...                  # 8 GPUs, one node
#        steps/train.sh --nnodes 4 --nproc-per-node 8 --rdzv-endpoint node01:29400 train_ssl.py ...
# On Slurm, run one `steps/train.sh --nnodes $SLURM_NNODES ...` per node (srun --ntasks-per-node=1),
# with --rdzv-endpoint the first node of the allocation (see egs/*/cmd.sh).
set -euo pipefail

nnodes=1             # number of nodes
nproc_per_node=1     # processes per node (= GPUs per node; 1 on CPU)
rdzv_endpoint=       # host:port of the rendezvous (multi-node; c10d backend)
rdzv_id=sslspk       # job id shared by the nodes of one run

. utils/parse_options.sh

if [ $# -lt 1 ]; then
  echo "Usage: $0 [--nnodes N --nproc-per-node P --rdzv-endpoint HOST:PORT] <entry-point> [options]" >&2
  exit 1
fi
script=$(command -v "$1" || true)
[ -n "$script" ] || { echo "$0: entry point '$1' not found on PATH (source path.sh?)" >&2; exit 1; }
shift

if [ "$nnodes" -gt 1 ]; then
  [ -n "$rdzv_endpoint" ] || { echo "$0: --nnodes $nnodes needs --rdzv-endpoint HOST:PORT" >&2; exit 1; }
  exec torchrun --nnodes "$nnodes" --nproc-per-node "$nproc_per_node" --rdzv-backend c10d \
    --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" "$script" "$@"
fi
exec torchrun --standalone --nnodes 1 --nproc-per-node "$nproc_per_node" "$script" "$@"
