"""Helpers shared by the benchmark scripts: machine description, peak-RSS workers, markdown output."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)


def machine() -> str:
    """CPU model and usable core count (from /proc/cpuinfo where available)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {cores()} cores"


def load_note() -> str:
    """The 1-minute load average now, as a sentence: other processes sharing the cores show up here."""
    if not hasattr(os, "getloadavg"):
        return ""
    load = os.getloadavg()[0]
    busy = " (another process was using the CPU)" if load > 0.5 else ""
    return f"Load average when the run started: {load:.2f} on {cores()} cores{busy}."


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_worker(module: str, func: str, args: dict, threads: int = 1) -> dict:
    """``bench/<module>.py:<func>(args)`` in a fresh process (``threads`` BLAS/torch threads); returns its
    JSON-able result with ``maxrss_mib`` added: the worker's peak resident memory (``getrusage``)."""
    code = ("import json, resource, sys; sys.path.insert(0, sys.argv[1]); import importlib; "
            "r = getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(json.loads(sys.argv[4])); "
            "r['maxrss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(r))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", code, BENCH_DIR, module, func, json.dumps(args)],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{module}.{func}({args}) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def command(script: str) -> str:
    """The command line that ran ``script`` (for the markdown section)."""
    return " ".join([f"python bench/{script}", *(shlex.quote(x) for x in sys.argv[1:])])


def emit(section: str, append: str | None) -> None:
    """Print a markdown section and append it to ``append`` when given."""
    print(section)
    if append:
        with open(append, "a", encoding="utf-8") as f:
            f.write("\n" + section)
