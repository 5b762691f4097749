"""Mechanisms against silent wrong answers and lost inputs (issue #30): an output that is also an input,
pipes in wav.scp, trial lists that repeat pairs, a file system that refuses writes, tables written with
tabs and ``segments`` ending at -1. Each test pins one mechanism over every tool that uses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from sslspk.utils.errors import InputError

MINI_CONF = REPO / "egs" / "mini" / "v1" / "conf"


def _run(argv: list, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``argv[0]`` (a bin/ command, or a utils/ or local/ script) with the rest as arguments."""
    script = REPO / argv[0] if "/" in argv[0] else REPO / "bin" / argv[0]
    return subprocess.run([sys.executable, str(script), *map(str, argv[1:])], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


# ------------------------------------------------------------------ 1. an output that is also an input

def test_output_that_is_an_input_is_named(tmp_path):
    from sslspk.utils.fileio import check_outputs_are_not_inputs

    a = tmp_path / "a"
    a.write_text("x\n")
    (tmp_path / "link").symlink_to(a)
    os.link(a, tmp_path / "hard")
    for out in (a, tmp_path / "link", tmp_path / "hard", tmp_path / "sub" / ".." / "a"):
        with pytest.raises(InputError, match=f"output {out} is also an input"):
            check_outputs_are_not_inputs([None, a], [tmp_path / "other", out])
    with pytest.raises(InputError, match="are the same file"):
        check_outputs_are_not_inputs([a], [tmp_path / "b", tmp_path / "b"])
    check_outputs_are_not_inputs([a, None], [tmp_path / "b", None])   # distinct paths: no error


def _workspace(d: Path) -> None:
    """Valid inputs every case below may read: a data dir, a model dir, a trial list, scores, embeddings
    (so that, without the check, each command would run and write over its input)."""
    from sslspk.data.embeddings import write_embeddings

    for sub in ("data", "exp", "corpus/train", "corpus/test", "musan/noise"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    utts = [f"u{i}" for i in range(8)]
    spk = {u: f"s{i // 2}" for i, u in enumerate(utts)}
    for f in (d / "utt2spk", d / "data" / "utt2spk"):
        f.write_text("".join(f"{u} {spk[u]}\n" for u in utts))
    (d / "data" / "wav.scp").write_text("".join(f"{u} {u}.wav\n" for u in utts))
    pairs = [(a, b) for i, a in enumerate(utts) for b in utts[i + 1:]]
    label = {p: "target" if spk[p[0]] == spk[p[1]] else "nontarget" for p in pairs}
    (d / "trials").write_text("".join(f"{a} {b} {label[a, b]}\n" for a, b in pairs))
    (d / "scores").write_text("".join(f"{a} {b} {0.1 * k - 1:.3f} {label[a, b]}\n" for k, (a, b) in enumerate(pairs)))
    write_embeddings(d / "emb.ark", d / "emb.scp",
                     ((u, np.random.default_rng(i).standard_normal(4)) for i, u in enumerate(utts)))
    shutil.copy(MINI_CONF / "ssl.yaml", d / "exp" / "config.yaml")
    (d / "exp" / "model.pt").write_bytes(b"weights")
    (d / "corpus" / "train" / "utt2spk").write_text("u1 s1\n")
    (d / "corpus" / "test" / "utt2spk").write_text("u2 s2\n")
    shutil.copy(MINI_CONF / "ssl.yaml", d / "ssl.yaml")


# (command line, the input it would overwrite); paths are relative to the workspace
WRITERS = {
    "split_trials": (["split_trials.py", "utt2spk", "trials", "trials", "eval"], "trials"),
    "score": (["score.py", "trials", "emb.scp", "emb.scp"], "emb.scp"),
    "calibrate_train": (["calibrate.py", "train", "scores", "scores"], "scores"),
    "calibrate_apply": (["calibrate.py", "apply", "exp/config.yaml", "scores", "scores"], "scores"),
    "compute_metrics": (["compute_metrics.py", "exp/results.json", "--results-dir", "exp", "--name", "x"],
                        "exp/results.json"),
    "plot_det": (["plot_det.py", "a=scores", "--out", "det.png", "--points", "scores"], "scores"),
    "speaker_means": (["speaker_mean_embeddings.py", "data", "emb.scp", "spk.ark", "data/utt2spk"], "data/utt2spk"),
    "extract": (["extract_embeddings.py", "exp", "data", "emb.ark", "data/wav.scp"], "data/wav.scp"),
    "export": (["export_model.py", "exp", "exp/model.pt"], "exp/model.pt"),
    "cluster": (["cluster.py", "emb.scp", "data", "out", "--k", "2", "--ref-utt2spk", "out/utt2spk"], None),
    "split_scp": (["data_dir.py", "split-scp", "utt2spk", "utt2spk", "b"], "utt2spk"),
    "combine": (["data_dir.py", "combine", "data", "data"], "data/utt2spk"),
    "subset": (["data_dir.py", "subset", "--first", "1", "data", "data/../data"], "data/utt2spk"),
    "train_ssl": (["train_ssl.py", "--config", "ssl.yaml", "--data", "data", "--exp-dir", "data"], "data/utt2spk"),
    "train_pseudo": (["train_pseudo.py", "--config", str(MINI_CONF / "pseudo.yaml"), "--data", "data",
                      "--exp-dir", "exp", "--init", "exp"], "exp/model.pt"),
    "make_trials": (["utils/make_trials.py", "utt2spk", "utt2spk"], "utt2spk"),
    "perturb_labels": (["utils/perturb_labels.py", "data", "data/."], "data/utt2spk"),
    "prepare_fsdd": (["local/prepare_fsdd.py", "corpus", "out", "--trials", "out/test/trials"], None),
    "prepare_speechocean762": (["local/prepare_speechocean762.py", "corpus", "corpus"], "corpus/train/utt2spk"),
    "prepare_voxceleb": (["local/prepare_voxceleb.py", "out", "--vox1-dir", "out/vox1_all"], None),
    "prepare_augmentation": (["local/prepare_augmentation.py", "musan", "--musan-dir", "musan"], None),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_writer_refuses_to_overwrite_an_input(tmp_path, recipe_env, name):
    """`split_trials.py utt2spk trials trials eval` replaced the trial list by its dev half (rc 0)."""
    argv, victim = WRITERS[name]   # victim: the input it would destroy (None: fails before writing)
    _workspace(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    if name in ("prepare_fsdd", "prepare_voxceleb"):   # the input is inside the output dir
        (tmp_path / "out" / "test").mkdir(parents=True)
        (tmp_path / "out" / "vox1_all").mkdir()
        (tmp_path / "out" / "test" / "trials").write_text("1 a b\n")
        (tmp_path / "corpus" / "0_jackson_0.wav").write_bytes(b"")
    r = _run(argv, recipe_env, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out, out[-2000:]
    assert "is also an input" in out, out[-2000:]
    after = {p: p.read_bytes() for p in before if p.is_file()}
    assert after == before, f"{victim} or another input changed"
