"""Shared fixtures: repository paths and an environment in which recipes and bin/ scripts run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd"


@pytest.fixture
def recipe_env() -> dict[str, str]:
    """Environment with this interpreter's bin dir and the repo's bin/ first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(REPO / "bin"), env.get("PATH", "")])
    env["SSLSPK_PYTHON"] = sys.executable
    env["LC_ALL"] = "C"
    return env


def write_wav(path: Path, seconds: float, sr: int = 16000, freq: float = 220.0, seed: int = 0) -> Path:
    """Write a short tone-plus-noise WAV (16-bit) and return its path."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return path
