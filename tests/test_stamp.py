"""One freshness rule (sslspk/utils/stamp.py, bin/stamp.py): an output is redone when the content of an input or an
option changed, whatever the file times, and is not redone when an input is only touched. Each stage's
decision through its shell step (extraction, scoring, trial halves, calibration, PLDA back-end, cohort subset,
utt2dur); clustering and training are pinned in test_cluster.py::test_make_pseudo_labels_is_idempotent and
test_train.py::test_changed_inputs_train_again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_wav

from sslspk.utils.stamp import Stamp, input_digest, read_stamp, stamp_path

BASELINE = REPO / "egs" / "mini" / "v1" / "conf" / "baseline.yaml"


def older(path: Path, than: Path) -> None:
    """Set ``path``'s times 100 s before ``than``'s (a changed input that a time rule would miss)."""
    t = than.stat().st_mtime_ns - 100 * 10**9
    os.utime(path, ns=(t, t))


def touch(path: Path) -> None:
    """Set ``path``'s times 100 s into the future (the content unchanged)."""
    t = path.stat().st_mtime_ns + 100 * 10**9
    os.utime(path, ns=(t, t))


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_stamp_records_content_and_options_not_times(tmp_path):
    a, out = tmp_path / "a", tmp_path / "out"
    a.write_text("one\n")
    out.write_text("made from a\n")
    stamp = Stamp([a, tmp_path / "absent"], {"k": 3, "none": None})
    assert stamp.why_stale(out) == f"{out} has no stamp"
    stamp.write(out)
    record = json.loads(stamp_path(out).read_text())
    import hashlib

    assert record["inputs"] == {str(a): hashlib.sha256(b"one\n").hexdigest(), str(tmp_path / "absent"): "-"}
    assert record["options"] == {"k": "3", "none": ""} and "sslspk" in record
    touch(a)
    assert stamp.is_fresh(out)
    a.write_text("two\n")
    older(a, out)
    assert stamp.changes(out) == [str(a)]
    assert Stamp([a, tmp_path / "absent"], {"k": 4, "none": None}).changes(out) == [str(a), "k"]
    a.write_text("one\n")
    assert stamp.is_fresh(out) and not Stamp([a], {"k": 3, "none": None}).is_fresh(out)   # an input less
    out.unlink()
    assert not stamp.is_fresh(out) and stamp.why_stale(out) == f"{out} does not exist"


def test_a_stamped_input_counts_with_what_made_it(tmp_path):
    """An scp whose text is the same but whose stamp differs (other embeddings behind the same offsets) is a
    changed input of what was made from it."""
    model, scp, scores = tmp_path / "model.pt", tmp_path / "e.scp", tmp_path / "s.score"
    model.write_bytes(b"model 1")
    scp.write_text("u1 e.ark:5\n")
    Stamp([model]).write(scp)
    plain = input_digest(scp)
    assert plain.split("+")[0] == __import__("hashlib").sha256(b"u1 e.ark:5\n").hexdigest() and "+" in plain
    scores.write_text("u1 u1 0.5\n")
    Stamp([scp]).write(scores)
    model.write_bytes(b"model 2")
    Stamp([model]).write(scp)   # re-extracted: the same scp text
    assert Stamp([scp]).changes(scores) == [str(scp)]


def test_stamp_cli_check_write_and_migration(tmp_path, recipe_env):
    def stamp(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "bin" / "stamp.py"), *args], capture_output=True,
                              text=True, env=recipe_env)

    a, out = tmp_path / "a", tmp_path / "out"
    a.write_text("x\n")
    out.write_text("y\n")
    opts = ["--input", str(a), "--option", "n=1"]
    r = stamp("check", *opts, str(out))
    assert r.returncode == 1 and "has no stamp" in r.stdout
    assert stamp("write", *opts, str(out)).returncode == 0
    assert stamp("check", *opts, str(out)).returncode == 0
    r = stamp("check", "--input", str(a), "--option", "n=2", str(out))
    assert r.returncode == 1 and "n changed" in r.stdout
    assert Stamp([a], {"n": "1"}).is_fresh(out)   # the CLI's stamp is the library's
    r = stamp("check", "--option", "bad", str(out))
    assert r.returncode == 1 and "ERROR: --option 'bad': expected NAME=VALUE" in r.stderr
    # Migration: an output of before stamps is accepted once by its old record, then stamped.
    stamp_path(out).unlink()
    marker = tmp_path / "out.inputs"
    marker.write_text("old digest\n")
    assert stamp("check", *opts, "--legacy-marker", str(marker), "--legacy-content", "other", str(out)).returncode == 1
    assert stamp_path(out).exists() is False
    r = stamp("check", *opts, "--legacy-marker", str(marker), "--legacy-content", "old digest", str(out))
    assert r.returncode == 0 and "stamped" in r.stdout and not marker.exists()
    assert read_stamp(out)["options"] == {"n": "1"}
    stamp_path(out).unlink()
    assert stamp("check", *opts, "--adopt-unstamped", "true", str(out)).returncode == 0 and stamp_path(out).exists()


# ------------------------------------------------------------------------------------ the shell steps

def _data(tmp_path: Path, n: int = 6, name: str = "data") -> Path:
    d = tmp_path / name
    d.mkdir()
    wavs = {f"s{i % 3}-u{i}": write_wav(tmp_path / "wav" / f"{i}.wav", 0.4, freq=150 + 50 * (i % 3), seed=i)
            for i in range(n)}
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wavs.items())))
    (d / "utt2spk").write_text("".join(f"{u} {u[:2]}\n" for u in sorted(wavs)))
    return d


def _run(args: list[str], env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_extraction_step_follows_content_and_options(tmp_path, recipe_env):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(BASELINE, model / "config.yaml")
    d, out = _data(tmp_path), tmp_path / "emb"
    step = ["steps/extract_embeddings.sh", "--nj", "1", str(model), str(d), str(out)]
    _run(step, recipe_env)
    scp = out / "embeddings.scp"
    before = mtime(scp)
    for f in ("wav.scp", "utt2spk"):
        touch(d / f)
    touch(model / "config.yaml")
    assert "skipping extraction" in _run(step, recipe_env).stdout and mtime(scp) == before
    wav = d / "wav.scp"   # another recording behind the first utterance, an older time: extracted again
    lines = wav.read_text().splitlines()
    other = write_wav(tmp_path / "other.wav", 0.5, freq=400)
    wav.write_text("\n".join([f"{lines[0].split()[0]} {other}", *lines[1:]]) + "\n")
    older(wav, scp)
    r = _run(step, recipe_env)
    assert "extracting again" in r.stdout and mtime(scp) != before, r.stdout
    before = mtime(scp)
    r = _run(step[:1] + ["--max-seconds", "0.2"] + step[1:], recipe_env)   # another option: extracted again
    assert "extracting again" in r.stdout and mtime(scp) != before
    assert read_stamp(scp)["options"] == {"max_seconds": "0.2"}


def _embeddings(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Embeddings of 8 test utterances of 4 speakers and a cohort of 6, and a labelled trial list."""
    from sslspk.data.embeddings import write_embeddings

    rng = np.random.default_rng(0)
    spk = rng.standard_normal((4, 8))
    test = {f"t{s}-{u}": (spk[s] + 0.3 * rng.standard_normal(8)).astype(np.float32) for s in range(4) for u in range(2)}
    cohort = {f"c{i}": rng.standard_normal(8).astype(np.float32) for i in range(6)}
    write_embeddings(tmp_path / "test.ark", tmp_path / "test.scp", test.items())
    write_embeddings(tmp_path / "cohort.ark", tmp_path / "cohort.scp", cohort.items())
    keys = sorted(test)
    (tmp_path / "trials").write_text("".join(f"{a} {b} {'target' if a[:2] == b[:2] else 'nontarget'}\n"
                                             for i, a in enumerate(keys) for b in keys[i + 1:]))
    return tmp_path / "test.scp", tmp_path / "cohort.scp", tmp_path / "trials"


def test_score_step_follows_content_and_options(tmp_path, recipe_env):
    test, cohort, trials = _embeddings(tmp_path)
    exp = tmp_path / "exp"
    step = ["steps/score.sh", "--cohort-scp", str(cohort), "--top-n", "3", str(exp), str(trials), str(test), "t"]
    _run(step, recipe_env)
    scores = exp / "scores" / "t.score"
    before = mtime(scores)
    touch(trials)
    touch(cohort)
    assert "is up to date" in _run(step, recipe_env).stdout and mtime(scores) == before
    r = _run([*step[:4], "4", *step[5:]], recipe_env)   # --top-n 4: rescored
    assert "is up to date" not in r.stdout and mtime(scores) != before
    before = mtime(scores)
    trials.write_text("".join(trials.read_text().splitlines(keepends=True)[1:]))   # a trial less, older
    older(trials, scores)
    r = _run([*step[:4], "4", *step[5:]], recipe_env)
    assert "is up to date" not in r.stdout
    assert len(scores.read_text().splitlines()) == len(trials.read_text().splitlines())
    assert json.loads((exp / "results.json").read_text())["t"]["backend"] == "as-norm"   # read from the stamp


@pytest.mark.slow
def test_evaluate_step_halves_calibration_and_backend_follow_content_and_options(tmp_path, recipe_env):
    """steps/evaluate.sh: the trial halves, the calibration and the LDA/PLDA back-end are redone when an option
    or an input's content changes (older on disk), never for a touched input."""
    wavs = {f"s{s:02d}-u{u:02d}": write_wav(tmp_path / "wav" / f"{s}-{u}.wav", 0.3, freq=150.0 + 40 * s, seed=u)
            for s in range(10) for u in range(18 if s < 4 else 3)}   # > 60 training embeddings (their dimension)
    train, test = tmp_path / "train", tmp_path / "test"
    for d, keep in ((train, lambda u: u < "s04"), (test, lambda u: u >= "s04")):
        d.mkdir()
        (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wavs.items()) if keep(u)))
        (d / "utt2spk").write_text("".join(f"{u} {u[:3]}\n" for u in sorted(wavs) if keep(u)))
    utts = [u for u in sorted(wavs) if u >= "s04"]
    trials = tmp_path / "trials"
    trials.write_text("".join(f"{a} {b} {'target' if a[:3] == b[:3] else 'nontarget'}\n"
                              for i, a in enumerate(utts) for b in utts[i + 1:]))
    exp = tmp_path / "exp"
    exp.mkdir()
    shutil.copy(BASELINE, exp / "config.yaml")
    labels = Path(shutil.copy(train / "utt2spk", tmp_path / "labels"))   # the back-end's (pseudo-)labels
    step = ["steps/evaluate.sh", "--nj", "1", "--device", "cpu", "--plda-utt2spk", str(labels),
            "--lda-dim", "4"]
    args = [str(exp), str(train), str(test), str(trials)]
    _run([*step, *args], recipe_env)
    outs = [exp / "trials" / "eval", exp / "calibration.json", exp / "backend" / "plda.npz"]
    before = [mtime(p) for p in outs]
    for p in (trials, labels, test / "utt2spk"):
        touch(p)
    _run([*step, *args], recipe_env)
    assert [mtime(p) for p in outs] == before   # touched: nothing redone
    _run([*step, "--cal-p-target", "0.3", *args], recipe_env)   # the option the old time rule missed
    after = [mtime(p) for p in outs]
    assert after[0] == before[0] and after[1] != before[1] and after[2] == before[2]
    assert read_stamp(outs[1])["options"] == {"p_target": "0.3"}
    _run([*step[:-1], "3", "--cal-p-target", "0.3", *args], recipe_env)   # --lda-dim 3: back-end retrained
    again = [mtime(p) for p in outs]
    assert again[:2] == after[:2] and again[2] != after[2]
    labels.write_text(labels.read_text().replace(" s01", " s00"))   # other labels (two speakers merged), older
    older(labels, outs[2])
    _run([*step[:-1], "3", "--cal-p-target", "0.3", *args], recipe_env)
    assert mtime(outs[2]) != again[2]
    trials.write_text("".join(trials.read_text().splitlines(keepends=True)[:-3]))   # another trial list, older
    older(trials, outs[0])
    _run([*step[:-1], "3", "--cal-p-target", "0.3", *args], recipe_env)
    assert mtime(outs[0]) != again[0]


def _stages(tmp_path: Path, env: dict, script: str, **options: str) -> subprocess.CompletedProcess:
    """Run ``script`` after sourcing steps/stages.sh with no stage to run (its functions defined) in a recipe dir."""
    rec = tmp_path / "recipe"
    if not rec.exists():
        rec.mkdir()
        for name in ("utils", "steps"):
            (rec / name).symlink_to(REPO / name)
    sets = "".join(f"{k}={v}; " for k, v in options.items())
    return _run(["bash", "-c", f"set -euo pipefail; cmd=utils/run.py; stage=7; stop_stage=6; {sets}"
                 f". steps/stages.sh; {script}"], env, cwd=rec)


def test_cohort_subset_follows_content_and_options(tmp_path, recipe_env):
    d = _data(tmp_path, n=12, name="recipe_train")
    opts = {"corpus": "c", "train_data": str(d), "cohort_size": "5"}
    assert _stages(tmp_path, recipe_env, "cohort_data", **opts).stdout.strip() == "data/c/cohort"
    cohort = tmp_path / "recipe" / "data" / "c" / "cohort"
    before = mtime(cohort / "utt2spk")
    touch(d / "utt2spk")
    _stages(tmp_path, recipe_env, "cohort_data", **opts)
    assert mtime(cohort / "utt2spk") == before
    _stages(tmp_path, recipe_env, "cohort_data", **{**opts, "cohort_size": "7"})   # missed by the old time rule
    assert len((cohort / "utt2spk").read_text().splitlines()) == 7
    before = mtime(cohort / "utt2spk")
    (d / "utt2spk").write_text((d / "utt2spk").read_text().replace(" s0", " s1"))   # other speakers, older
    older(d / "utt2spk", cohort / "utt2spk")
    _stages(tmp_path, recipe_env, "cohort_data", **{**opts, "cohort_size": "7"})
    assert mtime(cohort / "utt2spk") != before and " s0" not in (cohort / "utt2spk").read_text()


def test_utt2dur_follows_content_and_adopts_an_unstamped_one(tmp_path, recipe_env):
    d = _data(tmp_path, n=3)
    (d / "utt2dur").write_text("".join(f"{line.split()[0]} 9.9\n" for line in (d / "wav.scp").read_text().splitlines()))
    _stages(tmp_path, recipe_env, f"utt2dur {d}")   # one of before stamps: kept, stamped
    assert " 9.9" in (d / "utt2dur").read_text() and stamp_path(d / "utt2dur").is_file()
    touch(d / "wav.scp")
    _stages(tmp_path, recipe_env, f"utt2dur {d}")
    assert " 9.9" in (d / "utt2dur").read_text()
    lines = (d / "wav.scp").read_text().splitlines()   # another recording of the first utterance, older: computed
    other = write_wav(tmp_path / "other.wav", 0.7)
    (d / "wav.scp").write_text("\n".join([f"{lines[0].split()[0]} {other}", *lines[1:]]) + "\n")
    older(d / "wav.scp", d / "utt2dur")
    _stages(tmp_path, recipe_env, f"utt2dur {d}")
    assert [round(float(line.split()[1]), 3) for line in (d / "utt2dur").read_text().splitlines()] == [0.7, 0.4, 0.4]
