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


def copy_recipe(src: Path, dst: Path) -> Path:
    """A runnable copy of recipe dir ``src`` at ``dst``: its files copied, utils/steps/local linked."""
    import shutil

    dst.mkdir(parents=True)
    for name in ("run.sh", "path.sh", "cmd.sh", "conf"):
        (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, dst / name)
    for name in ("utils", "steps", "local"):
        (dst / name).symlink_to(REPO / name)
    return dst


def recipe_runner(name: str, tmp_path: Path, env: dict[str, str]):
    """A copy of egs/<name>/v1 in tmp_path (its data/exp/corpus land there); returns
    ``run(*args, check=True, extra_env=None)`` running its run.sh, with ``run.dir`` and ``run.env``."""
    import subprocess

    d = copy_recipe(REPO / "egs" / name / "v1", tmp_path / name)
    env = dict(env, SSLSPK_ROOT=str(REPO))

    def run(*args: str, check: bool = True, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(["./run.sh", *args], cwd=d, env={**env, **(extra_env or {})}, capture_output=True,
                           text=True, timeout=900)
        if check:
            assert r.returncode == 0, f"run.sh {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        return r

    run.dir = d
    run.env = env
    return run


TINY = ("--num-train-speakers", "4", "--num-test-speakers", "8", "--utts-per-speaker", "8")  # egs/mini options


def tiny_configs(conf: Path) -> None:
    """Shrink conf/ssl.yaml, conf/pseudo.yaml (and conf/pseudo_refine.yaml) of a recipe copy to a few CPU seconds."""
    import yaml

    for name, epochs in (("ssl.yaml", 2), ("pseudo.yaml", 3), ("pseudo_refine.yaml", 2)):
        if name == "pseudo_refine.yaml" and not (conf / name).exists():
            continue
        c = yaml.safe_load((conf / name).read_text())
        c["train"].update(epochs=epochs, batch_size=8, num_workers=0, average_last=1)
        for v in c["data"]["views"]:
            v["seconds"] = min(v["seconds"], 1.0)
        if "model" in c:
            c["model"].update(channels=16, mfa_channels=48, attention_channels=8, se_channels=8)
        if (c.get("ssl") or {}).get("ssps"):
            c["ssl"]["ssps"].update(start_epoch=1, num_prototypes=4)
        if "dlg_lc" in c:
            c["dlg_lc"]["start_epoch"] = 1
            if "correct_start_epoch" in c["dlg_lc"]:
                c["dlg_lc"]["correct_start_epoch"] = 2
        (conf / name).write_text(yaml.safe_dump(c))
