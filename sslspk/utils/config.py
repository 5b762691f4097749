"""YAML configs: load, validate against dataclasses (unknown keys name the valid ones), save."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration; the message names the file/section and the offending key."""


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping (an empty file is an error)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(cfg).__name__}")
    return cfg


def save_yaml(cfg: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``cfg`` atomically as YAML (keys in insertion order)."""
    import yaml

    from sslspk.utils.fileio import atomic_write

    with atomic_write(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError` listing valid ones."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    return cls(**data)
