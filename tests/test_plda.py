"""LDA and two-covariance PLDA back-ends against independent computations on synthetic speakers."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from scipy.stats import multivariate_normal

from sslspk.data.embeddings import write_embeddings
from sslspk.scoring.cosine import score_trials
from sslspk.scoring.metrics import compute_metrics
from sslspk.scoring.plda import Backend, Plda, fit_lda, fit_plda, train_backend, train_backend_on_dev
from sslspk.utils.errors import InputError


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.3 * np.eye(d))


def two_covariance_data(rng, between, within, sizes, mean=None):
    """Utterances of speakers with means ~ N(mean, between), utterances ~ N(speaker mean, within)."""
    d = len(between)
    mean = np.zeros(d) if mean is None else mean
    spk = rng.multivariate_normal(mean, between, size=len(sizes))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = spk[labels] + rng.multivariate_normal(np.zeros(d), within, size=len(labels))
    return x, [f"s{i:04d}" for i in labels]


def closed_form_llr(x1, x2, mean, between, within):
    """log N([x1; x2]; [mean; mean], [[B+W, B], [B, B+W]]) - log N(x1; mean, B+W) - log N(x2; mean, B+W)."""
    tot = between + within
    joint = multivariate_normal(np.r_[mean, mean], np.block([[tot, between], [between, tot]]))
    single = multivariate_normal(mean, tot)
    return joint.logpdf(np.r_[x1, x2]) - single.logpdf(x1) - single.logpdf(x2)


def eer(scores, labels):
    return compute_metrics(scores, labels).eer


def pair_trials(labels, rng, n):
    """``n`` target pairs (two utterances of one speaker) and ``n`` random non-target pairs, and their labels."""
    lab = np.asarray(labels)
    by_spk = {s: np.flatnonzero(lab == s) for s in set(labels)}
    i = rng.integers(0, len(lab), 2 * n)
    j = np.r_[[rng.choice(by_spk[lab[k]][by_spk[lab[k]] != k]) for k in i[:n]], rng.integers(0, len(lab), n)]
    target = (lab[i] == lab[j]).astype(int)
    keep = i != j
    return i[keep], j[keep], target[keep]


def test_llr_equals_closed_form_with_true_covariances():
    rng = np.random.default_rng(0)
    d = 4
    between, within, mean = random_spd(rng, d, 2.0), random_spd(rng, d), rng.normal(size=d)
    plda = Plda.from_covariances(mean, within, between)
    a = plda.transform
    np.testing.assert_allclose(a @ within @ a.T, np.eye(d), atol=1e-10)
    np.testing.assert_allclose(a @ between @ a.T, np.diag(plda.psi), atol=1e-10)
    assert np.all(np.diff(plda.psi) <= 0)
    x = rng.multivariate_normal(mean, between + within, size=6)
    u = plda.transform_embeddings(x, normalize_length=False)
    rows_e, rows_t = np.array([0, 1, 2, 3, 4]), np.array([5, 4, 3, 2, 1])
    got = plda.llr(u, u, rows_e, rows_t)
    want = [closed_form_llr(x[i], x[j], mean, between, within) for i, j in zip(rows_e, rows_t)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(plda.llr(u, u, rows_t, rows_e), got, rtol=1e-9)   # symmetric for n = 1


def test_llr_of_fitted_model_equals_closed_form_of_its_covariances():
    rng = np.random.default_rng(1)
    d = 3
    x, labels = two_covariance_data(rng, random_spd(rng, d, 3.0), random_spd(rng, d), rng.integers(1, 5, 200))
    plda = fit_plda(x, labels)
    a_inv = np.linalg.inv(plda.transform)   # back to the input space: W = A^-1 A^-T, B = A^-1 psi A^-T
    within, between = a_inv @ a_inv.T, a_inv @ np.diag(plda.psi) @ a_inv.T
    u = plda.transform_embeddings(x[:4], normalize_length=False)
    got = plda.llr(u, u, np.array([0, 2]), np.array([1, 3]))
    want = [closed_form_llr(x[i], x[j], plda.mean, between, within) for i, j in ((0, 1), (2, 3))]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


def test_em_recovers_true_covariances():
    rng = np.random.default_rng(2)
    d = 3
    between, within, mean = random_spd(rng, d, 2.0), random_spd(rng, d, 0.5), np.array([1.0, -2.0, 0.5])
    x, labels = two_covariance_data(rng, between, within, rng.integers(2, 8, 4000), mean)
    plda = fit_plda(x, labels, num_em_iters=10)
    a_inv = np.linalg.inv(plda.transform)
    est_w, est_b = a_inv @ a_inv.T, a_inv @ np.diag(plda.psi) @ a_inv.T
    assert np.linalg.norm(est_w - within) / np.linalg.norm(within) < 0.05
    assert np.linalg.norm(est_b - between) / np.linalg.norm(between) < 0.1
    np.testing.assert_allclose(plda.mean, mean, atol=0.15)
    # 1 EM iteration from B = W = I is further from the truth than 10
    one = fit_plda(x, labels, num_em_iters=1)
    o_inv = np.linalg.inv(one.transform)
    assert np.linalg.norm(o_inv @ np.diag(one.psi) @ o_inv.T - between) > np.linalg.norm(est_b - between)


def test_length_normalisation_matches_expected_norm():
    rng = np.random.default_rng(3)
    plda = Plda.from_covariances(np.zeros(5), random_spd(rng, 5), random_spd(rng, 5, 4.0))
    u = plda.transform_embeddings(rng.normal(size=(7, 5)) * 3)
    np.testing.assert_allclose((u ** 2 / (plda.psi + 1)).sum(axis=1), 5.0)   # Kaldi's GetNormalizationFactor, n=1


def test_lda_whitens_within_and_diagonalises_between():
    rng = np.random.default_rng(4)
    d = 6
    x, labels = two_covariance_data(rng, random_spd(rng, d, 2.0), random_spd(rng, d), rng.integers(2, 6, 300))
    lda = fit_lda(x, labels, 4)
    y = (x - x.mean(axis=0)) @ lda.T
    lab = np.asarray(labels)
    means = {s: y[lab == s].mean(axis=0) for s in set(labels)}
    resid = y - np.stack([means[s] for s in labels])
    within = resid.T @ resid / len(y)                          # Kaldi: within scatter / num utterances
    between = sum((lab == s).sum() * np.outer(m, m) for s, m in means.items()) / len(y)
    np.testing.assert_allclose(within, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(between, np.diag(np.diag(between)), atol=1e-9)
    assert np.all(np.diff(np.diag(between)) <= 1e-12)          # largest between-class variance first


def test_lda_finds_the_speaker_subspace():
    rng = np.random.default_rng(5)
    d, k = 10, 2
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    between = basis[:, :k] @ np.diag([4.0, 3.0]) @ basis[:, :k].T + 1e-3 * np.eye(d)
    within = basis @ np.diag([0.3, 0.3] + [5.0] * (d - k)) @ basis.T   # large nuisance outside the subspace
    x, labels = two_covariance_data(rng, between, within, np.full(300, 6))
    lda = fit_lda(x, labels, k)
    # the LDA rows span the speaker subspace: their component outside it is small
    rows = lda / np.linalg.norm(lda, axis=1, keepdims=True)
    assert np.linalg.norm(rows @ basis[:, k:]) < 0.1
    i, j, target = pair_trials(labels, rng, 2000)
    keys = [str(n) for n in range(len(x))]
    mean = x.mean(axis=0)
    raw = score_trials((keys, x), [keys[n] for n in i], [keys[n] for n in j], mean=mean)
    backend = train_backend(x, labels, lda_dim=k)
    after = backend.score_trials("lda-cosine", (keys, x), [keys[n] for n in i], [keys[n] for n in j])
    assert eer(after, target) < 0.6 * eer(raw, target)


def test_lda_dimension_chosen_on_dev_trials():
    rng = np.random.default_rng(9)
    d, k = 10, 2
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    between = basis[:, :k] @ np.diag([4.0, 3.0]) @ basis[:, :k].T + 0.05 * basis[:, k:] @ basis[:, k:].T
    within = basis @ np.diag([0.3, 0.3] + [3.0] * (d - k)) @ basis.T
    x, labels = two_covariance_data(rng, between, within, np.full(30, 4))
    dev_x, dev_labels = two_covariance_data(rng, between, within, np.full(200, 4))
    i, j, target = pair_trials(dev_labels, rng, 1000)
    keys = [str(n) for n in range(len(dev_x))]
    enroll, test = [keys[n] for n in i], [keys[n] for n in j]
    want = {str(dim): eer(train_backend(x, labels, dim).score_trials("plda", (keys, dev_x), enroll, test), target)
            for dim in (8, k, 5)}
    chosen = train_backend_on_dev(x, labels, [8, k, 5], (keys, dev_x), enroll, test, target, info={"labels": "p"})
    assert chosen.info["dev_eer"] == want
    assert chosen.info["lda_dim"] == int(min(want, key=want.get)) and chosen.lda.shape[0] == chosen.info["lda_dim"]
    assert chosen.info["labels"] == "p"
    with pytest.raises(InputError, match="both target and non-target"):
        train_backend_on_dev(x, labels, [2, 3], (keys, dev_x), enroll[:1], test[:1], target[:1])


def test_plda_beats_cosine_with_anisotropic_within_class():
    rng = np.random.default_rng(6)
    d = 8
    within = np.diag([8.0, 8.0, 8.0, 8.0, 0.05, 0.05, 0.05, 0.05])
    x, labels = two_covariance_data(rng, np.eye(d), within, np.full(400, 5))
    i, j, target = pair_trials(labels, rng, 2000)
    keys = [str(n) for n in range(len(x))]
    enroll, test = [keys[n] for n in i], [keys[n] for n in j]
    cos = score_trials((keys, x), enroll, test, mean=x.mean(axis=0))
    plda = train_backend(x, labels, lda_dim=0).score_trials("plda", (keys, x), enroll, test)
    assert eer(plda, target) < 0.5 * eer(cos, target)


def test_save_load_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(7)
    x, labels = two_covariance_data(rng, random_spd(rng, 5, 2.0), random_spd(rng, 5), np.full(40, 3))
    backend = train_backend(x, labels, lda_dim=3, info={"labels": "pseudo"})
    backend.save(tmp_path / "b.npz")
    back = Backend.load(tmp_path / "b.npz")
    assert back.info == {"labels": "pseudo", "lda_dim": 3, "num_em_iters": 10, "num_embeddings": 120,
                         "num_speakers": 40}
    keys = [str(n) for n in range(len(x))]
    for kind in ("plda", "lda-cosine"):
        np.testing.assert_array_equal(back.score_trials(kind, (keys, x), keys[:5], keys[5:10]),
                                      backend.score_trials(kind, (keys, x), keys[:5], keys[5:10]))
    with pytest.raises(InputError, match="LDA dimension"):
        train_backend(x, labels, lda_dim=6)
    with pytest.raises(InputError, match="two or more"):
        fit_plda(x[:5], [str(n) for n in range(5)])
    with pytest.raises(InputError, match="dimension 4"):
        backend.score_trials("plda", (keys, x[:, :4]), keys[:1], keys[1:2])
    (tmp_path / "bad.npz").write_text("not a model")
    with pytest.raises(InputError, match="bad.npz"):
        Backend.load(tmp_path / "bad.npz")


def test_train_backend_and_score_cli(tmp_path):
    rng = np.random.default_rng(8)
    x, labels = two_covariance_data(rng, random_spd(rng, 6, 2.0), random_spd(rng, 6), np.full(30, 4))
    keys = [f"u{n:03d}" for n in range(len(x))]
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", zip(keys, x))
    (tmp_path / "utt2spk").write_text("".join(f"{k} {s}\n" for k, s in zip(keys, labels) if k != "u000"))
    model = tmp_path / "backend.npz"
    py = [sys.executable, "-m"]
    r = subprocess.run(py + ["sslspk.bin.train_backend", "--lda-dim", "4", "--labels", "pseudo",
                             str(tmp_path / "e.scp"), str(tmp_path / "utt2spk"), str(model)],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = Backend.load(model).info
    assert info["labels"] == "pseudo" and info["num_embeddings"] == len(x) - 1   # u000 has no label: skipped
    assert info["utt2spk"].endswith("utt2spk") and info["embeddings"].endswith("e.scp")
    (tmp_path / "trials").write_text("u001 u002 target\nu001 u010 nontarget\n")
    r = subprocess.run(py + ["sslspk.bin.score", "--backend", "plda", "--backend-model", str(model),
                             str(tmp_path / "trials"), str(tmp_path / "e.scp"), str(tmp_path / "out")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = [float(line.split()[2]) for line in (tmp_path / "out").read_text().splitlines()]
    want = Backend.load(model).score_trials("plda", (keys, x.astype(np.float32)), ["u001", "u001"], ["u002", "u010"])
    np.testing.assert_allclose(got, want, atol=1e-5)
    r = subprocess.run(py + ["sslspk.bin.score", "--backend", "plda", "--cohort-scp", str(tmp_path / "e.scp"),
                             "--backend-model", str(model), str(tmp_path / "trials"), str(tmp_path / "e.scp"),
                             str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1 and "--backend plda" in r.stderr
    r = subprocess.run(py + ["sslspk.bin.train_backend", "--lda-dim", "9", "6", "4", "--dev-trials",
                             str(tmp_path / "trials"), "--dev-scp", str(tmp_path / "e.scp"), str(tmp_path / "e.scp"),
                             str(tmp_path / "utt2spk"), str(model)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr   # 9 > the 6 dimensions: LDA to 6, chosen among 6 and 4 only
    assert "--lda-dim 9 above the 6 dimensions" in r.stderr and set(Backend.load(model).info["dev_eer"]) == {"6", "4"}


@pytest.mark.slow
def test_mini_stage6_plda_rows(tmp_path, recipe_env, monkeypatch):
    """Stage 6 --plda true: the label-free baseline gets rows test_plda/test_lda from a back-end trained on the last
    pseudo-label iteration's labels (never the true ones); the back-end is retrained only when its labels change
    (their content, whatever their time)."""
    import json
    import os

    from conftest import recipe_runner

    recipe = recipe_runner("mini", tmp_path, recipe_env)
    monkeypatch.chdir(recipe.dir)
    recipe("--stage", "0", "--stop-stage", "1", "--num-train-speakers", "12", "--num-test-speakers", "8",
           "--utts-per-speaker", "8")
    pl = recipe.dir / "exp" / "mini" / "pl_iter1" / "data"   # pseudo-labels: a clustering with other names
    pl.mkdir(parents=True)
    lines = (recipe.dir / "data" / "mini" / "train" / "utt2spk").read_text().splitlines()
    (pl / "utt2spk").write_text("".join(f"{u} cluster_{s}\n" for u, s in (line.split() for line in lines)))
    opts = ("--stage", "6", "--plda", "true", "--lda-dim", "10")
    recipe(*opts)
    sys_dir = recipe.dir / "exp" / "mini" / "baseline"
    res = json.loads((sys_dir / "results.json").read_text())
    assert res["test_plda"]["backend"] == "plda" and res["test_lda"]["backend"] == "lda-cosine"
    assert res["test_plda"]["num_target"] == res["test"]["num_target"]
    info = Backend.load(sys_dir / "backend" / "plda.npz").info
    assert info["utt2spk"] == str(pl / "utt2spk") and info["labels"] == "pseudo-labels of pl_iter1"
    assert info["lda_dim"] == 10 and info["num_speakers"] == 12
    overview = (recipe.dir / "exp" / "mini" / "results.md").read_text()
    assert "test_plda" in overview and "test_lda" in overview
    mtime = (sys_dir / "backend" / "plda.npz").stat().st_mtime_ns
    r = recipe(*opts)
    assert (sys_dir / "backend" / "plda.npz").stat().st_mtime_ns == mtime
    assert "test_plda.score is up to date" in r.stdout
    future = (sys_dir / "backend" / "plda.npz").stat().st_mtime + 10
    os.utime(pl / "utt2spk", (future, future))   # the same pseudo-labels, touched: nothing redone
    r = recipe(*opts)
    assert (sys_dir / "backend" / "plda.npz").stat().st_mtime_ns == mtime
    assert "test_plda.score is up to date" in r.stdout
    first, last = lines[0].split()[1], lines[-1].split()[1]   # other pseudo-labels (two clusters merged), older:
    assert first != last                                        # retrained and rescored
    (pl / "utt2spk").write_text("".join(f"{u} cluster_{first if s == last else s}\n"
                                        for u, s in (line.split() for line in lines)))
    os.utime(pl / "utt2spk", (1, 1))
    r = recipe(*opts)
    assert (sys_dir / "backend" / "plda.npz").stat().st_mtime_ns != mtime
    assert "test_plda.score is up to date" not in r.stdout
    r = recipe("--stage", "6", "--plda", "true", "--lda-dim-dev", "4 10")   # chosen on the dev half of the trials
    info = Backend.load(sys_dir / "backend" / "plda.npz").info
    assert set(info["dev_eer"]) == {"4", "10"} and info["lda_dim"] == int(min(info["dev_eer"], key=info["dev_eer"].get))
    assert "test_plda_eval" in json.loads((sys_dir / "results.json").read_text())
    assert "test_plda_eval" in (recipe.dir / "exp" / "mini" / "results.md").read_text()
