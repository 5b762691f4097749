"""The benchmark scripts run end to end at their --quick sizes and print (and append) their tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,header", [
    ("bench_scoring.py", "| method | time (s) | time / AS-norm |"),
    ("bench_extraction.py", "| model | nj (processes) | mode | utterances/s |"),
    ("bench_dataloading.py", "| augmentation | chunks/s per core (0 workers) |"),
    ("bench_training.py", "| model | device | precision | batch | s/step |"),
    ("bench_clustering.py", "| method | time (s) | time / first faiss row |"),
])
def test_bench_quick(script, header, tmp_path):
    out = tmp_path / "bench.md"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(REPO / "bench" / script), "--quick", "--append", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert header in r.stdout
    text = out.read_text()
    assert text.startswith("\n### ") and header in text and f"python bench/{script} --quick" in text
