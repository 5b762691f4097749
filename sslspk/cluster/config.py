"""The clustering settings, defined once: :class:`ClusterConfig` is what ``make_pseudo_labels`` reads and what
``bin/cluster.py`` offers as options (its parser is built from the fields: name, type, default, choices, help),
so a setting added here is an option of ``cluster.py`` and, passed through untouched, of ``steps/cluster.sh``.
Standard library only: ``cluster.py --help`` imports it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sslspk.utils.config import ConfigError, parse_bool

#: ``init`` names → faiss ``ClusteringInitMethod`` attribute names.
INIT_METHODS: dict[str, str] = {
    "random": "ClusteringInitMethod_RANDOM",
    "kmeans++": "ClusteringInitMethod_KMEANS_PLUS_PLUS",
    "afkmc2": "ClusteringInitMethod_AFK_MC2",
}
#: AHC linkages; ``ward`` uses euclidean distances, the others cosine distances.
LINKAGES: tuple[str, ...] = ("average", "complete", "single", "ward")
SMALL_CLUSTER_POLICIES: tuple[str, ...] = ("drop", "merge")
#: ``normalize`` values: ``l2`` clusters unit-norm embeddings (cosine geometry), ``none`` the raw ones
#: (Euclidean geometry, as theolepage/wavlm_ssl_sv:pseudo_labeling.py).
NORMALIZATIONS: tuple[str, ...] = ("l2", "none")

KMEANS, AHC, OUTPUT = "k-means (faiss)", "agglomerative clustering of the centroids", "output"


def _option(default: Any, help: str, group: str | None = None, choices: tuple[str, ...] | None = None,
            flag: str | None = None) -> Any:
    """A field with what its command-line option needs (``flag``: when not ``--<name with dashes>``)."""
    return field(default=default, metadata={"help": help, "group": group, "choices": choices, "flag": flag})


@dataclass
class ClusterConfig:
    """Settings of the clustering (the options of ``bin/cluster.py``, made from these fields)."""

    k: int = field(metadata={"help": "number of k-means clusters; 0: no k-means, AHC of the embeddings "
                                     "(needs --ahc-*)", "group": KMEANS})
    standardize: bool = _option(False, "subtract each dimension's mean and divide by its std over the data set "
                                       "before the L2 normalisation (e.g. for statistics embeddings, whose dimensions "
                                       "have very different scales)")
    normalize: str = _option("l2", "l2: cluster unit-norm embeddings (cosine geometry; AHC on unit-norm centroids); "
                                   "none: the raw embeddings and centroids (Euclidean geometry, the authors')",
                             choices=NORMALIZATIONS)
    niter: int = _option(20, "k-means iterations at most: faiss stops earlier once the objective is unchanged", KMEANS)
    seed: int = _option(1234, "random seed", KMEANS)
    spherical: bool = _option(True, "normalise centroids each iteration: cosine k-means (false: Euclidean k-means)",
                              KMEANS)
    nredo: int = _option(1, "k-means runs, the best objective is kept", KMEANS)
    max_points_per_centroid: int = _option(256, "faiss trains on at most k times this many sampled rows", KMEANS)
    init: str = _option("random", "centroid initialisation: random rows, kmeans++ (faiss's D^2 seeding) or afkmc2",
                        KMEANS, tuple(INIT_METHODS))
    gpu: str = _option("auto", "faiss GPU k-means: auto = when faiss sees a GPU", KMEANS, ("auto", "yes", "no"))
    ahc_clusters: int | None = _option(None, "cut the AHC tree into this many clusters", AHC)
    ahc_threshold: float | None = _option(None, "... or merge centroids closer than this distance", AHC)
    ahc_linkage: str = _option("average", "average/complete/single use cosine distance, ward euclidean (of unit-norm "
                                          "centroids with --normalize l2, of the raw ones with none)", AHC, LINKAGES)
    min_cluster_size: int = _option(1, "smaller clusters are dropped or merged", OUTPUT)
    small_clusters: str = _option("drop", "drop the utterances of small clusters or merge them into the nearest "
                                          "big cluster", OUTPUT, SMALL_CLUSTER_POLICIES)
    prefix: str = _option("pl", "pseudo speaker id prefix", OUTPUT)
    batch: int = _option(65536, "rows per assignment batch", KMEANS, flag="--batch-size")

    def check_settings(self) -> None:
        """ConfigError for settings that cannot work whatever the data (before any is read)."""
        if self.k < 0:
            raise ConfigError(f"k={self.k} must be >= 1, or 0 (AHC of the embeddings)")
        if self.k == 0 and not self.use_ahc:
            raise ConfigError("k=0 (no k-means) needs ahc_clusters or ahc_threshold: AHC of the embeddings")
        if self.niter < 1 or self.nredo < 1 or self.max_points_per_centroid < 1 or self.batch < 1:
            raise ConfigError("niter, nredo, max_points_per_centroid and batch must be >= 1")
        for name in ("normalize", "init", "ahc_linkage", "small_clusters", "gpu"):
            choices = CHOICES[name]
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.ahc_clusters is not None and self.ahc_threshold is not None:
            raise ConfigError("give at most one of ahc_clusters and ahc_threshold")
        if self.ahc_clusters is not None and self.ahc_clusters < 1:
            raise ConfigError(f"ahc_clusters={self.ahc_clusters} must be >= 1")
        if self.ahc_threshold is not None and self.ahc_threshold < 0:
            raise ConfigError(f"ahc_threshold must be >= 0, got {self.ahc_threshold}")
        if self.min_cluster_size < 1:
            raise ConfigError(f"min_cluster_size must be >= 1, got {self.min_cluster_size}")
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ConfigError(f"speaker prefix {self.prefix!r} is empty or contains whitespace")

    def check(self, n: int) -> None:
        """ConfigError for settings that cannot work on ``n`` embeddings."""
        self.check_settings()
        if not 0 <= self.k <= n:
            raise ConfigError(f"k={self.k} must be between 1 and the number of embeddings ({n}), "
                              "or 0 (AHC of the embeddings)")
        top = self.k or n
        if self.ahc_clusters is not None and not 1 <= self.ahc_clusters <= top:
            raise ConfigError(f"ahc_clusters={self.ahc_clusters} must be between 1 and "
                              + (f"k={self.k}" if self.k else f"the number of embeddings ({n})"))

    @property
    def use_ahc(self) -> bool:
        """Whether AHC of the centroids follows k-means."""
        return self.ahc_clusters is not None or self.ahc_threshold is not None


CHOICES: dict[str, tuple[str, ...]] = {f.name: f.metadata["choices"] for f in dataclasses.fields(ClusterConfig)
                                       if f.metadata.get("choices")}


_TYPES = {"int": int, "float": float, "str": str, "bool": parse_bool}


def option_flag(f: dataclasses.Field) -> str:
    """The command-line option of a :class:`ClusterConfig` field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type | None = None) -> None:
    """One option per field of ``cls`` (default :class:`ClusterConfig`), with its type, default, choices and help,
    in the field's group; a field without a default is a required option; ``A | None`` fields default to
    None (not given); booleans take ``true|false``."""
    groups: dict[str, Any] = {}
    exclusive = None
    for f in dataclasses.fields(cls or ClusterConfig):
        hint = (f.type if isinstance(f.type, str) else f.type.__name__ if isinstance(f.type, type)
                else str(f.type)).replace(" | None", "")
        group_name = f.metadata.get("group")
        group = parser if group_name is None else groups.setdefault(group_name, parser.add_argument_group(group_name))
        if f.name in ("ahc_clusters", "ahc_threshold"):
            exclusive = exclusive or group.add_mutually_exclusive_group()
            group = exclusive
        kwargs: dict[str, Any] = {"type": _TYPES[hint], "dest": f.name, "help": f.metadata.get("help", "")}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if hint == "bool":
            kwargs["metavar"] = "true|false"
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
            if f.default is not None:
                kwargs["help"] += f" (default {str(f.default).lower() if hint == 'bool' else f.default})"
        group.add_argument(option_flag(f), **kwargs)


def from_args(args: argparse.Namespace, cls: type | None = None) -> ClusterConfig:
    """The ``cls`` (default :class:`ClusterConfig`) of the options :func:`add_options` added."""
    cls = cls or ClusterConfig
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
