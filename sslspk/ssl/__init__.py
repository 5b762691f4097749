"""Self-supervised methods (DINO, SimCLR, MoCo), optionally with SSPS positive sampling or
cluster-aware positives (``cluster_positives``).

:func:`build_ssl_task` makes the :class:`~sslspk.train.task.TrainTask` described by the
``ssl:`` block of a config around an encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sslspk.utils.config import ConfigError, from_dict


def parse_ssl_config(ssl_cfg: dict[str, Any] | None, where: str = "ssl") -> tuple[str, Any, Any]:
    """``(method, method config, SSPS config or None)`` of an ``ssl:`` block; ConfigError if invalid."""
    cfg = dict(ssl_cfg or {})
    method = cfg.pop("method", None)
    ssps_cfg = cfg.pop("ssps", None)
    cp_cfg = cfg.pop("cluster_positives", None)
    if cp_cfg is not None:
        from sslspk.ssl.cluster_positives import ClusterPositivesConfig

        if ssps_cfg is not None:
            raise ConfigError(f"{where}: ssps and cluster_positives both choose the positives: keep one")
        from_dict(ClusterPositivesConfig, cp_cfg, f"{where}.cluster_positives")
    from sslspk.ssl.base import SSL_METHODS

    mcfg = from_dict(SSL_METHODS.get(method).config_cls, cfg, f"{where} (method {method})")
    scfg = None
    if ssps_cfg is not None:
        from sslspk.ssl.ssps import SSPSConfig

        scfg = from_dict(SSPSConfig, ssps_cfg, f"{where}.ssps")
    return method, mcfg, scfg


def build_ssl_task(ssl_cfg: dict[str, Any], encoder: Any, dataset: Any, total_epochs: int, seed: int = 0):
    """The SSL task of ``ssl_cfg`` (``method`` + its options + optional ``ssps`` or ``cluster_positives`` block)."""
    task = _build_method_task(ssl_cfg, encoder, dataset, total_epochs, seed)
    if ssl_cfg.get("cluster_positives") is not None:
        from sslspk.ssl.cluster_positives import ClusterPositives, ClusterPositivesConfig

        cp = from_dict(ClusterPositivesConfig, ssl_cfg["cluster_positives"], "ssl.cluster_positives")
        clusters = np.unique([dataset.data.utt2spk[u] for u in dataset.utts], return_inverse=True)[1]
        task.positives = ClusterPositives(cp, clusters, len(dataset.views), seed)
    return task


def _build_method_task(ssl_cfg: dict[str, Any], encoder: Any, dataset: Any, total_epochs: int, seed: int = 0):
    """The method's task with its optional SSPS."""
    from sslspk.ssl.base import SSL_METHODS

    method, mcfg, scfg = parse_ssl_config(ssl_cfg)
    views = dataset.views
    embedding_ssps = scfg is not None and scfg.positive == "embedding"
    if embedding_ssps and method != "simclr":
        raise ConfigError(f"ssl.ssps.positive: embedding exists for simclr only; use positive: audio with {method}")
    if method != "dino":
        groups = "two groups of one crop each (anchor, positive)"
        if embedding_ssps:
            groups += ", then a third of one crop with augment: false (the SSPS reference)"
        if len(views) != 2 + embedding_ssps or any(v.count != 1 for v in views) or \
                (embedding_ssps and views[2].augment):
            raise ConfigError(f"{method} needs data.views = {groups}")
    ssps = None
    if scfg is not None:
        from sslspk.ssl.ssps import SSPS

        data = dataset.data
        spk = np.array([data.utt2spk[u] for u in dataset.utts])
        rec = np.array([data.recording_of(u) for u in dataset.utts])
        positive_view = 0 if method == "dino" else 1
        if len(views) <= positive_view:
            raise ConfigError(f"ssl.ssps with {method} needs view group {positive_view} in data.views")
        positive_dim = None
        if method == "simclr":
            from sslspk.ssl.simclr import SimCLR

            positive_dim = SimCLR.output_dim(mcfg, encoder.embedding_dim)
        ssps = SSPS(scfg, len(dataset), encoder.embedding_dim, (positive_view,),
                    speakers=spk if len(set(spk)) < len(spk) else None, recordings=rec, seed=seed,
                    positive_dim=positive_dim)
    return SSL_METHODS.get(method).build(encoder, mcfg, total_epochs, ssps)
