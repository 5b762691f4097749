"""DET plot (renders; its points cross at the EER), results tables and compare_results."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from sslspk.scoring.det import det_corners
from sslspk.scoring.metrics import compute_metrics, det_points


def run(*a):
    return subprocess.run([sys.executable, *a], capture_output=True, text=True, cwd=REPO)


def write_scores(path, seed, sep, n=400, decimals=None):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 2, n)
    s = rng.normal(size=n) + sep * lab
    if decimals is not None:
        s = np.round(s, decimals)
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"e{i} t{i} {s[i]:.6f} {'target' if lab[i] else 'nontarget'}\n")
    return s, lab


def crossing(pm, pf):
    """Where the piecewise-linear curve through the points meets p_miss == p_fa (brute force over segments)."""
    for i in range(1, len(pm)):
        d0, d1 = pm[i - 1] - pf[i - 1], pm[i] - pf[i]
        if d0 >= 0 >= d1 and d0 != d1:
            t = d0 / (d0 - d1)
            return pm[i - 1] + t * (pm[i] - pm[i - 1])
        if d0 == d1 == 0:
            return pm[i]
    raise AssertionError("no crossing")


@pytest.mark.parametrize("decimals", [None, 1])
def test_det_corners_keep_the_curve(decimals):
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + lab
    s = np.round(s, decimals) if decimals is not None else s
    pm, pf, _ = det_points(s, lab)
    cm, cf, _ = det_corners(s, lab)
    assert len(cm) < len(pm)
    # Every dropped point lies on the segment between the kept corners around it.
    for a, b in zip(pm, pf):
        on = any(min(cm[i], cm[i + 1]) <= a <= max(cm[i], cm[i + 1])
                 and min(cf[i], cf[i + 1]) <= b <= max(cf[i], cf[i + 1])
                 and (cm[i] == cm[i + 1] or cf[i] == cf[i + 1] or (a, b) in ((cm[i], cf[i]), (cm[i + 1], cf[i + 1])))
                 for i in range(len(cm) - 1))
        assert on
    assert crossing(cm, cf) == pytest.approx(compute_metrics(s, lab).eer, abs=1e-12)


def test_plot_det_renders_and_points_match_eer(tmp_path):
    import matplotlib.image as mpimg

    sa, la = write_scores(tmp_path / "a.score", 1, 2.5)
    sb, lb = write_scores(tmp_path / "b.score", 2, 1.0, decimals=1)
    r = run("bin/plot_det.py", "--out", str(tmp_path / "det.png"), "good=" + str(tmp_path / "a.score"),
            str(tmp_path / "b.score"))
    assert r.returncode == 0, r.stderr
    img = mpimg.imread(tmp_path / "det.png")
    assert img.shape[0] > 300 and img.shape[1] > 300
    # Not blank: many colours, and both curve colours (matplotlib C0 blue, C1 orange) are drawn.
    rgb = (img[..., :3] * 255).round().astype(int)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(rgb - colour).sum(axis=2) < 30).sum() > 100
    pts = {}
    for line in (tmp_path / "det.txt").read_text().splitlines()[1:]:
        name, pm, pf, _ = line.split()
        pts.setdefault(name, []).append((float(pm), float(pf)))
    assert set(pts) == {"good", "b"}
    for name, (s, lab) in (("good", (sa, la)), ("b", (sb, lb))):
        pm, pf = np.array(pts[name]).T
        eer = compute_metrics(s, lab).eer
        assert crossing(pm, pf) == pytest.approx(eer, abs=1e-6)
        assert f"{name}: EER {100 * eer:.3f}%" in r.stdout
    r = run("bin/plot_det.py", "--out", str(tmp_path / "x.png"), "a=" + str(tmp_path / "nope"))
    assert r.returncode == 1 and "nope" in r.stderr and "Traceback" not in r.stderr


def test_results_rows_and_compare_results(tmp_path):
    write_scores(tmp_path / "s.score", 3, 2.0)
    for it in ("iter1", "iter2", "iter10"):
        d = tmp_path / "exp" / it / "ft"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(f"iter: {it}\n")
        for name, backend in (("test", "cosine"), ("test_asnorm", "as-norm")):
            r = run("bin/compute_metrics.py", "--results-dir", str(d), "--name", name, "--backend", backend,
                    str(tmp_path / "s.score"))
            assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "exp" / "iter1" / "ft" / "results.json").read_text())["test_asnorm"]
    assert row["backend"] == "as-norm" and row["model"].endswith("iter1/ft")
    assert row["config"].endswith("config.yaml") and len(row["config_sha256"]) == 12
    assert "sha256" in (tmp_path / "exp" / "iter1" / "ft" / "results.md").read_text()
    r = run("bin/compare_results.py", "--trials", "test", str(tmp_path / "exp"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| exp | trials | backend | EER (%)") and len(lines) == 2 + 3
    assert [ln.split("|")[1].strip().split("/")[-2] for ln in lines[2:]] == ["iter1", "iter2", "iter10"]
    r = run("bin/compare_results.py", "--json", str(tmp_path / "exp" / "iter2"))
    assert len(json.loads(r.stdout)) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    r = run("bin/compare_results.py", str(tmp_path / "bad"))
    assert r.returncode == 1 and "bad/results.json:1" in r.stderr


def test_loop_report_rows(tmp_path):
    """iterations.md: row 0 = the model that seeded the clustering (--start), one row per iteration
    with its clusters and last DLG-LC line, then the oracle."""
    for name, eer in (("baseline", 0.339), ("ssl", 0.308), ("pl_iter1", 0.25), ("oracle", 0.2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"test": {"eer": eer, "min_dcf": {"0.01": 0.9}}}))
    (tmp_path / "pl_iter1" / "clusters").mkdir()
    (tmp_path / "pl_iter1" / "clusters" / "clusters.json").write_text(json.dumps(
        {"num_clusters": 12, "reference": {"final": {"nmi": 0.5, "purity": 0.4, "inverse_purity": 0.3}}}))
    (tmp_path / "pl_iter1" / "train.log").write_text(
        "x DLG-LC epoch 1: dlg_kept=0.5 dlg_corrected=0.1\n"
        "x DLG-LC epoch 2: dlg_kept=0.75 dlg_corrected=0.2 dlg_correction_precision=0.6\n")
    r = run("bin/loop_report.py", "--start", "baseline", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == ["| 0 | baseline | 33.90 | 0.9000 | - | - | - | - | - | - | - |",
                    "| 1 | pl_iter1 | 25.00 | 0.9000 | 12 | 0.500 | 0.400 | 0.300 | 75.0% | 20.0% | 60.0% |",
                    "| - | oracle (true labels) | 20.00 | 0.9000 | - | 1.000 | 1.000 | 1.000 | - | - | - |"], rows
    assert "| 0 | ssl | 30.80 |" in run("bin/loop_report.py", str(tmp_path)).stdout
