#!/usr/bin/env bash
# GPU check: one command, under 8 minutes on one NVIDIA GPU, whose figures replace the "GPU check"
# section of docs/benchmarks.md: DINO ECAPA-TDNN 1024 and WavLM Base+ + MHFA training steps/s with
# bf16 AMP at the recipe's batch sizes, peak GPU memory, largest batch; extraction utterances/s;
# faiss-gpu k-means 1M x 256 -> 50k (bench/gpu_check.py says how each is measured).
#
# Usage: bench/gpu_check.sh [--smoke] [--append FILE] [--faiss-venv DIR]
#   --smoke        every part at toy sizes on the CPU in seconds, faiss-cpu, no install (the test suite runs it);
#                  prints the section, and writes it only with --append
#   --append FILE  markdown file the section goes to (default docs/benchmarks.md; --smoke: none)
#   --faiss-venv   venv for faiss-gpu (default .venv/faiss-gpu): created and `pip install faiss-gpu-cu12`
#                  there in its own step, as faiss-cpu in .venv provides the same module; if that fails
#                  or faiss sees no GPU, the k-means row says why and the rest still runs
# Python: $PYTHON, else .venv/bin/python (make setup), else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false; append=; faiss_venv=.venv/faiss-gpu
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=true; shift ;;
    --append) append=$2; shift 2 ;;
    --faiss-venv) faiss_venv=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
py=${PYTHON:-.venv/bin/python}; [ -x "$py" ] || py=python3

if [ "$smoke" = true ]; then
  exec "$py" bench/gpu_check.py --smoke ${append:+--append "$append"}
fi
append=${append:-docs/benchmarks.md}

# faiss-gpu, in its own step and venv; failing soft.
kmeans=(--kmeans-python "$faiss_venv/bin/python")
has_gpu_faiss() { "$faiss_venv/bin/python" -c "import faiss, sys; sys.exit(faiss.get_num_gpus() == 0)" 2>/dev/null; }
if ! has_gpu_faiss; then
  echo "$0: installing faiss-gpu-cu12 into $faiss_venv (log: $faiss_venv.log)"
  if ! { "$py" -m venv "$faiss_venv" && "$faiss_venv/bin/python" -m pip install -q faiss-gpu-cu12 numpy; } \
       > "$faiss_venv.log" 2>&1; then
    kmeans=(--kmeans-skipped "faiss-gpu-cu12 did not install ($(tail -n 1 "$faiss_venv.log" | cut -c1-120))")
  elif ! has_gpu_faiss; then
    kmeans=(--kmeans-skipped "faiss-gpu-cu12 installed but sees no GPU")
  fi
fi
echo "$0: k-means: ${kmeans[*]}"
exec "$py" bench/gpu_check.py "${kmeans[@]}" --append "$append"
