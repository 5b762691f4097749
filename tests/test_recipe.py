"""End-to-end: egs/mini/v1 at tiny size (stages 0, 1, 6), resume, Slurm back-end; egs/fsdd/v1 on real speech."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import kaldiio
import pytest
from conftest import FSDD, REPO, TINY, recipe_runner, tiny_configs

pytestmark = pytest.mark.slow   # end-to-end: see pyproject.toml


@pytest.fixture
def recipe(tmp_path, recipe_env):
    return recipe_runner("mini", tmp_path, recipe_env)


def test_mini_recipe_end_to_end(recipe, monkeypatch):
    d = recipe.dir
    monkeypatch.chdir(d)  # scp files point into arks by paths relative to the recipe dir, as in Kaldi
    recipe("--stage", "0", "--stop-stage", "1", *TINY)
    r = recipe("--stage", "6")
    sys_dir = d / "exp" / "mini" / "baseline"
    assert "| test |" in (sys_dir / "results.md").read_text()
    import json

    res = json.loads((sys_dir / "results.json").read_text())["test"]
    # The non-learned baseline is far from perfect on this corpus but clearly above chance.
    assert res["eer"] < 0.45, res
    assert res["num_target"] > 100 and res["num_nontarget"] > 100

    # Embeddings: one merged scp readable by kaldiio, keys = the test utterances, 60-d vectors.
    emb = kaldiio.load_scp(str(sys_dir / "embeddings" / "test" / "embeddings.scp"))
    utts = [line.split()[0] for line in (d / "data" / "mini" / "test" / "utt2spk").read_text().splitlines()]
    assert sorted(emb.keys()) == utts
    assert all(emb[u].shape == (60,) for u in utts)
    assert (sys_dir / "config.yaml").read_text() == (d / "conf" / "baseline.yaml").read_text()

    # Re-running finished stages does no work.
    logs = sorted((sys_dir / "embeddings").glob("*/log/*.log"))
    mtimes = [p.stat().st_mtime_ns for p in logs]
    r = recipe("--stage", "0", "--stop-stage", "1", *TINY)
    r = recipe("--stage", "6")
    assert r.stdout.count("skipping extraction") == 2 and "up to date" in r.stdout
    assert r.stdout.count("is up to date") == 5  # cosine, AS-norm and the three calibration rows
    assert [p.stat().st_mtime_ns for p in logs] == mtimes

    # A killed extraction (one job's output missing) redoes only that job.
    test_dir = sys_dir / "embeddings" / "test"
    (test_dir / "embeddings.scp").unlink()
    (test_dir / "embeddings.2.scp").unlink()
    log1 = (test_dir / "log" / "extract.1.log").read_text()
    recipe("--stage", "6")
    assert "nothing to do" in (test_dir / "log" / "extract.1.log").read_text()
    assert "wrote" in (test_dir / "log" / "extract.2.log").read_text()
    assert log1 != (test_dir / "log" / "extract.1.log").read_text()
    assert sorted(kaldiio.load_scp(str(test_dir / "embeddings.scp")).keys()) == utts


def test_mini_scoring_backends(recipe, monkeypatch):
    """Stage 6's AS-norm and calibration rows on a mini corpus with 10 test speakers (12 utts each).

    AS-norm (cohort: the training embeddings) must not raise the EER of cosine scoring, and the
    calibration trained on one half of the test speakers must lower Cllr on the other half.
    """
    import json

    monkeypatch.chdir(recipe.dir)
    recipe("--stage", "0", "--stop-stage", "1", "--num-train-speakers", "4", "--num-test-speakers", "10",
           "--utts-per-speaker", "12")
    recipe("--stage", "6")
    sys_dir = recipe.dir / "exp" / "mini" / "baseline"
    res = json.loads((sys_dir / "results.json").read_text())
    assert {r["backend"] for r in res.values()} == {"cosine", "as-norm", "as-norm+cal"}
    assert res["test_asnorm"]["eer"] <= res["test"]["eer"], (res["test"]["eer"], res["test_asnorm"]["eer"])
    raw, cal = res["test_asnorm_eval"], res["test_asnorm_eval_cal"]
    assert cal["cllr"] < raw["cllr"], (raw["cllr"], cal["cllr"])
    assert cal["eer"] == raw["eer"] and cal["num_target"] == raw["num_target"]
    # The calibration halves are speaker-disjoint.
    spk = lambda u: u.split("-")[0]  # noqa: E731
    halves = [{spk(w) for line in (sys_dir / "trials" / n).read_text().splitlines() for w in line.split()[:2]}
              for n in ("dev", "eval")]
    assert halves[0] and halves[1] and not halves[0] & halves[1]
    cal_json = json.loads((sys_dir / "calibration.json").read_text())
    assert cal_json["prior"] == 0.5 and cal_json["a"] > 0


def test_mini_recipe_all_stages(recipe, monkeypatch):
    """Stages 0-6 at tiny size: SSL, clustering, pseudo-label training, a second iteration, evaluation."""
    import json

    d = recipe.dir
    monkeypatch.chdir(d)
    tiny_configs(d / "conf")
    r = recipe(*TINY, "--ahc-clusters", "6", "--oracle", "true")
    exp = d / "exp" / "mini"
    for sys_dir in ("baseline", "ssl_untrained", "ssl", "pl_iter1", "pl_iter2", "oracle"):
        res = json.loads((exp / sys_dir / "results.json").read_text())
        assert {"test", "test_asnorm"} <= set(res), sys_dir
    assert (exp / "pl_iter2" / "data" / "utt2spk").exists()
    clusters = json.loads((exp / "pl_iter1" / "clusters" / "clusters.json").read_text())
    assert clusters["num_clusters"] <= 6 and "nmi" in clusters["reference"]["final"]
    table = (exp / "iterations.md").read_text()
    assert "| 1 | pl_iter1 |" in table and "| 2 | pl_iter2 |" in table and "oracle" in table
    overview = (exp / "results.md").read_text()
    assert all(name in overview for name in ("baseline", "ssl_untrained", "pl_iter2", "oracle"))
    assert "DLG-LC epoch" in (exp / "pl_iter1" / "train.log").read_text()
    # Everything finished: a second run redoes nothing.
    r = recipe(*TINY, "--ahc-clusters", "6", "--oracle", "true", "--stage", "2")
    assert r.stdout.count("training already finished") == 4, r.stdout[-3000:]


def test_help_and_bad_option(recipe):
    r = recipe("--help")
    # The header of run.sh, its own options and those of the shared stages (steps/stages.sh).
    assert "Stages" in r.stdout and "egs/mini/v1" in r.stdout
    for opt in ("--num-train-speakers", "--stop-stage", "--ssl-conf", "--ahc-clusters", "--cohort-size"):
        assert r.stdout.count(f"  {opt} ") == 1, opt
    assert re.search(r"--ahc-clusters +60 ", r.stdout)   # the recipe's default, not the shared one
    r = recipe("--no-such-option", "1", check=False)
    assert r.returncode == 1 and "--no-such-option" in r.stderr
    r = recipe("--stage", "7", "extra", check=False)
    assert r.returncode == 1 and "unexpected argument(s): extra" in r.stderr


def test_extraction_on_fake_slurm(recipe, tmp_path, monkeypatch):
    """steps/extract_embeddings.sh through the Slurm back-end (fake sbatch/srun on PATH)."""
    recipe("--stage", "0", "--stop-stage", "1", *TINY)
    d = recipe.dir
    monkeypatch.chdir(d)
    (d / "exp" / "m").mkdir(parents=True)
    shutil.copy(d / "conf" / "baseline.yaml", d / "exp" / "m" / "config.yaml")
    env = dict(recipe.env, PATH=f"{REPO / 'tests' / 'fake_slurm'}{os.pathsep}{recipe.env['PATH']}",
               FAKE_SLURM_LOG=str(tmp_path / "sbatch.log"), SSLSPK_STATUS_GRACE="0")
    r = subprocess.run(["bash", "-c", ". ./path.sh; steps/extract_embeddings.sh --nj 3 "
                        "--cmd 'utils/run.py --backend slurm --mem 2G' exp/m data/mini/test exp/m/emb"],
                       cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--array=1-3" in (tmp_path / "sbatch.log").read_text()
    assert len(kaldiio.load_scp(str(d / "exp" / "m" / "emb" / "embeddings.scp"))) == 64


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}: real-speech test skipped")
def test_fsdd_real_speech(tmp_path, recipe_env):
    """egs/fsdd/v1 stages 0, 1 and the baseline's evaluation on real recordings (8 kHz resampled to 16 kHz)."""
    recipe = recipe_runner("fsdd", tmp_path, recipe_env)
    recipe("--corpus-dir", str(FSDD / "recordings"), "--stage", "0", "--stop-stage", "1")
    recipe("--stage", "6")
    import json

    res = json.loads((recipe.dir / "exp" / "fsdd" / "baseline" / "results.json").read_text())["test"]
    assert res["num_target"] + res["num_nontarget"] == len((FSDD / "trials.txt").read_text().splitlines())
    # Measured 20.2% (deterministic: no training); the MFCC-statistics reference is 23.95%.
    assert res["eer"] < 0.2395, res


def test_device_reaches_extraction_in_stages_3_and_6(recipe, monkeypatch):
    """--device (default auto) reaches every extract_embeddings.py the stages run (3, 5 and 6 share
    the calls): the command line heads each job's log."""
    monkeypatch.chdir(recipe.dir)
    recipe("--stage", "0", "--stop-stage", "1", *TINY)
    common = (*TINY, "--init-embedder", "baseline", "--ahc-clusters", "6", "--eval-systems", "exp/mini/baseline")
    recipe(*common, "--stage", "3", "--stop-stage", "3")
    recipe(*common, "--stage", "6", "--device", "cpu")
    emb = recipe.dir / "exp" / "mini" / "baseline" / "embeddings"
    heads = {d: [p.read_text().splitlines()[0] for p in sorted((emb / d / "log").glob("extract.*.log"))]
             for d in ("train", "test")}
    assert heads["train"] and heads["test"], heads
    assert all("extract_embeddings.py --device auto " in h for h in heads["train"]), heads
    assert all("extract_embeddings.py --device cpu " in h for h in heads["test"]), heads
