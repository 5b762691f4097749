"""Export a speaker encoder to TorchScript (``torch.jit.trace``) and ONNX.

Findings (torch 2.9, checked by tests/test_export.py):

* TorchScript: tracing works for every front-end and the traced model accepts any length; the
  MFCC front-end's per-utterance loop is traced for the example's batch size, so export with a
  batch of 1 and embed one utterance per call (what :func:`export_torchscript` does).
* ONNX (TorchScript-based exporter, ``dynamo=False``): the exporter maps neither ``unfold``
  with a dynamic length nor ``aten::fft_rfft``. The batched Kaldi fbank of the learned encoders
  (ECAPA-TDNN, ResNet) therefore switches, while exporting, to framing by a strided convolution
  and the DFT as two matrix products (same features within 1e-3), and exports with a dynamic
  length axis. The MFCC front-end (``torchaudio.compliance.kaldi``, e.g. the ``stats`` baseline)
  cannot be exported: :func:`export_onnx` raises :class:`ExportError` saying so.
* A Whisper-backbone encoder (``sslspk.models.wavlm``, ``backbone: whisper``) cuts inputs longer than its
  positional table (30 s) into windows by a Python loop, which tracing would fix to the example's
  number of windows (wrong embeddings for longer inputs, checked in tests/test_pretrained_backbones.py):
  both exports raise :class:`ExportError`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from sslspk.utils.errors import SslspkError


class ExportError(SslspkError):
    """The model cannot be exported in the requested format."""


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptors 1 and 2 (C++ logging included) to /dev/null inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)


def _example(length: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(1, length, generator=g)


def _check_traceable(model: Any) -> None:
    """ExportError for a model whose trace would be wrong for some input lengths (see module doc)."""
    if getattr(model, "kind", None) == "whisper":
        raise ExportError("a Whisper-backbone encoder cannot be exported: it encodes inputs longer than 30 s in "
                          "windows by a Python loop, which a trace would fix to the example's length")


def export_torchscript(model: Any, out: str | os.PathLike, example_length: int = 32000) -> Path:
    """Trace ``model`` (waveform ``[1, T]`` → ``[1, D]``) and save it; batch size 1, any ``T``."""
    import warnings

    _check_traceable(model)

    import torch

    model = model.eval()
    x = _example(example_length)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x, check_trace=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    traced.save(str(tmp))
    os.replace(tmp, out)
    return out


def export_onnx(model: Any, out: str | os.PathLike, example_length: int = 32000, opset: int = 17) -> Path:
    """Export ``model`` to ONNX with input ``wav [1, T]`` (dynamic ``T``) and output ``embedding``."""
    _check_traceable(model)
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ExportError("ONNX export needs the 'onnx' package: pip install 'sslspk[export]'") from e
    import warnings

    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    from sslspk.frontend.features import KaldiFbank

    fbanks = [m for m in model.modules() if isinstance(m, KaldiFbank)]
    for m in fbanks:  # ONNX has no FFT operator the exporter maps rfft to: use the DFT as matmuls
        m.matmul_dft = True
    try:  # the exporter logs its whole IR graph (from C++) on failure: keep it off the terminal
        with torch.no_grad(), warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (_example(example_length),), str(tmp), input_names=["wav"],
                              output_names=["embedding"], dynamic_axes={"wav": {1: "num_samples"}},
                              opset_version=opset, dynamo=False)
    except Exception as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = (" (the Kaldi fbank/MFCC front-end uses an FFT the TorchScript-based ONNX exporter does not "
                "support; use TorchScript)") if "fft" in msg.lower() else ""
        raise ExportError(f"ONNX export failed: {msg}{hint}") from e
    finally:
        for m in fbanks:
            m.matmul_dft = False
    os.replace(tmp, out)
    return out


def max_abs_diff(model: Any, exported: str | os.PathLike, lengths: tuple[int, ...] = (16000, 24000)) -> float:
    """Largest absolute difference of embeddings between ``model`` and an exported file (.pt/.onnx)."""
    import numpy as np
    import torch

    exported = str(exported)
    worst = 0.0
    if exported.endswith(".onnx"):
        import onnxruntime as ort

        sess = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
        run = lambda x: sess.run(None, {"wav": x.numpy()})[0]  # noqa: E731
    else:
        ts = torch.jit.load(exported)
        run = lambda x: ts(x).numpy()  # noqa: E731
    with torch.no_grad():
        for n in lengths:
            x = _example(n)
            worst = max(worst, float(np.abs(run(x) - model(x).numpy()).max()))
    return worst


def export_model_dir(exp_dir: str, out: str, example_seconds: float = 2.0, no_check: bool = False) -> None:
    """What ``export_model.py`` does: export the encoder of the model dir ``exp_dir`` to ``out`` (``.pt``/``.ts``:
    TorchScript, ``.onnx``: ONNX) traced on ``example_seconds`` of audio and, unless ``no_check``, check that
    the exported model's embeddings match PyTorch's (ExportError beyond 1e-3)."""
    from sslspk.extraction import MODEL_FILES, load_encoder
    from sslspk.utils.errors import InputError
    from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files

    check_outputs_are_not_inputs(dir_and_files(exp_dir, MODEL_FILES), [out])

    model, cfg = load_encoder(exp_dir)
    n = int(example_seconds * cfg.get("sample_rate", 16000))
    if out.endswith(".onnx"):
        export_onnx(model, out, n)
    elif out.endswith((".pt", ".ts")):
        export_torchscript(model, out, n)
    else:
        raise InputError(f"{out}: suffix must be .pt, .ts (TorchScript) or .onnx")
    msg = f"exported {exp_dir} -> {out}"
    if not no_check:
        diff = max_abs_diff(model, out)
        if diff > 1e-3:
            raise ExportError(f"{out}: exported embeddings differ from PyTorch by {diff:.3g}")
        msg += f" (max |diff| vs PyTorch {diff:.2g})"
    print(msg)
