"""Classes found by name: a family's base class adds each subclass that sets ``type_name``."""

from __future__ import annotations

import importlib
import pkgutil

from sslspk.utils.config import ConfigError


class Registry:
    """The classes of one family (model types, SSL methods) by their ``type_name``.

    The family's base class calls :meth:`add` from ``__init_subclass__``, so a class registers by
    being defined, under its ``type_name`` and the older names in its ``type_aliases``. :meth:`get`
    and :meth:`names` first import every module of ``package``: a new module there needs no other
    edit. ``unknown``: the error for a name not registered, a format string with ``{name}`` (the
    name's repr) and ``{known}`` (the registered names).
    """

    def __init__(self, package: str, unknown: str):
        self.package = package
        self.unknown = unknown
        self._classes: dict[str, type] = {}
        self._loaded = False

    def add(self, cls: type) -> None:
        """Register ``cls`` under its ``type_name`` and ``type_aliases`` (classes without a ``type_name``,
        like abstract bases, are skipped)."""
        name = getattr(cls, "type_name", "")
        if not name:
            return
        for key in (name, *getattr(cls, "type_aliases", ())):
            old = self._classes.get(key)
            if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(f"{cls.__module__}.{cls.__qualname__}: type_name {key!r} is already "
                                f"{old.__module__}.{old.__qualname__}")
            self._classes[key] = cls

    def remove(self, name: str) -> None:
        """Forget ``name`` (for classes defined in tests)."""
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, by module name, then in the order the module defines them."""
        self._load()
        order = {name: i for i, name in enumerate(self._classes)}
        return sorted(self._classes, key=lambda name: (self._classes[name].__module__, order[name]))

    def find(self, name: object) -> type | None:
        """The class registered as ``name`` (its ``type_name`` or one of its ``type_aliases``), None if none is."""
        self._load()
        return self._classes.get(name) if isinstance(name, str) else None

    def get(self, name: object) -> type:
        """The class registered as ``name``; ConfigError listing the known names if there is none."""
        cls = self.find(name)
        if cls is None:
            raise ConfigError(self.unknown.format(name=repr(name), known=", ".join(self.names())))
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")
        self._loaded = True
