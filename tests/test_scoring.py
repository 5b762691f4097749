"""Trial-list parsing, cosine scoring (vs a per-trial loop), score/metrics CLIs, ark/scp I/O."""

import json
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
from conftest import REPO

from sslspk.data.embeddings import group_means, group_sums, load_embeddings, speaker_means, write_embeddings
from sslspk.data.trials import read_trials
from sslspk.scoring.cosine import score_trials
from sslspk.utils.fileio import FormatError


def test_read_trials_kaldi_voxceleb_unlabelled(tmp_path):
    (tmp_path / "k").write_text("a b target\na c nontarget\r\n")
    (tmp_path / "v").write_text("1 a b\n0 a c\n")
    (tmp_path / "u").write_text("a b\na c\n")
    k, v, u = (read_trials(tmp_path / n) for n in "kvu")
    assert k.enroll == v.enroll == u.enroll == ["a", "a"] and k.test == v.test == ["b", "c"]
    assert list(k.labels) == list(v.labels) == [1, 0] and u.labels is None


@pytest.mark.parametrize("text,line,msg", [
    ("a b target\na c maybe\n", 2, "Kaldi trial"),
    ("1 a b\n2 a c\n", 2, "VoxCeleb trial"),
    ("1 a b\n\n0 a c\n", 2, "empty line"),
    ("a b c d\n", 1, "expected"),
])
def test_read_trials_errors_name_file_and_line(tmp_path, text, line, msg):
    p = tmp_path / "trials"
    p.write_text(text)
    with pytest.raises(FormatError, match=msg) as e:
        read_trials(p)
    assert f"{p}:{line}:" in str(e.value)


def test_empty_trials(tmp_path):
    (tmp_path / "t").write_text("")
    with pytest.raises(FormatError, match="empty"):
        read_trials(tmp_path / "t")


def test_cosine_matches_loop_and_mean_subtraction():
    rng = np.random.default_rng(0)
    keys = [f"u{i:03d}" for i in range(50)]
    mat = rng.normal(size=(50, 16)).astype(np.float32) + 2.0
    e = [keys[i] for i in rng.integers(0, 50, 300)]
    t = [keys[i] for i in rng.integers(0, 50, 300)]
    mean = mat.mean(0)
    got = score_trials((keys, mat), e, t, mean=mean, block=7)
    idx = {k: i for i, k in enumerate(keys)}
    for i in range(300):
        a, b = mat[idx[e[i]]] - mean, mat[idx[t[i]]] - mean
        assert got[i] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-6)
    plain = score_trials((keys, mat), e, t)
    assert not np.allclose(plain, got)  # mean subtraction changes the scores


def test_missing_embedding_is_named():
    with pytest.raises(KeyError, match="nope"):
        score_trials((["a"], np.ones((1, 3))), ["a"], ["nope"])


def test_ark_scp_roundtrip_readable_by_kaldiio(tmp_path):
    rng = np.random.default_rng(0)
    items = [(f"spk{i}-utt{i}", rng.normal(size=8).astype(np.float32)) for i in range(5)]
    n = write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", iter(items))
    assert n == 5 and not list(tmp_path.glob(".*tmp"))
    d = kaldiio.load_scp(str(tmp_path / "e.scp"))
    assert list(d.keys()) == [k for k, _ in items]
    for k, v in items:
        np.testing.assert_array_equal(d[k], v)
    keys, mat = load_embeddings(tmp_path / "e.scp")
    assert keys == [k for k, _ in items] and mat.shape == (5, 8)
    # Kaldi-style readers by path too
    assert sum(1 for _ in kaldiio.load_ark(str(tmp_path / "e.ark"))) == 5


def test_scp_into_truncated_ark_names_line(tmp_path):
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", [("a", np.ones(4)), ("b", np.ones(4))])
    data = (tmp_path / "e.ark").read_bytes()
    (tmp_path / "e.ark").write_bytes(data[: len(data) - 6])
    with pytest.raises(FormatError, match=r"e\.scp:2: cannot read embedding 'b'"):
        load_embeddings(tmp_path / "e.scp")


def test_group_means_batched_and_labelled():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5)).astype(np.float32)
    lab = rng.integers(0, 6, 100)
    lab[lab == 4] = 3  # group 4 empty
    got = group_means(x, lab, 7, batch=13)
    for c in range(7):
        want = x[lab == c].mean(0) if (lab == c).any() else np.zeros(5)
        np.testing.assert_allclose(got[c], want, atol=1e-6)
    sums, counts = group_sums(x, lab, 7, batch=13)
    np.testing.assert_array_equal(counts, np.bincount(lab, minlength=7))
    np.testing.assert_allclose(sums, got * counts[:, None], atol=1e-5)
    np.testing.assert_allclose(group_means(x[:3], np.array(["b", "a", "a"])), [x[1:3].mean(0), x[0]], atol=1e-6)
    norm = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(group_means(x, lab, 7, normalize_rows=True)[0], norm[lab == 0].mean(0), atol=1e-6)


def test_speaker_means():
    keys = ["s1-a", "s1-b", "s2-a"]
    mat = np.array([[3.0, 0], [0, 2.0], [0, 5.0]])
    spks, means = speaker_means(keys, mat, {"s1-a": "s1", "s1-b": "s1", "s2-a": "s2"})
    assert spks == ["s1", "s2"]
    np.testing.assert_allclose(means, [[0.5, 0.5], [0, 1.0]])


def test_score_and_metrics_cli(tmp_path):
    rng = np.random.default_rng(3)
    spk = {f"s{s}-u{u}": s for s in range(6) for u in range(5)}
    centers = rng.normal(size=(6, 10))
    emb = [(k, centers[s] + 0.3 * rng.normal(size=10)) for k, s in spk.items()]
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", emb)
    keys = list(spk)
    with open(tmp_path / "trials", "w") as f:
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                f.write(f"{int(spk[keys[i]] == spk[keys[j]])} {keys[i]} {keys[j]}\n")
    run = lambda *a: subprocess.run([sys.executable, *a], capture_output=True, text=True, cwd=REPO)
    r = run("bin/score.py", str(tmp_path / "trials"), str(tmp_path / "e.scp"), str(tmp_path / "s.score"))
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "s.score").read_text().splitlines()
    assert len(lines) == len(keys) * (len(keys) - 1) // 2 and lines[0].split()[3] in ("target", "nontarget")
    r = run("bin/compute_metrics.py", "--results-dir", str(tmp_path / "exp"), "--name", "toy",
            str(tmp_path / "s.score"))
    assert r.returncode == 0, r.stderr
    assert "EER" in r.stdout
    res = json.loads((tmp_path / "exp" / "results.json").read_text())["toy"]
    assert res["eer"] < 0.05  # well-separated speakers
    assert "| toy |" in (tmp_path / "exp" / "results.md").read_text()
    # Bad trial list: clear error, no traceback.
    (tmp_path / "bad").write_text("1 s0-u0 s0-u1\n0 s0-u0\n")
    r = run("bin/score.py", str(tmp_path / "bad"), str(tmp_path / "e.scp"), str(tmp_path / "x"))
    assert r.returncode == 1 and "bad:2:" in r.stderr and "Traceback" not in r.stderr


def test_speaker_mean_embeddings_file(tmp_path, capsys):
    """speaker_mean_embeddings.py: the speakers of the data dir's utt2spk, each the mean of its utterances'
    length-normalised embeddings, keyed by speaker id."""
    from sslspk.data.embeddings import speaker_mean_embeddings_file

    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp",
                     [("a-1", np.array([3.0, 0])), ("a-2", np.array([0, 2.0])), ("b-1", np.array([0, 5.0]))])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "utt2spk").write_text("a-1 a\na-2 a\nb-1 b\n")
    n = speaker_mean_embeddings_file(tmp_path / "d", tmp_path / "e.scp", tmp_path / "m.ark", tmp_path / "m.scp")
    assert n == 2 and capsys.readouterr().out == f"wrote 2 speaker embeddings to {tmp_path / 'm.scp'}\n"
    keys, mat = load_embeddings(tmp_path / "m.scp")
    assert keys == ["a", "b"]
    np.testing.assert_allclose(mat, [[0.5, 0.5], [0, 1.0]])


def test_split_trials_file_halves_speakers(tmp_path, capsys):
    """split_trials.py: two trial lists with no speaker in common, the cross-half trials dropped, labels kept;
    an empty half is an error naming it."""
    from sslspk.data.trials import split_trials_file
    from sslspk.utils.errors import InputError

    utt2spk = {f"s{s}-u{u}": f"s{s}" for s in range(4) for u in range(3)}
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    utts = list(utt2spk)
    with open(tmp_path / "trials", "w") as f:
        for i, a in enumerate(utts):
            for b in utts[i + 1:]:
                f.write(f"{a} {b} {'target' if utt2spk[a] == utt2spk[b] else 'nontarget'}\n")
    split_trials_file(str(tmp_path / "utt2spk"), str(tmp_path / "trials"), str(tmp_path / "dev"),
                      str(tmp_path / "eval"), seed=3)
    halves = [read_trials(tmp_path / name) for name in ("dev", "eval")]
    spks = [{utt2spk[u] for u in (*t.enroll, *t.test)} for t in halves]
    assert len(spks[0]) == len(spks[1]) == 2 and not spks[0] & spks[1]
    for t in halves:   # every within-half pair of the 6 utterances of 2 speakers, with its label
        assert len(t) == 15
        assert all(lab == (utt2spk[e] == utt2spk[s]) for e, s, lab in zip(t.enroll, t.test, t.labels))
    assert capsys.readouterr().out == f"15 trials -> {tmp_path / 'dev'}, 15 trials -> {tmp_path / 'eval'}\n"
    (tmp_path / "cross").write_text("s0-u0 s1-u0 nontarget\n")
    with pytest.raises(InputError, match="the split of .*cross left no trials"):
        split_trials_file(str(tmp_path / "utt2spk"), str(tmp_path / "cross"), str(tmp_path / "d2"),
                          str(tmp_path / "e2"))
