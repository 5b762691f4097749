"""Mechanisms against silent wrong answers and lost inputs (issue #30): an output that is also an input,
pipes in wav.scp, trial lists that repeat pairs, a file system that refuses writes, tables written with
tabs and ``segments`` ending at -1. Each test pins one mechanism over every tool that uses it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_wav

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
    "train_backend": (["train_backend.py", "emb.scp", "utt2spk", "utt2spk"], "utt2spk"),
    "calibrate_train": (["calibrate.py", "train", "scores", "scores"], "scores"),
    "calibrate_apply": (["calibrate.py", "apply", "exp/config.yaml", "scores", "scores"], "scores"),
    "compute_metrics": (["compute_metrics.py", "exp/results.json", "--results-dir", "exp", "--name", "x"],
                        "exp/results.json"),
    "plot_det": (["plot_det.py", "a=scores", "--out", "det.png", "--points", "scores"], "scores"),
    "speaker_means": (["speaker_mean_embeddings.py", "data", "emb.scp", "spk.ark", "data/utt2spk"], "data/utt2spk"),
    "extract": (["extract_embeddings.py", "exp", "data", "emb.ark", "data/wav.scp"], "data/wav.scp"),
    "export": (["export_model.py", "exp", "exp/model.pt"], "exp/model.pt"),
    "import_embeddings": (["import_embeddings.py", "exp/embeddings.scp", "data", "exp"], None),
    "convert_checkpoint": (["local/convert_wavlm_ssl_sv_checkpoint.py", "exp/model.pt", "wavlm", "exp"],
                           "exp/model.pt"),
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


# ------------------------------------------------------------------ 5. trial lists that repeat pairs

def _trial_workspace(d: Path, fault: str) -> list[str]:
    """Embeddings, a scored and an unscored trial list of 6 utterances (3 speakers), with ``fault``:
    the list's first trial again as its last line (``repeat``) or an ``enroll == test`` line (``self``).
    Returns the clean trial lines."""
    from sslspk.data.embeddings import write_embeddings

    d.mkdir(parents=True, exist_ok=True)
    utts = [f"u{i}" for i in range(6)]
    spk = {u: f"s{i // 2}" for i, u in enumerate(utts)}
    (d / "utt2spk").write_text("".join(f"{u} {spk[u]}\n" for u in utts))
    (d / "wav.scp").write_text("".join(f"{u} {u}.wav\n" for u in utts))
    write_embeddings(d / "emb.ark", d / "emb.scp",
                     ((u, np.random.default_rng(i).standard_normal(8)) for i, u in enumerate(utts)))
    clean = [f"{a} {b} {'target' if spk[a] == spk[b] else 'nontarget'}"
             for i, a in enumerate(utts) for b in utts[i + 1:]]
    bad = clean + [clean[0] if fault == "repeat" else "u3 u3 target"]
    (d / "trials").write_text("".join(f"{t}\n" for t in bad))
    rng = np.random.default_rng(1)
    scores = {t: f"{rng.standard_normal():.4f}" for t in clean}
    scores["u3 u3 target"] = "0.9999"
    (d / "scores").write_text("".join(f"{' '.join(t.split()[:2])} {scores[t]} {t.split()[2]}\n" for t in bad))
    return clean


TRIAL_READERS = {
    "score": ["score.py", "trials", "emb.scp", "out"],
    "compute_metrics_trials": ["compute_metrics.py", "scores.unlabelled", "--trials", "trials"],
    "compute_metrics": ["compute_metrics.py", "scores"],
    "calibrate": ["calibrate.py", "train", "scores", "cal.json"],
    "split_trials": ["split_trials.py", "utt2spk", "trials", "dev", "eval"],
    "plot_det": ["plot_det.py", "a=scores", "--out", "det.png"],
    "validate": ["data_dir.py", "validate", "."],
}


@pytest.mark.parametrize("fault", ["repeat", "self"])
@pytest.mark.parametrize("reader", sorted(TRIAL_READERS))
def test_repeated_trial_and_self_pair_are_named(tmp_path, recipe_env, reader, fault):
    """A repeated line counted twice (EER 26.19% -> 28.85%) and an enroll == test pair were taken silently."""
    clean = _trial_workspace(tmp_path, fault)
    unlabelled = (tmp_path / "scores").read_text().splitlines()
    (tmp_path / "scores.unlabelled").write_text("".join(" ".join(x.split()[:3]) + "\n" for x in unlabelled))
    r = _run(TRIAL_READERS[reader], recipe_env, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out, out[-2000:]
    line = len(clean) + 1
    want = f":{line}: trial u0 u1 repeats line 1" if fault == "repeat" else f":{line}: self-pair"
    assert want in out and "--drop-bad-trials" in out, out[-2000:]


@pytest.mark.parametrize("fault", ["repeat", "self"])
def test_drop_bad_trials_gives_the_metrics_of_the_clean_list(tmp_path, recipe_env, fault):
    from sslspk.scoring.metrics import compute_metrics

    clean = _trial_workspace(tmp_path, fault)
    lines = (tmp_path / "scores").read_text().splitlines()[:len(clean)]
    m = compute_metrics(np.array([float(x.split()[2]) for x in lines]),
                        np.array([x.split()[3] == "target" for x in lines], dtype=int))
    r = _run(["compute_metrics.py", "scores", "--drop-bad-trials"], recipe_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"EER {100 * m.eer:.3f}%" in r.stdout, (r.stdout, m.eer)
    counts = "1 repeated trial(s) and 0 self-pair(s)" if fault == "repeat" else "0 repeated trial(s) and 1 self-pair(s)"
    assert f"dropped {counts} of {len(clean) + 1} lines" in r.stderr, r.stderr
    r = _run(["score.py", "trials", "emb.scp", "out", "--drop-bad-trials"], recipe_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x.split()[:2] for x in (tmp_path / "out").read_text().splitlines()] == [t.split()[:2] for t in clean]


def test_a_pair_with_two_labels_is_an_error_even_when_dropping(tmp_path):
    from sslspk.data.trials import read_trials
    from sslspk.utils.fileio import FormatError

    (tmp_path / "trials").write_text("a b target\nb c nontarget\na b nontarget\n")
    with pytest.raises(FormatError, match="trials:3: trial a b repeats line 1 with another label"):
        read_trials(tmp_path / "trials", drop_bad_trials=True)


def test_api_calibrate_threshold_checks_the_trial_list(tmp_path):
    from sslspk.api import SpeakerEmbedder
    from sslspk.utils.fileio import FormatError

    (tmp_path / "exp").mkdir()
    shutil.copy(REPO / "egs" / "fsdd" / "v1" / "conf" / "baseline.yaml", tmp_path / "exp" / "config.yaml")
    wavs = {f"u{i}": write_wav(tmp_path / f"u{i}.wav", 0.5, freq=150.0 * (1 + i // 2), seed=i) for i in range(4)}
    (tmp_path / "trials").write_text("u0 u1 target\nu0 u2 nontarget\nu2 u3 target\nu1 u3 nontarget\nu0 u2 nontarget\n")
    emb = SpeakerEmbedder.from_pretrained(tmp_path / "exp")
    with pytest.raises(FormatError, match="trials:5: trial u0 u2 repeats line 2"):
        emb.calibrate_threshold(tmp_path / "trials", {u: str(p) for u, p in wavs.items()}, save=False)
    info = emb.calibrate_threshold(tmp_path / "trials", {u: str(p) for u, p in wavs.items()}, save=False,
                                   drop_bad_trials=True)
    assert info["num_trials"] == 4


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_trial_lists_have_no_repeats_or_self_pairs(seed):
    """The lists the recipes make (egs/mini, the FSDD and speechocean762 dev lists) come from sample_trials."""
    from sslspk.data.trials import check_pairs, sample_trials

    utt2spk = {f"u{i:02d}": f"s{i % 5}" for i in range(30)}
    for n_tgt, n_non in ((None, None), (40, 200)):
        t = sample_trials(utt2spk, n_tgt, n_non, seed)
        pairs = list(zip(t.enroll, t.test))
        assert check_pairs("sampled", pairs, range(1, len(pairs) + 1)) == list(range(len(pairs)))
        assert len({frozenset(p) for p in pairs}) == len(pairs)   # not even reversed repeats


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "local" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("fault", ["repeat", "self"])
def test_trial_list_converters_reject_repeats_and_self_pairs(tmp_path, fault):
    """local/prepare_voxceleb.py and local/prepare_fsdd.py convert the official lists with their own readers."""
    from sslspk.utils.fileio import FormatError

    bad = "1 id1/v/1.wav id1/v/2.wav" if fault == "repeat" else "1 id1/v/1.wav id1/v/1.wav"
    (tmp_path / "vox").write_text(f"1 id1/v/1.wav id1/v/2.wav\n0 id1/v/1.wav id2/v/1.wav\n{bad}\n")
    want = "vox:3: trial id1/v/1 id1/v/2 repeats line 1" if fault == "repeat" else "vox:3: self-pair"
    with pytest.raises(FormatError, match=want):
        _load_script("prepare_voxceleb").convert_trials(tmp_path / "vox", {"id1/v/1", "id1/v/2", "id2/v/1"})
    bad = "1 0_a_0 0_a_1" if fault == "repeat" else "1 0_a_0 0_a_0"
    (tmp_path / "fsdd").write_text(f"1 0_a_0 0_a_1\n0 0_a_0 0_b_0\n{bad}\n")
    with pytest.raises(FormatError, match="fsdd:3: " + ("trial a-0_a_0 a-0_a_1 repeats line 1" if fault == "repeat"
                                                       else "self-pair")):
        _load_script("prepare_fsdd").convert_trials(tmp_path / "fsdd", {"0_a_0": "a", "0_a_1": "a", "0_b_0": "b"})


# ------------------------------------------------------------------ 4. pipes in wav.scp

def _pipe_dir(d: Path, entries: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "wav.scp").write_text("".join(f"{u} {e}\n" for u, e in sorted(entries.items())))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in sorted(entries)))
    return d


def test_pipe_output_gets_the_checks_of_a_file(tmp_path, recipe_env, caplog):
    """`head -c 20000 x.wav |` was accepted while the same bytes as a file were reported truncated."""
    from sslspk.data.audio import AudioError, read_audio

    wav = write_wav(tmp_path / "x.wav", 1.0)
    (tmp_path / "cut.wav").write_bytes(wav.read_bytes()[:20000])
    entries = {"a_file": str(tmp_path / "cut.wav"), "b_pipe": f"head -c 20000 {wav} |",
               "c_streamed": f"sox {wav} -t wav - |", "d_whole": f"cat {wav} |"}
    for entry in entries.values():   # the same decoded samples and the same verdict, file or pipe
        if "cut" in entry or "head" in entry:
            with pytest.raises(AudioError, match="is truncated: its header announces 32000 bytes of audio, the "
                                                 "file holds 19956"):
                read_audio(entry, strict=True)
            with caplog.at_level("WARNING", logger="sslspk"):
                assert len(read_audio(entry)[0]) == 9978
            assert f"{entry!r} is truncated" in caplog.text
        elif shutil.which("sox") or "sox" not in entry:
            assert np.array_equal(read_audio(entry)[0], read_audio(str(wav))[0])
    r = _run(["data_dir.py", "validate", "--check-audio", _pipe_dir(tmp_path / "d", entries)], recipe_env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "wav.scp:1: utt 'a_file'" in r.stderr and "wav.scp:2: utt 'b_pipe'" in r.stderr, r.stderr
    assert "c_streamed" not in r.stderr and "d_whole" not in r.stderr, r.stderr


def test_pipe_that_hangs_is_killed_after_the_time_limit(tmp_path, recipe_env):
    """`sleep 1000 |` hung extraction and validate_data_dir.sh --check-audio forever."""
    shutil.copy(REPO / "egs" / "fsdd" / "v1" / "conf" / "baseline.yaml", tmp_path / "config.yaml")
    d = _pipe_dir(tmp_path / "d", {"a_ok": str(write_wav(tmp_path / "ok.wav", 0.5)), "b_hang": "sleep 1000 |"})
    env = {**recipe_env, "SSLSPK_PIPE_TIMEOUT": "1"}
    for argv in (["utils/validate_data_dir.sh", "--check-audio", d],
                 ["extract_embeddings.py", tmp_path, d, tmp_path / "e.ark", tmp_path / "e.scp"],
                 ["utils/compute_utt2dur.sh", d]):
        cmd = [str(REPO / argv[0]), *map(str, argv[1:])] if argv[0].endswith(".sh") else argv
        r = (subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60) if argv[0].endswith(".sh")
             else _run(argv, env))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "b_hang" in r.stderr and "pipe command still running after 1 s, killed: 'sleep 1000'" in r.stderr
    assert not (tmp_path / "e.scp").exists()
    r = _run(["data_dir.py", "validate", "--check-audio", d], {**recipe_env, "SSLSPK_PIPE_TIMEOUT": "soon"})
    assert r.returncode == 1 and "SSLSPK_PIPE_TIMEOUT must be a positive number of seconds, got 'soon'" in r.stderr


def test_failing_pipe_names_the_line_and_its_stderr(tmp_path, recipe_env):
    wav = write_wav(tmp_path / "ok.wav", 0.5)
    d = _pipe_dir(tmp_path / "d", {"a_ok": f"cat {wav} |",
                                   "b_fail": f"cat {wav}; echo 'sox FAIL: no such codec' >&2; exit 3 |"})
    r = _run(["data_dir.py", "validate", "--check-audio", d], recipe_env)
    assert r.returncode == 1, r.stderr
    assert "wav.scp:2: utt 'b_fail': pipe command failed (exit 3)" in r.stderr, r.stderr
    assert "sox FAIL: no such codec" in r.stderr and "a_ok" not in r.stderr, r.stderr


# ------------------------------------------------------------------ 9. the file system says no

@pytest.fixture(params=[errno.EROFS, errno.EACCES])
def refused_dir(request, tmp_path, monkeypatch):
    """A folder ``ro`` in which every write fails with EROFS (read-only file system) or EACCES, as a
    read-only mount or ``chmod 0555`` (which does not stop root, who runs these tests) does."""
    import builtins
    import io

    ro = tmp_path / "ro"
    (ro / "exp").mkdir(parents=True)   # an exp dir made before the folder became read-only
    root = str(ro.resolve())

    def check(path) -> None:
        p = os.path.realpath(os.fsdecode(path))
        if p == root or p.startswith(root + os.sep):
            raise OSError(request.param, os.strerror(request.param), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            check(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(path)
        return real_os_open(path, flags, *args, **kwargs)

    def refuse(real):
        def fake(src, *args, **kwargs):
            check(args[0] if args and real in (os.replace, os.rename) else src)
            return real(src, *args, **kwargs)
        return fake

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    for name in ("mkdir", "replace", "rename", "unlink"):
        monkeypatch.setattr(os, name, refuse(getattr(os, name)))
    return ro, os.strerror(request.param)


def _cli(main, argv: list, capsys) -> str:
    """stderr of an in-process command that must stop with a one-line error (exit 1, no traceback)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    return err


def test_refused_writes_are_one_line_errors_naming_the_path(tmp_path, refused_dir, capsys):
    """A read-only exp dir gave OSError tracebacks from extraction, scoring, training and the API."""
    from test_faults import _train_config, _train_data

    from sslspk.api import SpeakerEmbedder
    from sslspk.bin import extract_embeddings, score, train_ssl

    ro, why = refused_dir
    _trial_workspace(tmp_path / "w", "repeat")
    (tmp_path / "w" / "trials").write_text("u0 u1 target\nu0 u2 nontarget\n")
    err = _cli(score.main, [tmp_path / "w" / "trials", tmp_path / "w" / "emb.scp", ro / "scores"], capsys)
    assert f"ERROR: {why}: {ro / 'scores'}: check the permissions" in err, err

    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(REPO / "egs" / "fsdd" / "v1" / "conf" / "baseline.yaml", model / "config.yaml")
    data = _pipe_dir(tmp_path / "d", {"a": str(write_wav(tmp_path / "a.wav", 0.5))})
    err = _cli(extract_embeddings.main, [model, data, ro / "e.ark", ro / "e.scp"], capsys)
    assert f"ERROR: {why}: {ro}" in err and "check the permissions" in err, err

    for exp in (ro / "new_exp", ro / "exp"):
        err = _cli(train_ssl.main, ["--config", _train_config(tmp_path), "--data", _train_data(tmp_path),
                                    "--exp-dir", exp], capsys)
        assert f"ERROR: {why}: {exp}" in err and "check the permissions" in err, err

    embedder = SpeakerEmbedder.from_pretrained(model)
    embedder.exp_dir = ro
    (tmp_path / "t").write_text("a a2 target\na b nontarget\na2 b nontarget\n")
    audio = {"a": str(tmp_path / "a.wav"), "a2": str(write_wav(tmp_path / "a2.wav", 0.5, seed=1)),
             "b": str(write_wav(tmp_path / "b.wav", 0.5, freq=900.0))}
    with pytest.raises(OSError) as e:
        embedder.calibrate_threshold(tmp_path / "t", audio, save=True)
    assert e.value.filename == str(ro / "threshold.json") and e.value.strerror == why


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0555 folder")
def test_read_only_folder_for_real(tmp_path, recipe_env):
    ro = tmp_path / "ro"
    ro.mkdir()
    _trial_workspace(tmp_path / "w", "repeat")
    (tmp_path / "w" / "trials").write_text("u0 u1 target\nu0 u2 nontarget\n")
    ro.chmod(0o555)
    try:
        r = _run(["score.py", tmp_path / "w" / "trials", tmp_path / "w" / "emb.scp", ro / "scores"], recipe_env)
    finally:
        ro.chmod(0o755)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"ERROR: Permission denied: {ro / 'scores'}: check the permissions" in r.stderr, r.stderr


# ------------------------------------------------------------------ 10. Kaldi files as people write them

def test_tab_separated_tables_pass_the_shell_steps_too(tmp_path, recipe_env):
    """A tab-separated wav.scp/utt2spk passed validation and the Python extractor, then
    steps/extract_embeddings.sh failed: "2 utterance(s) missing, 2 not in it"."""
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(REPO / "egs" / "fsdd" / "v1" / "conf" / "baseline.yaml", model / "config.yaml")
    d = tmp_path / "data"
    d.mkdir()
    wavs = {u: write_wav(tmp_path / f"{u}.wav", 0.5, freq=f, seed=i) for i, (u, f) in enumerate((("a", 200.0),
                                                                                               ("b", 700.0)))}
    (d / "wav.scp").write_text("".join(f"{u}\t{p}\n" for u, p in wavs.items()))
    (d / "utt2spk").write_text("a\tspk1\nb \t spk2\n")
    assert _run(["data_dir.py", "validate", d], recipe_env).returncode == 0
    r = subprocess.run(["steps/extract_embeddings.sh", "--nj", "2", str(model), str(d), str(tmp_path / "emb")],
                       cwd=REPO, capture_output=True, text=True, env=recipe_env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from sslspk.data.embeddings import load_embeddings

    assert load_embeddings(tmp_path / "emb" / "embeddings.scp")[0] == ["a", "b"]


def test_segment_ending_at_minus_one_runs_to_the_end_of_the_recording(tmp_path, recipe_env):
    """Kaldi's `segments` end of -1 ("to the end of the recording") was rejected ("end time -1 is not
    after start time") by every reader."""
    from sslspk.augment.sources import AudioSource
    from sslspk.data.audio import read_audio
    from sslspk.data.datadir import DataDir
    from sslspk.data.durations import compute_utt2dur

    wav = write_wav(tmp_path / "rec.wav", 1.5)
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"rec {wav}\n")
    (d / "segments").write_text("u1 rec 0.5 -1\nu2 rec 0 0.5\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\n")
    r = _run(["data_dir.py", "validate", "--check-audio", d], recipe_env)
    assert r.returncode == 0, r.stderr
    full = read_audio(str(wav))[0]
    dd = DataDir.load(d)
    assert np.array_equal(dd.load_audio("u1"), full[8000:])
    assert compute_utt2dur(d, progress=False).utt2dur == {"u1": 1.0, "u2": 0.5}
    dd.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "segments").read_text().splitlines()[0] == "u1 rec 0.5 -1.0"
    assert DataDir.load(tmp_path / "copy").segments == dd.segments
    source = AudioSource(d, 16000, "noise")   # a data dir as an augmentation source
    assert [len(source.load(i)) for i in range(len(source))] == [16000, 8000]
