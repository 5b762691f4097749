"""The authors' test protocol (theolepage/wavlm_ssl_sv:SpeakerNet.py evaluateFromList, DatasetLoader.py
loadWAV): segment windows and padding, the combined score, extraction of segment matrices, stage 6 options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, copy_recipe, write_wav

BASELINE = REPO / "egs" / "mini" / "v1" / "conf" / "baseline.yaml"


def test_segment_windows_long_utterance():
    """Evenly spaced starts linspace(0, 100 - 30, 5) = 0, 17.5, 35, 52.5, 70, truncated; no padding."""
    from sslspk.extraction import segment_windows, utterance_segments

    starts, length = segment_windows(100, 5, 30)
    assert starts.tolist() == [0, 17, 35, 52, 70] and length == 100
    wav = np.arange(100, dtype=np.float32)
    segs = utterance_segments(wav, 5, 30)
    assert segs.shape == (5, 30)
    assert [s[0] for s in segs] == [0, 17, 35, 52, 70] and segs[4, -1] == 99


@pytest.mark.parametrize("num_samples", [20, 30, 10])
def test_segment_windows_short_utterance_wraps(num_samples):
    """An utterance of at most one window is repeated up to window + 1 = 31 samples (their `<=` and `+ 1`);
    the starts are then linspace(0, 1, 5) = 0, 0.25, 0.5, 0.75, 1 -> 0, 0, 0, 0, 1."""
    from sslspk.extraction import segment_windows, utterance_segments

    starts, length = segment_windows(num_samples, 5, 30)
    assert starts.tolist() == [0, 0, 0, 0, 1] and length == 31
    wav = np.arange(num_samples, dtype=np.float32)
    repeated = [i % num_samples for i in range(31)]   # by hand: the samples again and again
    segs = utterance_segments(wav, 5, 30)
    assert segs[0].tolist() == repeated[:30] and segs[3].tolist() == repeated[:30]
    assert segs[4].tolist() == repeated[1:31]


def test_segment_length_is_theirs():
    """400 eval frames x 160 + 240 samples (loadWAV max_audio) at 16 kHz."""
    from sslspk.extraction import SEGMENT_SECONDS

    assert round(SEGMENT_SECONDS * 16000) == 400 * 160 + 240


def _score_by_hand(full: dict, segs: dict, e: str, t: str) -> float:
    """0.5 * (cosine of the whole-utterance vectors + mean cosine over all segment pairs), loops only."""
    def cos(a, b):
        return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))

    pairs = [cos(a, b) for a in segs[e] for b in segs[t]]
    return 0.5 * (cos(full[e], full[t]) + sum(pairs) / len(pairs))


def test_full_and_segments_score_against_a_hand_computation(tmp_path):
    """score.py --segments-scp on 3 utterances x 5 segments (vectors with a common offset: a mean subtracted
    anywhere would change the scores) equals the loop computation."""
    from sslspk.bin.score import main
    from sslspk.data.embeddings import write_embeddings

    rng = np.random.default_rng(0)
    utts = ["a", "b", "c"]
    full = {u: rng.normal(size=4) + 2.0 for u in utts}
    segs = {u: rng.normal(size=(5, 4)) * rng.uniform(0.5, 3.0, size=(5, 1)) + 1.0 for u in utts}
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", full.items())
    write_embeddings(tmp_path / "s.ark", tmp_path / "s.scp", segs.items())
    # no self-pair (b b): trial lists refuse them (tests/test_bad_input.py); its hand score is checked below
    trials = [("a", "b", "target"), ("a", "c", "nontarget"), ("c", "b", "nontarget"), ("b", "a", "target")]
    (tmp_path / "trials").write_text("".join(" ".join(t) + "\n" for t in trials))
    main(["--segments-scp", str(tmp_path / "s.scp"), str(tmp_path / "trials"), str(tmp_path / "e.scp"),
          str(tmp_path / "out")])
    got = [float(line.split()[2]) for line in (tmp_path / "out").read_text().splitlines()]
    want = [_score_by_hand(full, segs, e, t) for e, t, _ in trials]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)   # 6 decimals written, float32 storage
    assert abs(_score_by_hand(full, segs, "b", "b") - 1.0) > 0.01   # same utterance: not 1 (segment pairs differ)
    with pytest.raises(SystemExit):   # their protocol has no mean subtraction
        main(["--segments-scp", str(tmp_path / "s.scp"), "--mean-scp", str(tmp_path / "e.scp"),
              str(tmp_path / "trials"), str(tmp_path / "e.scp"), str(tmp_path / "out")])


def test_segment_scp_of_unequal_shapes_names_the_line(tmp_path):
    from sslspk.data.embeddings import write_embeddings
    from sslspk.scoring.segments import load_segment_means
    from sslspk.utils.fileio import FormatError

    write_embeddings(tmp_path / "s.ark", tmp_path / "s.scp", [("a", np.ones((5, 4))), ("b", np.ones((4, 4)))])
    with pytest.raises(FormatError, match=r"s\.scp:2: .*shape \(4, 4\), expected shape \(5, 4\)"):
        load_segment_means(tmp_path / "s.scp")


def _data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    wavs = {"u1": write_wav(tmp_path / "u1.wav", 0.3, seed=1), "u2": write_wav(tmp_path / "u2.wav", 1.2, seed=2)}
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in wavs.items()))
    (d / "utt2spk").write_text("u1 s1\nu2 s2\n")
    (d / "spk2utt").write_text("s1 u1\ns2 u2\n")
    return d


def test_extraction_writes_segment_matrices_and_redoes_them_when_the_options_change(tmp_path, capsys):
    """extract_embeddings.py --segments N writes [N, D] matrices (kaldiio), the embeddings of the windows of
    utterance_segments; the same options again do nothing, other --segments redo the work."""
    import kaldiio
    import torch

    from sslspk.bin.extract_embeddings import main
    from sslspk.data.datadir import DataDir
    from sslspk.extraction import embed_waveforms, load_encoder, utterance_segments

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text(BASELINE.read_text())
    d = _data_dir(tmp_path)
    out = [str(tmp_path / "s.ark"), str(tmp_path / "s.scp")]
    main(["--segments", "3", "--segment-seconds", "0.5", str(model_dir), str(d), *out])
    mats = kaldiio.load_scp(out[1])
    model, cfg = load_encoder(model_dir)
    data = DataDir.load(d)
    for utt in ("u1", "u2"):   # u1 (0.3 s) is repeated to 0.5 s + 1 sample first
        with torch.inference_mode():
            want = embed_waveforms(model, list(utterance_segments(data.load_audio(utt, 16000), 3, 8000)))
        assert mats[utt].shape == (3, want[0].size)
        np.testing.assert_allclose(mats[utt], np.stack(want), rtol=0, atol=1e-5)
    capsys.readouterr()
    main(["--segments", "3", "--segment-seconds", "0.5", str(model_dir), str(d), *out])
    assert "nothing to do" in capsys.readouterr().out
    main(["--segments", "2", "--segment-seconds", "0.5", str(model_dir), str(d), *out])
    assert "extracting again" in capsys.readouterr().out and kaldiio.load_scp(out[1])["u2"].shape[0] == 2


def _fake_root(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in SSLSPK_ROOT whose bin/extract_embeddings.py records its arguments and writes a valid scp."""
    root, calls = tmp_path / "root", tmp_path / "calls"
    (root / "bin").mkdir(parents=True)
    fake = root / "bin" / "extract_embeddings.py"
    fake.write_text(f"#!/usr/bin/env bash\necho \"$*\" >> {calls}\n"
                    "data=${@: -3:1}; scp=${@: -1}\ncut -d' ' -f1 $data/utt2spk | sed 's/$/ x.ark:1/' > $scp\n")
    fake.chmod(0o755)
    (root / "bin" / "stamp.py").symlink_to(REPO / "bin" / "stamp.py")   # the steps' freshness checks
    return root, calls


@pytest.mark.parametrize("recipe,train,test,want", [
    ("voxceleb", "vox2_dev_train", "vox1_all",
     {"cohort": "", "test": "--max-seconds 43.75",
      "segments": "--segments 15 --segment-seconds 4.015"}),
    ("mini", "mini/train", "mini/test", {"cohort": "", "test": ""}),
])
def test_stage6_extraction_options(tmp_path, recipe, train, test, want):
    """egs/voxceleb/v1 extracts the authors' protocol in stage 6 (15 windows of 4.015 s beside test utterances
    cut at 43.75 s; the cohort whole); egs/mini/v1 keeps whole-utterance embeddings only."""
    d = copy_recipe(REPO / "egs" / recipe / "v1", tmp_path / recipe)
    for sub in (train, test):
        (d / "data" / sub).mkdir(parents=True)
        (d / "data" / sub / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
        (d / "data" / sub / "utt2spk").write_text("u1 s1\nu2 s2\n")
    sys_dir = d / "exp" / "sys"
    sys_dir.mkdir(parents=True)
    (sys_dir / "config.yaml").write_text(BASELINE.read_text())
    root, calls = _fake_root(tmp_path)
    env = {**os.environ, "SSLSPK_ROOT": str(root), "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                                              os.environ["PATH"]])}
    opts = ["--train-data", f"data/{train}", "--test-data", f"data/{test}", "--trials", f"data/{test}/trials"]
    r = subprocess.run(["./run.sh", "--stage", "6", "--eval-systems", "exp/sys", "--nj", "1", *opts], cwd=d,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0, r.stdout + r.stderr   # no trial list: stops at the scoring
    lines = calls.read_text().splitlines()
    options = [line.split(" exp/sys ")[0].removeprefix("--device auto").strip() for line in lines]
    assert options == list(want.values()), lines
    assert all(f" data/{s}/split1/1 " in line for s, line in zip((train, test, test), lines))


@pytest.mark.slow   # four extraction jobs (~25 s)
def test_extraction_step_redoes_only_the_segments_when_their_options_change(tmp_path, recipe_env):
    """steps/extract_embeddings.sh --segments: segments.scp is recorded with its options (the library's
    digest), redone when --segments changes, while embeddings.scp is reused."""
    import kaldiio

    from sslspk.extraction import extraction_options, extraction_stamp

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text(BASELINE.read_text())
    d, out = _data_dir(tmp_path), tmp_path / "emb"

    def step(*opts: str) -> subprocess.CompletedProcess:
        r = subprocess.run(["steps/extract_embeddings.sh", "--nj", "1", *opts, str(model_dir), str(d), str(out)],
                           cwd=REPO, capture_output=True, text=True, env=recipe_env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    step("--segments", "3", "--segment-seconds", "0.5")
    assert kaldiio.load_scp(str(out / "segments.scp"))["u1"].shape[0] == 3
    assert extraction_stamp(model_dir, d, extraction_options(3, 0.5)).is_fresh(out / "segments.scp")
    r = step("--segments", "2", "--segment-seconds", "0.5")
    assert "embeddings.scp exists, skipping" in r.stdout and "segments.scp was not made" in r.stdout, r.stdout
    assert kaldiio.load_scp(str(out / "segments.scp"))["u1"].shape[0] == 2
