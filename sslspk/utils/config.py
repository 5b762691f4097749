"""YAML configs: load, check sections and the sample rate, validate blocks against dataclasses (unknown keys
name the valid ones), save."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from typing import Any, TypeVar

from sslspk.utils.errors import InputError

T = TypeVar("T")


class ConfigError(InputError):
    """An invalid configuration; the message names the file/section and the offending key."""


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping (an empty file is an error)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(cfg).__name__}")
    return cfg


#: Top-level sections of a config by kind: a training config (ssl, pseudo) or the config.yaml of a
#: model dir (a non-learned model's config, or a training config copied into its experiment dir).
SECTIONS = {
    "ssl": {"required": ("model", "data", "ssl", "train"), "optional": ("sample_rate", "validation")},
    "pseudo": {"required": ("data", "loss", "train"),
               "optional": ("sample_rate", "model", "init", "finetune", "dlg_lc", "validation")},
    "model": {"required": ("model",),
              "optional": ("sample_rate", "data", "ssl", "train", "loss", "init", "finetune", "dlg_lc",
                           "validation")},
}
DATA_KEYS = ("views", "augment", "too_short", "channel")
DEFAULT_SAMPLE_RATE = 16000


def check_sections(cfg: dict[str, Any], kind: str, where: str) -> None:
    """Reject unknown or missing top-level sections and unknown ``data:`` keys (see :data:`SECTIONS`)."""
    spec = SECTIONS[kind]
    allowed = spec["required"] + spec["optional"]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(allowed)}")
    missing = [k for k in spec["required"] if k not in cfg]
    if missing:
        raise ConfigError(f"{where}: missing required section(s) {', '.join(missing)}")
    data = cfg.get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: data: expected a mapping of keys to values, got {data!r}")
    bad = sorted(set(data) - set(DATA_KEYS))
    if bad:
        raise ConfigError(f"{where}: data: unknown key(s) {', '.join(bad)}; valid: {', '.join(DATA_KEYS)}")


def config_sample_rate(cfg: dict[str, Any], where: str) -> int:
    """The one sample rate of a config: its top-level ``sample_rate`` (Hz, default 16000)."""
    rate = cfg.get("sample_rate", DEFAULT_SAMPLE_RATE)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ConfigError(f"{where}: sample_rate: expected a positive integer (Hz), got {rate!r}")
    return rate


def save_yaml(cfg: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``cfg`` atomically as YAML (keys in insertion order)."""
    import yaml

    from sslspk.utils.fileio import atomic_write

    with atomic_write(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as YAML gives it) fits the annotation ``hint``; unknown hints pass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        return not args or all(_type_ok(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, checked against its fields before any work starts.

    Unknown keys (the error lists the valid ones), missing required keys and values of the wrong
    type raise :class:`ConfigError` naming ``where`` and the key. A float written as ``1e-4``
    (a string to PyYAML) is read as the number it means.
    """
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {data!r}")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.init]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        hint = hints.get(key, Any)
        if isinstance(value, str) and _type_ok(1.0, hint) and not _type_ok(value, hint):
            try:
                data[key] = value = float(value)
            except ValueError:
                pass
        if not _type_ok(value, hint):
            raise ConfigError(f"{where}: {key}: expected {_hint_name(hint)}, got {type(value).__name__} {value!r}")
    try:
        return cls(**data)
    except ConfigError as e:   # a __post_init__ range check: say which file and section
        raise ConfigError(f"{where}: {e}") from e


#: Valid ranges of :func:`check_ranges`: the test and how the message writes it.
RANGES: dict[str, tuple[Any, str]] = {
    ">0": (lambda v: v > 0, "> 0"),
    ">=0": (lambda v: v >= 0, ">= 0"),
    ">=1": (lambda v: v >= 1, ">= 1"),
    "[0,1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "[0,1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "(0,1]": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def check_ranges(obj: Any, **rules: str) -> None:
    """ConfigError naming the first field of ``obj`` outside its range and the range: ``rules`` maps a
    field name to a key of :data:`RANGES`; a None value (an unset optional key) passes, and each
    element of a list is checked. Called by the ``__post_init__`` of the config dataclasses, so a bad
    value stops a run before its first write; :func:`from_dict` prefixes the file and section."""
    for name, rule in rules.items():
        test, text = RANGES[rule]
        value = getattr(obj, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if value is not None and not all(isinstance(v, (int, float)) and test(v) for v in values):
            raise ConfigError(f"{name}: must be {text}, got {value!r}")


def apply_overrides(cfg: dict[str, Any], overrides: list[str], where: str = "--set") -> dict[str, Any]:
    """``cfg`` with each ``KEY.PATH=VALUE`` of ``overrides`` set (in order; VALUE parsed as YAML, so
    ``train.lr=2e-5`` is a float (as YAML 1.2 reads it; PyYAML would give a string), ``model.head=mhfa`` a
    string, ``train.grad_clip=null`` None). A path
    may create a missing key or section (the config's validation then judges it like a key of the YAML);
    it may not go through a value that is not a mapping."""
    import yaml

    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ConfigError(f"{where} {item!r}: expected KEY.PATH=VALUE, e.g. train.lr=2e-5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} {item!r}: invalid YAML value: {e}") from e
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
            value = float(value)
        node = cfg
        for i, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where} {item!r}: {'.'.join(path[:i + 1])} is not a mapping ({node!r})")
        node[path[-1]] = value
    return cfg
