"""TorchScript/ONNX export gives the PyTorch embeddings (stats baseline and a small conv net)."""

import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from sslspk.export import ExportError, export_onnx, export_torchscript, max_abs_diff
from sslspk.extraction import load_encoder


class SmallConv(torch.nn.Module):
    """A conv encoder on raw waveforms with statistics pooling: [B, T] -> [B, 32]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv1d(1, 16, 400, stride=160), torch.nn.ReLU(),
                                       torch.nn.Conv1d(16, 16, 3, padding=1), torch.nn.ReLU())
        self.out = torch.nn.Linear(32, 32)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        h = self.net(wav[:, None])
        return self.out(torch.cat([h.mean(-1), h.std(-1)], dim=1))


@pytest.fixture(scope="module")
def stats_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    shutil.copy(REPO / "egs" / "mini" / "v1" / "conf" / "baseline.yaml", d / "config.yaml")
    return d, load_encoder(d)[0]


def test_torchscript_stats_and_conv(stats_model, tmp_path):
    _, model = stats_model
    for m, name in ((model, "stats"), (SmallConv().eval(), "conv")):
        out = export_torchscript(m, tmp_path / f"{name}.pt", example_length=16000)
        # Other lengths than the tracing example give the same embeddings.
        assert max_abs_diff(m, out, lengths=(12345, 16000, 40000)) < 1e-4


def test_onnx(stats_model, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    conv = SmallConv().eval()
    out = export_onnx(conv, tmp_path / "conv.onnx", example_length=16000)
    assert max_abs_diff(conv, out, lengths=(12345, 40000)) < 1e-4
    # The learned encoders (batched Kaldi fbank: framing + DFT exported as convolution/matmuls).
    from sslspk.models import build_model

    torch.manual_seed(0)
    ecapa = build_model({"type": "ecapa_tdnn", "channels": 16, "mfa_channels": 48, "attention_channels": 8,
                         "se_channels": 8, "embedding_dim": 16}).eval()
    out = export_onnx(ecapa, tmp_path / "ecapa.onnx", example_length=16000)
    assert max_abs_diff(ecapa, out, lengths=(12345, 40000)) < 1e-4
    # The MFCC front-end (torchaudio's per-utterance Kaldi MFCC) is not exportable: a clear error, no partial file.
    with pytest.raises(ExportError, match="fft"):
        export_onnx(stats_model[1], tmp_path / "stats.onnx")
    assert not list(tmp_path.glob("*stats*"))


def test_export_cli(stats_model, tmp_path):
    d, _ = stats_model
    r = subprocess.run([sys.executable, "bin/export_model.py", str(d), str(tmp_path / "m.pt")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "max |diff| vs PyTorch" in r.stdout, r.stderr
    ts = torch.jit.load(str(tmp_path / "m.pt"))
    assert ts(torch.zeros(1, 8000) + 0.01).shape == (1, 60)
