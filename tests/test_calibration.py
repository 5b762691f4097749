"""Calibration to LLRs, Cllr and actDCF (formulas checked by hand), calibration CLI, --llr metrics."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from sslspk.scoring.calibration import Calibration, act_dcf, bayes_threshold, cllr, quality_features, train_calibration
from sslspk.scoring.metrics import compute_metrics


def gaussian_scores(n=4000, seed=0, mu=(0.0, 2.0), sd=1.0, shift=5.0, gain=0.3):
    """Scores whose true LLR is known: N(mu0, sd) nontarget vs N(mu1, sd) target, then warped linearly."""
    rng = np.random.default_rng(seed)
    lab = np.r_[np.ones(n), np.zeros(n)].astype(int)
    x = np.where(lab == 1, rng.normal(mu[1], sd, 2 * n), rng.normal(mu[0], sd, 2 * n))
    true_llr = (mu[1] - mu[0]) / sd**2 * (x - (mu[0] + mu[1]) / 2)
    return gain * x + shift, lab, true_llr


def test_cllr_and_act_dcf_by_hand():
    llr = np.array([2.0, -1.0, 0.5, -3.0])
    lab = np.array([1, 1, 0, 0])
    tar = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    non = (math.log(1 + math.exp(0.5)) + math.log(1 + math.exp(-3.0))) / 2
    assert cllr(llr, lab) == pytest.approx(0.5 / math.log(2) * (tar + non))
    assert cllr(np.zeros(4), lab) == pytest.approx(1.0)  # an uninformative system costs 1 bit
    # p=0.5: threshold 0; accepts 2.0 and 0.5 -> p_miss 0.5, p_fa 0.5 -> DCF 0.5 / 0.5 = 1.0
    assert bayes_threshold(0.5) == 0.0 and act_dcf(llr, lab, 0.5) == pytest.approx(1.0)
    # p=0.2: threshold log(4)=1.386: accepts 2.0 only -> p_miss 0.5, p_fa 0 -> 0.2*0.5/0.2 = 0.5
    assert act_dcf(llr, lab, 0.2) == pytest.approx(0.5)
    m = compute_metrics(llr, lab, (0.2, 0.5), llr=True)
    assert m.cllr == pytest.approx(cllr(llr, lab)) and m.as_dict()["act_dcf"]["0.2"] == pytest.approx(0.5)
    assert "cllr" not in compute_metrics(llr, lab).as_dict()


@pytest.mark.parametrize("prior", [0.5, 0.01])
def test_calibration_recovers_true_llr(prior):
    s, lab, true_llr = gaussian_scores()
    cal = train_calibration(s, lab, prior=prior)
    llr = cal.apply(s)
    # The warp is linear, so the calibrated LLR is (close to) the true one: 2 (x - 1), x = (s - 5) / 0.3.
    assert cal.a == pytest.approx(2 / 0.3, rel=0.1) and cal.b == pytest.approx(-2 * 5 / 0.3 - 2, rel=0.1)
    assert np.median(np.abs(llr - true_llr)) < 0.2
    assert cllr(llr, lab) < cllr(s, lab) - 0.5
    assert cllr(llr, lab) == pytest.approx(cllr(true_llr, lab), abs=0.01)


def test_quality_measures_used_and_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    lab = rng.integers(0, 2, n)
    dur_e, dur_t = rng.uniform(1, 20, n), rng.uniform(1, 20, n)
    # Short trials are less reliable: the separation grows with the shorter duration.
    sep = 0.5 * np.log(np.minimum(dur_e, dur_t)) + 0.2
    s = np.where(lab == 1, sep, -sep) + rng.normal(0, 1, n)
    ids_e, ids_t = [f"e{i}" for i in range(n)], [f"t{i}" for i in range(n)]
    q = quality_features(ids_e, ids_t, {**dict(zip(ids_e, dur_e)), **dict(zip(ids_t, dur_t))})
    np.testing.assert_allclose(q[:, 0], np.log(np.minimum(dur_e, dur_t)))
    plain = train_calibration(s, lab)
    qmf = train_calibration(s, lab, quality=q)
    assert qmf.features == ["min_log_dur", "max_log_dur"] and len(qmf.weights) == 2
    assert cllr(qmf.apply(s, q), lab) <= cllr(plain.apply(s), lab) + 1e-9
    qmf.save(tmp_path / "cal.json")
    back = Calibration.load(tmp_path / "cal.json")
    np.testing.assert_allclose(back.apply(s, q), qmf.apply(s, q))
    with pytest.raises(ValueError, match="quality"):
        back.apply(s)
    with pytest.raises(KeyError, match="e0"):
        quality_features(["e0"], ["t0"], {"t0": 1.0})
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="bad.json"):
        Calibration.load(tmp_path / "bad.json")


def test_calibrate_cli_and_llr_metrics(tmp_path):
    s, lab, _ = gaussian_scores(n=500, seed=2)
    names = ("nontarget", "target")
    for name, sl in (("dev", slice(0, None, 2)), ("eval", slice(1, None, 2))):
        with open(tmp_path / f"{name}.score", "w") as f:
            for i in range(len(s))[sl]:
                f.write(f"e{i} t{i} {s[i]:.6f} {names[lab[i]]}\n")
    with open(tmp_path / "utt2dur", "w") as f:
        f.writelines(f"{p}{i} {1 + i % 7}\n" for i in range(len(s)) for p in "et")
    run = lambda *a: subprocess.run([sys.executable, *a], capture_output=True, text=True, cwd=REPO)
    r = run("bin/calibrate.py", "train", "--p-target", "0.5", str(tmp_path / "dev.score"), str(tmp_path / "cal.json"))
    assert r.returncode == 0, r.stderr
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert set(cal) >= {"a", "b", "prior"} and cal["prior"] == 0.5
    r = run("bin/calibrate.py", "apply", str(tmp_path / "cal.json"), str(tmp_path / "eval.score"),
            str(tmp_path / "llr"))
    assert r.returncode == 0, r.stderr
    before = run("bin/compute_metrics.py", "--llr", "--results-dir", str(tmp_path / "exp"), "--name", "raw",
                 str(tmp_path / "eval.score"))
    after = run("bin/compute_metrics.py", "--llr", "--results-dir", str(tmp_path / "exp"), "--name", "cal",
                "--backend", "cosine+cal", str(tmp_path / "llr"))
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    res = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert res["cal"]["cllr"] < res["raw"]["cllr"]
    assert res["cal"]["eer"] == pytest.approx(res["raw"]["eer"])  # a monotonic map keeps the EER
    assert "Cllr" in before.stdout and "actDCF(p=0.01)" in after.stdout
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "| cal | cosine+cal |" in md and "Cllr" in md
    # Quality measures through the CLI; apply without utt2dur then fails clearly.
    r = run("bin/calibrate.py", "train", "--utt2dur", str(tmp_path / "utt2dur"), str(tmp_path / "dev.score"),
            str(tmp_path / "qcal.json"))
    assert r.returncode == 0, r.stderr
    r = run("bin/calibrate.py", "apply", str(tmp_path / "qcal.json"), str(tmp_path / "eval.score"), str(tmp_path / "x"))
    assert r.returncode == 1 and "utt2dur" in r.stderr and "Traceback" not in r.stderr
