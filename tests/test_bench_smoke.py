"""The benchmark scripts run end to end at their --quick sizes and print (and append) their tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow   # end-to-end: see pyproject.toml


@pytest.mark.parametrize("script,header", [
    ("bench_scoring.py", "| method | time (s) | time / AS-norm |"),
    ("bench_extraction.py", "| model | nj (processes) | mode | utterances/s |"),
    ("bench_dataloading.py", "| augmentation | chunks/s per core (0 workers) |"),
    ("bench_dataloading.py --m4a", "| wav.scp entries | chunks/s, no augmentation | vs pipe |"),
    ("bench_training.py", "| model | threads | precision | batch | s/step |"),
    ("bench_clustering.py", "| method | time (s) | time / first faiss row |"),
    ("bench_ahc.py", "| centroids → clusters | linkage | time (s) |"),
    ("bench_stage3.py", "| embeddings | k-means → AHC | wall time (s) |"),
])
def test_bench_quick(script, header, tmp_path):
    name, *extra = script.split()
    if "--m4a" in extra and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not found (make sox installs it as root)")
    out = tmp_path / "bench.md"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(REPO / "bench" / name), *extra, "--quick", "--append", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert header in r.stdout
    text = out.read_text()
    assert text.startswith("\n### ") and header in text and f"python bench/{script} --quick" in text


def test_gpu_check_smoke(tmp_path):
    """bench/gpu_check.sh --smoke: all three parts (training, extraction, k-means) at toy sizes on the CPU."""
    out = tmp_path / "bench.md"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    r = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--smoke", "--append", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert "### GPU check: training, extraction, faiss k-means — " in text and "`bench/gpu_check.sh --smoke`" in text
    for row in ("| DINO ECAPA-TDNN 64 (smoke) | 2 |", "| WavLM tiny (smoke) + MHFA, AAM | 2 |",
                "| ECAPA-TDNN tiny | 2 |", "| WavLM tiny + MHFA | 1 |", "| 2,000 x 32 → 20 | 5 | CPU"):
        assert row in text, row


def test_emit_replaces_the_section_of_the_same_benchmark(tmp_path):
    """benchlib.emit keeps one section per benchmark title: a new run replaces it in place."""
    sys.path.insert(0, str(REPO / "bench"))
    import benchlib

    md = tmp_path / "b.md"
    md.write_text("# Benchmarks\n\n### A — 2026-01-01, cpu\n\nold a\n\n### B — 2026-01-01, cpu\n\nold b\n")
    benchlib.emit("### A — 2026-02-02, gpu\n\nnew a\n", str(md))
    benchlib.emit("### C — 2026-02-02, cpu\n\nc\n", str(md))
    assert md.read_text() == ("# Benchmarks\n\n### A — 2026-02-02, gpu\n\nnew a\n\n### B — 2026-01-01, cpu\n\nold b\n"
                              "\n### C — 2026-02-02, cpu\n\nc\n")
