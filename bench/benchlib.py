"""Helpers shared by the benchmark scripts: machine description, peak-RSS workers, markdown output."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
#: 1-minute load average when the benchmark script started (imported this module).
START_LOAD = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


#: A small WavLM: 4 Transformer layers of 256, a 7-layer CNN of 256 channels with WavLM's strides (50 frames/s).
WAVLM_SMALL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024,
               "conv_dim": [256] * 7}
#: A tiny one for --quick runs (same CNN layout, 32 channels).
WAVLM_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}


def save_wavlm(path: str, backbone: dict, norm: str = "group") -> None:
    """A randomly initialised WavLM (``WavLMConfig(**backbone)``; ``{}``: WavLM Base/Base+ shapes) saved with
    ``save_pretrained``, to be loaded as a pretrained one; ``norm``: the CNN's ``feat_extract_norm``."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(**backbone, feat_extract_norm=norm, mask_time_prob=0.0)).save_pretrained(path)


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
    """A sentence saying that other processes were using the CPU when the script started (1-minute
    load average above 0.5, before the benchmark's own work), or ``""`` when none were."""
    if START_LOAD is None or START_LOAD <= 0.5:
        return ""
    return (f"Measured with other load on the machine: 1-minute load average {START_LOAD:.2f} on {cores()} "
            "cores when it started.")


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Worker:
    """A running benchmark worker process and what it runs (for error messages)."""

    proc: subprocess.Popen
    what: str


def start_worker(module: str, func: str, args: dict, threads: int = 1) -> Worker:
    """Start ``bench/<module>.py:<func>(args)`` in a fresh process with ``threads`` BLAS/torch threads;
    :func:`finish_worker` collects its result."""
    code = ("import json, resource, sys; sys.path.insert(0, sys.argv[1]); import importlib; "
            "r = getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(json.loads(sys.argv[4])); "
            "r['maxrss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(r))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, "-c", code, BENCH_DIR, module, func, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return Worker(proc, f"{module}.{func}({args})")


def finish_worker(worker: Worker) -> dict:
    """Wait for a :func:`start_worker` process; its JSON result with ``maxrss_mib`` added (the
    worker's peak resident memory, ``getrusage``)."""
    out, err = worker.proc.communicate()
    if worker.proc.returncode != 0:
        raise RuntimeError(f"{worker.what} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run_worker(module: str, func: str, args: dict, threads: int = 1) -> dict:
    """``bench/<module>.py:<func>(args)`` in a fresh process; see :func:`start_worker`."""
    return finish_worker(start_worker(module, func, args, threads))


def command(script: str) -> str:
    """The command line that ran ``script`` (for the markdown section)."""
    return " ".join([f"python bench/{script}", *(shlex.quote(x) for x in sys.argv[1:])])


def section_title(heading: str) -> str:
    """The benchmark's title in a section heading ``### <title> — <date>, <machine>``."""
    return heading.removeprefix("### ").split(" — ", 1)[0].strip()


def emit(section: str, path: str | None) -> None:
    """Print a markdown section (first line ``### <title> — <date>, <machine>``) and, when ``path`` is
    given, write it there: it replaces the section of the same title (up to the next ``### ``
    heading), so the file keeps one current section per benchmark, or is appended; atomically."""
    print(section)
    if not path:
        return
    title = section_title(section.splitlines()[0])
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    parts = text.split("\n### ")
    for i in range(1, len(parts)):
        if section_title(parts[i].splitlines()[0]) == title:
            parts[i] = section.removeprefix("### ").rstrip("\n") + "\n"
            text = "\n### ".join(parts)
            break
    else:
        text += "\n" + section
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
