"""Python API (SpeakerEmbedder), its README snippet, the embed/verify CLIs and lazy import."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, write_wav


@pytest.fixture
def mini_layout(tmp_path, monkeypatch):
    """exp/mini/baseline + a 2-speaker corpus and data dir, laid out as in egs/mini; cwd = there."""
    (tmp_path / "exp" / "mini" / "baseline").mkdir(parents=True)
    shutil.copy(REPO / "egs" / "fsdd" / "v1" / "conf" / "baseline.yaml",
                tmp_path / "exp" / "mini" / "baseline" / "config.yaml")
    utts = {}
    for s, freq in ((1, 140.0), (2, 1500.0)):
        for u in range(1, 4):
            utt = f"mts{s:04d}-{u:04d}"
            utts[utt] = write_wav(tmp_path / "corpus" / "mini" / "wav" / f"mts{s:04d}" / f"{utt}.wav", 1.0 + 0.2 * u,
                                  freq=freq * (1 + 0.02 * u), seed=10 * s + u)
    d = tmp_path / "data" / "mini" / "test"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(utts.items())))
    (d / "utt2spk").write_text("".join(f"{u} {u[:7]}\n" for u in sorted(utts)))
    spk2utt = {f"mts000{s}": [u for u in sorted(utts) if u.startswith(f"mts000{s}")] for s in (1, 2)}
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    keys = sorted(utts)
    (d / "trials").write_text("".join(f"{a} {b} {'target' if a[:7] == b[:7] else 'nontarget'}\n"
                                      for i, a in enumerate(keys) for b in keys[i + 1:]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    api = [b for b in blocks if "SpeakerEmbedder" in b]
    assert api, "README.md has no python block using SpeakerEmbedder"
    return api[0]


def test_readme_api_snippet_runs(mini_layout, capsys):
    ns: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), ns)
    out = capsys.readouterr().out
    assert "same speaker: True" in out
    assert ns["vec"].shape == (80,) and ns["vecs"].shape == (2, 80)
    saved = json.loads((mini_layout / "exp" / "mini" / "baseline" / "threshold.json").read_text())
    assert saved["threshold"] == pytest.approx(ns["info"]["threshold"])


def test_embedder_behaviour(mini_layout):
    import soundfile as sf

    from sslspk import SpeakerEmbedder
    from sslspk.extraction import load_encoder

    emb = SpeakerEmbedder.from_pretrained("exp/mini/baseline")
    assert emb.threshold is None and emb.sample_rate == 16000
    wav_path = "corpus/mini/wav/mts0001/mts0001-0001.wav"
    with pytest.raises(ValueError, match="threshold"):
        emb.verify(wav_path, wav_path)
    # Same embedding as the extraction code path.
    model, _ = load_encoder("exp/mini/baseline")
    import torch

    wav, sr = sf.read(wav_path, dtype="float32")
    ref = model(torch.from_numpy(wav)[None])[0].numpy()
    np.testing.assert_allclose(emb.embed(wav_path), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(emb.embed(wav), ref, rtol=1e-5, atol=1e-5)
    # An array at 8 kHz is resampled: close to the 16 kHz embedding, not equal to the raw array's.
    import torchaudio.functional as AF

    wav8 = AF.resample(torch.from_numpy(wav), 16000, 8000).numpy()
    e8 = emb.embed(wav8, sample_rate=8000)
    cos = e8 @ ref / np.linalg.norm(e8) / np.linalg.norm(ref)
    assert cos > 0.95 and emb.embed(wav8).shape == ref.shape
    # Thresholds: set by hand; calibrated on a dev list, stored, and read back by from_pretrained.
    emb.set_threshold(2.0)
    assert emb.verify(wav_path, wav_path) == (pytest.approx(1.0), False)
    info = emb.calibrate_threshold("data/mini/test/trials", "data/mini/test/wav.scp", save=True)
    assert info["eer"] == 0.0
    again = SpeakerEmbedder.from_pretrained("exp/mini/baseline")
    assert again.threshold == pytest.approx(info["threshold"])
    other = "corpus/mini/wav/mts0002/mts0002-0001.wav"
    assert again.verify(wav_path, "corpus/mini/wav/mts0001/mts0001-0003.wav")[1] is True
    assert again.verify(wav_path, other)[1] is False
    with pytest.raises(KeyError, match="mts0001-0001"):
        emb.calibrate_threshold("data/mini/test/trials", {"x": wav_path})
    with pytest.raises(FileNotFoundError):
        SpeakerEmbedder.from_pretrained("exp/nope")


def test_generic_module_and_checkpoint(tmp_path):
    """Any nn.Module [B, T] -> [B, D] works; a checkpoint file beside config.yaml is loaded."""
    import torch

    from sslspk.api import SpeakerEmbedder

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 8, 64, stride=32)

        def forward(self, wav):
            return self.conv(wav[:, None]).relu().mean(-1)

    m = Tiny()
    emb = SpeakerEmbedder(m, sample_rate=8000)
    x = np.random.default_rng(0).normal(size=4000).astype(np.float32)
    assert emb.embed(x).shape == (8,)
    assert emb.embed_batch([x, x[:2000]], progress=False).shape == (2, 8)
    # A checkpoint of the stats model (no parameters) loads through from_pretrained(path/to/ckpt).
    d = tmp_path / "exp"
    d.mkdir()
    shutil.copy(REPO / "egs" / "mini" / "v1" / "conf" / "baseline.yaml", d / "config.yaml")
    torch.save({"model": {}}, d / "epoch3.pt")
    assert SpeakerEmbedder.from_pretrained(d / "epoch3.pt").embed(x).shape == (60,)


def test_cli_embed_verify_json_and_lazy_import(mini_layout):
    run = lambda *a: subprocess.run([sys.executable, *a], capture_output=True, text=True, cwd=mini_layout)
    a, b = "corpus/mini/wav/mts0001/mts0001-0001.wav", "corpus/mini/wav/mts0002/mts0002-0001.wav"
    r = run(str(REPO / "bin" / "embed.py"), "exp/mini/baseline", a, b)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dim"] == 80 and len(out["embeddings"][a]) == 80
    r = run(str(REPO / "bin" / "verify.py"), "--threshold", "0.5", "exp/mini/baseline", a, a)
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["score"] == pytest.approx(1.0) and v["same_speaker"] is True
    r = run(str(REPO / "bin" / "verify.py"), "exp/mini/baseline", a, "missing.wav")
    assert r.returncode == 1 and "missing.wav" in r.stderr and "Traceback" not in r.stderr
    # `import sslspk` stays light; the attribute loads the API on demand.
    r = run("-c", "import sys, sslspk; assert 'torch' not in sys.modules and 'numpy' not in sys.modules; "
                  "E = sslspk.SpeakerEmbedder; print(E.__name__)")
    assert r.returncode == 0 and r.stdout.strip() == "SpeakerEmbedder", r.stderr
