"""Fault catalogue, interruptions: ``kill -9`` of a real ``run.sh --stage N`` at a random point
(one per stage), then the same command again, gives bitwise the outputs of an uninterrupted run.

egs/mini at tiny size. The whole process tree is killed, job-runner jobs included (they run in
sessions of their own), as a node failure or ``scancel`` would. Stages: 2 (SSL training: resume
from the last checkpoint with the same optimizer/scheduler/RNG/sampler state), 3 (extraction of the
training set in 2 jobs + clustering), 6 (extraction of the test set, cosine/AS-norm scoring,
calibration) of every system.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from contextlib import chdir, suppress
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from conftest import REPO, TINY, copy_recipe, tiny_configs

pytestmark = pytest.mark.slow   # end-to-end: see pyproject.toml

EXP = Path("exp") / "mini"
SYSTEMS = ("baseline", "ssl_untrained", "ssl")
OUTPUTS = {   # what each stage writes (removed before the interrupted run)
    2: [EXP / "ssl"],
    3: [EXP / "ssl" / "embeddings" / "train", EXP / "pl_iter1" / "data", EXP / "pl_iter1"],
    6: [EXP / s / sub for s in SYSTEMS for sub in ("embeddings", "scores", "trials", "calibration.json",
                                                   "results.json", "results.md")] + [EXP / "results.md"],
}


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants: frozen (SIGSTOP) first so none can fork away."""
    frozen: set[int] = set()
    while new := [p for p in _descendants(pid) if p not in frozen]:
        for p in new:
            with suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        frozen.update(new)
    for p in frozen:
        with suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def run(d: Path, env: dict, *args: str) -> tuple[float, str]:
    """Run the recipe to completion; returns its duration and stdout."""
    t = time.time()
    r = subprocess.run(["./run.sh", *TINY, "--ahc-clusters", "6", *args], cwd=d, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"run.sh {' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return time.time() - t, r.stdout


def outputs(d: Path, stage: int) -> dict[str, object]:
    """The final results of a stage, in comparable form."""
    if stage == 2:
        state = torch.load(d / EXP / "ssl" / "model.pt", weights_only=True)["model"]
        return {k: v.numpy() for k, v in state.items()}
    if stage == 3:
        with chdir(d):   # scp entries point into arks relative to the recipe dir, as in Kaldi
            emb = dict(kaldiio.load_scp(str(EXP / "ssl" / "embeddings" / "train" / "embeddings.scp")).items())
        return {"utt2spk": (d / EXP / "pl_iter1" / "data" / "utt2spk").read_text(),
                **{u: emb[u] for u in emb}}
    return {f"{s}/{p.name}": p.read_text() for s in SYSTEMS for p in sorted((d / EXP / s / "scores").glob("*.score"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """egs/mini (tiny, 8 SSL epochs) run through stages 0-3 and 6 without interruption; the time
    window of the kill per stage (stage 2: two epochs; others: their duration)."""
    base = tmp_path_factory.mktemp("interrupt")
    d = copy_recipe(REPO / "egs" / "mini" / "v1", base / "reference")
    tiny_configs(d / "conf")
    (d / "conf" / "ssl.yaml").write_text((d / "conf" / "ssl.yaml").read_text().replace("epochs: 2", "epochs: 8"))
    import sys

    env = dict(os.environ, SSLSPK_ROOT=str(REPO), SSLSPK_PYTHON=sys.executable, LC_ALL="C",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), str(REPO / "bin"), os.environ["PATH"]]))
    run(d, env, "--stop-stage", "1")
    seconds = {n: run(d, env, "--stage", str(n), "--stop-stage", str(n))[0] for n in (2, 3, 6)}
    epochs = [float(line.split(" seconds=")[1].split()[0]) for line in (d / EXP / "ssl" / "train.log").read_text()
              .splitlines() if " seconds=" in line]
    seconds[2] = 2 * sum(epochs) / len(epochs)   # stage 2 is killed within 2 epochs after the first checkpoint
    return d, env, seconds, base


# The kill comes at a random time after the stage has made some progress (a first checkpoint, a
# first finished extraction job), so that the rerun has partial outputs to resume from or reuse.
PROGRESS = {2: "exp/mini/ssl/checkpoints/epoch_1.pt", 3: "exp/mini/ssl/embeddings/train/embeddings.*.scp",
            6: "exp/mini/*/embeddings/*/embeddings.*.scp"}


@pytest.mark.parametrize("stage", [2, 3, 6])
def test_kill_and_rerun_gives_the_same_outputs(reference, stage, seed=0):
    """One kill per stage, at a time drawn with ``seed`` (three seeds per stage caught nothing that one did not)."""
    ref, env, seconds, base = reference
    d = base / f"stage{stage}_seed{seed}"
    shutil.copytree(ref, d, symlinks=True)
    for p in OUTPUTS[stage]:
        p = d / p
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    args = ("--stage", str(stage), "--stop-stage", str(stage))
    p = subprocess.Popen(["./run.sh", *TINY, "--ahc-clusters", "6", *args], cwd=d, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(d.glob(PROGRESS[stage])):
        assert p.poll() is None and time.time() < deadline, f"no {PROGRESS[stage]} before the end of the run"
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 1.0 if stage == 2 else 0.1) * seconds[stage])
    assert p.poll() is None, "the run ended before the kill: nothing tested"
    kill_tree(p.pid)
    p.wait()

    _, stdout = run(d, env, *args)
    want, got = outputs(ref, stage), outputs(d, stage)
    assert want.keys() == got.keys(), (stage, sorted(set(want) ^ set(got))[:5])
    for k in want:
        assert np.array_equal(want[k], got[k]) if isinstance(want[k], np.ndarray) else want[k] == got[k], k
    # The rerun used what the killed run had finished, and no temp file survives it.
    if stage == 2:
        assert "resumed from" in (d / EXP / "ssl" / "train.log").read_text()
    else:
        logs = stdout + "".join(f.read_text() for f in d.glob("exp/mini/*/embeddings/*/log/*.log"))
        assert "exists" in logs, stdout[-2000:]
    assert not [q for q in d.rglob("*.tmp") if q.is_file()], [str(q) for q in d.rglob("*.tmp")][:5]


def test_finished_stages_are_skipped_and_force_redoes_them(reference):
    ref, env, _, base = reference
    d = base / "force"
    shutil.copytree(ref, d, symlinks=True)
    model = d / EXP / "ssl" / "model.pt"
    ark = d / EXP / "ssl" / "embeddings" / "train" / "embeddings.1.ark"
    stamps = model.stat().st_mtime_ns, ark.stat().st_mtime_ns
    _, stdout = run(d, env, "--stage", "2", "--stop-stage", "3")
    assert "training already finished" in stdout and "exists, skipping extraction" in stdout, stdout[-2000:]
    assert (model.stat().st_mtime_ns, ark.stat().st_mtime_ns) == stamps
    _, stdout = run(d, env, "--stage", "2", "--stop-stage", "3", "--force", "true")
    assert "already finished" not in stdout and "skipping" not in stdout, stdout[-2000:]
    assert model.stat().st_mtime_ns > stamps[0] and ark.stat().st_mtime_ns > stamps[1]
    for stage in (2, 3):   # redone from scratch: the same results
        want, got = outputs(ref, stage), outputs(d, stage)
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) if isinstance(want[k], np.ndarray)
                                                 else want[k] == got[k] for k in want)
