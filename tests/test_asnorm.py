"""AS-norm against a per-trial reference loop; blocks, top-N clipping, cohort speaker means, CLI."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from sslspk.data.embeddings import write_embeddings
from sslspk.scoring.asnorm import asnorm_trials, cohort_stats
from sslspk.scoring.cosine import score_trials


def reference_asnorm(emb, test_emb, enroll, test, cohort, top_n, mean=None, scale=None):
    """Slow and plain: one trial at a time, sorting the full cohort score list."""
    def norm(v):
        v = np.asarray(v, dtype=np.float64)
        v = v - mean if mean is not None else v
        v = v / scale if scale is not None else v
        return v / np.linalg.norm(v)

    coh = [norm(c) for c in cohort]
    e_tab, t_tab = dict(zip(*emb)), dict(zip(*test_emb))
    out = []
    for e, t in zip(enroll, test):
        ve, vt = norm(e_tab[e]), norm(t_tab[t])
        s = float(ve @ vt)
        z = []
        for v in (ve, vt):
            top = sorted((float(v @ c) for c in coh), reverse=True)[:top_n]
            mu = sum(top) / len(top)
            sd = (sum((x - mu) ** 2 for x in top) / len(top)) ** 0.5
            z.append((s - mu) / sd)
        out.append(0.5 * (z[0] + z[1]))
    return np.array(out)


@pytest.mark.parametrize("shared,top_n,block", [(True, 7, 3), (False, 20, 1000), (True, 1000, 5)])
def test_asnorm_matches_reference_loop(shared, top_n, block):
    rng = np.random.default_rng(1)
    keys = [f"u{i}" for i in range(40)]
    mat = rng.normal(size=(40, 12)) + 1.0
    t_keys = [f"t{i}" for i in range(25)]
    t_mat = rng.normal(size=(25, 12)) + 1.0
    cohort = rng.normal(size=(30, 12)) + 1.0
    enroll = [keys[i] for i in rng.integers(0, 40, 200)]
    test = [keys[i] for i in rng.integers(0, 40, 200)] if shared else [t_keys[i] for i in rng.integers(0, 25, 200)]
    mean, scale = mat.mean(0), mat.std(0)
    test_emb = None if shared else (t_keys, t_mat)
    got = asnorm_trials((keys, mat), enroll, test, cohort, top_n=top_n, mean=mean, scale=scale,
                        test_emb=test_emb, block=block)
    ref = reference_asnorm((keys, mat), test_emb or (keys, mat), enroll, test, cohort, top_n, mean, scale)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    # AS-norm changes the scores (not an identity) but keeps the per-trial cosine ordering information.
    cos = score_trials((keys, mat), enroll, test, mean=mean, scale=scale, test_emb=test_emb)
    assert not np.allclose(got, cos)


def test_topn_clipped_to_cohort_and_validated():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = rng.normal(size=(3, 4))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    mu, sd = cohort_stats(x, c, top_n=300, block=2)
    np.testing.assert_allclose(mu, (x @ c.T).mean(1))
    np.testing.assert_allclose(sd, (x @ c.T).std(1))
    with pytest.raises(ValueError, match="top_n"):
        cohort_stats(x, c, top_n=0)
    with pytest.raises(ValueError, match="dim"):
        asnorm_trials((["a"], np.ones((1, 4))), ["a"], ["a"], np.ones((2, 5)))


def test_speaker_mean_cohort():
    """With cohort_groups the cohort is the mean of each group's length-normalised rows."""
    rng = np.random.default_rng(0)
    emb = (["e", "t"], rng.normal(size=(2, 3)))
    rows = rng.normal(size=(4, 3))
    grouped = asnorm_trials(emb, ["e"], ["t"], rows, top_n=2, cohort_groups=np.array(["b", "a", "a", "b"]))
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    means = np.stack([unit[[1, 2]].mean(0), unit[[0, 3]].mean(0)])
    np.testing.assert_allclose(grouped, asnorm_trials(emb, ["e"], ["t"], means, top_n=2))


def _toy(tmp_path):
    rng = np.random.default_rng(3)
    spk = {f"s{s}-u{u}": s for s in range(6) for u in range(5)}
    centers = rng.normal(size=(6, 10))
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp",
                     [(k, centers[s] + 0.5 * rng.normal(size=10)) for k, s in spk.items()])
    write_embeddings(tmp_path / "c.ark", tmp_path / "c.scp",
                     [(f"c{i}", rng.normal(size=10)) for i in range(8)])
    keys = list(spk)
    with open(tmp_path / "trials", "w") as f:
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                f.write(f"{keys[i]} {keys[j]} {'target' if spk[keys[i]] == spk[keys[j]] else 'nontarget'}\n")
    return keys


def run(*a):
    return subprocess.run([sys.executable, *a], capture_output=True, text=True, cwd=REPO)


def test_score_cli_asnorm_and_missing_ids(tmp_path):
    _toy(tmp_path)
    r = run("bin/score.py", "--cohort-scp", str(tmp_path / "c.scp"), "--top-n", "300",
            str(tmp_path / "trials"), str(tmp_path / "e.scp"), str(tmp_path / "as.score"))
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "as.score").read_text().splitlines()
    assert len(lines) == 435
    # Trials naming ids without embeddings: an error listing them, or skipped with a warning.
    with open(tmp_path / "trials", "a") as f:
        f.write("s0-u0 ghost1 nontarget\nghost2 s0-u1 target\n")
    r = run("bin/score.py", str(tmp_path / "trials"), str(tmp_path / "e.scp"), str(tmp_path / "x.score"))
    assert r.returncode == 1 and "ghost" in r.stderr and "Traceback" not in r.stderr
    r = run("bin/score.py", "--skip-missing", "--cohort-scp", str(tmp_path / "c.scp"),
            str(tmp_path / "trials"), str(tmp_path / "e.scp"), str(tmp_path / "x.score"))
    assert r.returncode == 0 and "skipping 2 of 437 trials" in r.stderr
    assert (tmp_path / "x.score").read_text() == (tmp_path / "as.score").read_text()
