"""sslspk: self-supervised speaker verification recipes (Kaldi/ESPnet style).

Heavy dependencies (torch, transformers, faiss) are imported lazily by the
modules that need them, so importing :mod:`sslspk` and ``--help`` stay instant.
"""

__version__ = "0.1.0"
