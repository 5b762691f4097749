"""sslspk: self-supervised speaker verification recipes (Kaldi/ESPnet style).

Heavy dependencies (torch, transformers, faiss) are imported lazily by the
modules that need them, so importing :mod:`sslspk` and ``--help`` stay instant;
``sslspk.SpeakerEmbedder`` loads :mod:`sslspk.api` on first access.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["SpeakerEmbedder", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "SpeakerEmbedder":
        from sslspk.api import SpeakerEmbedder

        return SpeakerEmbedder
    raise AttributeError(f"module 'sslspk' has no attribute {name!r}")
