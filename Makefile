# The two commands of the README:
#   make demo   set up .venv, then run the embedded recipe egs/mini/v1 end to end
#   make test   set up .venv, then the linter (ruff, configured in pyproject.toml) and the whole test suite
#               (a developer's quick loop: .venv/bin/python -m pytest -m "not slow" tests)
#   make bench  set up .venv, then run every CPU benchmark at its default sizes, each replacing its section
#               of docs/benchmarks.md (bench/bench_stage3.py, about an hour, and bench/gpu_check.sh on a
#               GPU machine are run apart)
# Set-up is idempotent: .venv/.installed is rebuilt only when the pins change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench tools clean-demo

setup: $(STAMP) tools

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.9.1
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# sox is used by Kaldi-style `wav.scp` pipes, ffmpeg by VoxCeleb2's m4a (conversion, its tests and
# bench_dataloading); installed with apt-get when possible.
tools:
	@command -v sox >/dev/null 2>&1 && command -v ffmpeg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq sox ffmpeg >/dev/null) || echo "WARNING: could not install sox and ffmpeg"; \
	  else echo "WARNING: sox or ffmpeg not found; install them (e.g. 'sudo apt-get install sox ffmpeg') for wav.scp pipes and m4a"; fi; }

demo: setup
	cd egs/mini/v1 && ./run.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

BENCH_MD := docs/benchmarks.md

bench: setup
	$(PY) bench/bench_metrics.py --append $(BENCH_MD)
	$(PY) bench/bench_clustering.py --append $(BENCH_MD)
	$(PY) bench/bench_fbank.py --append $(BENCH_MD)
	$(PY) bench/bench_scoring.py --append $(BENCH_MD)
	$(PY) bench/bench_extraction.py --append $(BENCH_MD)
	$(PY) bench/bench_dataloading.py --append $(BENCH_MD)
	$(PY) bench/bench_dataloading.py --m4a --append $(BENCH_MD)
	$(PY) bench/bench_ahc.py --append $(BENCH_MD)
	$(PY) bench/bench_training.py --cpu-amp --append $(BENCH_MD)

clean-demo:
	rm -rf egs/mini/v1/data egs/mini/v1/exp egs/mini/v1/corpus
