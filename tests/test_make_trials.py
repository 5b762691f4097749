"""utils/make_trials.py: all pairs or deterministic samples of target/nontarget pairs, Kaldi format."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

TOOL = REPO / "utils" / "make_trials.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def _utt2spk(tmp_path, spks: int = 4, utts: int = 5):
    p = tmp_path / "utt2spk"
    p.write_text("".join(f"s{s}-u{u} s{s}\n" for s in range(spks) for u in range(utts)))
    return p


def _read(p):
    return [line.split() for line in p.read_text().splitlines()]


def test_all_pairs(tmp_path):
    r = _run(_utt2spk(tmp_path), tmp_path / "trials")
    assert r.returncode == 0, r.stderr
    trials = _read(tmp_path / "trials")
    assert len(trials) == 20 * 19 // 2 and trials == sorted(trials)
    assert sum(t[2] == "target" for t in trials) == 4 * 10
    assert all((a.split("-")[0] == b.split("-")[0]) == (lab == "target") and a < b for a, b, lab in trials)


def test_sampled_pairs_are_deterministic_and_distinct(tmp_path):
    u2s = _utt2spk(tmp_path)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert _run("--num-target", 7, "--num-nontarget", 30, "--seed", seed, u2s, tmp_path / name).returncode == 0
    a = _read(tmp_path / "a")
    assert a == _read(tmp_path / "b") and a != _read(tmp_path / "c")
    assert len({(x, y) for x, y, _ in a}) == 37 and sum(t[2] == "target" for t in a) == 7
    assert all((x.split("-")[0] == y.split("-")[0]) == (lab == "target") for x, y, lab in a)
    # Every target pair (dense case) still works.
    assert _run("--num-target", 40, "--num-nontarget", 1, u2s, tmp_path / "d").returncode == 0


def test_errors(tmp_path):
    u2s = _utt2spk(tmp_path, spks=2, utts=2)
    r = _run("--num-target", 5, "--num-nontarget", 1, u2s, tmp_path / "t")
    assert r.returncode != 0 and "only 2 / 4 exist" in r.stderr
    r = _run("--num-target", 1, u2s, tmp_path / "t")
    assert r.returncode != 0 and "both" in r.stderr
    bad = tmp_path / "bad"
    bad.write_text("u1 s1\nu2\n")
    r = _run(bad, tmp_path / "t")
    assert r.returncode != 0 and f"{bad}:2" in r.stderr


def test_library_sample_round_trips(tmp_path):
    """sample_trials gives a Trials that write_trials/read_trials keep as is, and the tool writes that list."""
    import numpy as np

    from sslspk.data.trials import read_trials, sample_trials, write_trials

    u2s = _utt2spk(tmp_path)
    utt2spk = dict(line.split() for line in u2s.read_text().splitlines())
    t = sample_trials(utt2spk, 7, 30, seed=3)
    write_trials(tmp_path / "lib", t)
    back = read_trials(tmp_path / "lib")
    assert (back.enroll, back.test) == (t.enroll, t.test) and np.array_equal(back.labels, t.labels)
    assert t.num_target == 7 and len(t) == 37
    assert _run("--num-target", 7, "--num-nontarget", 30, "--seed", 3, u2s, tmp_path / "tool").returncode == 0
    assert (tmp_path / "tool").read_bytes() == (tmp_path / "lib").read_bytes()
