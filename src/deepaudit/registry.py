"""Registries of named entries (tools, tracks, families), each entry registered where it is
defined, with a decorator, as in inspect_ai's registry. The built-in entries are found by
importing every module of the packages that hold them, so that no list of names exists
anywhere else; an entry defined elsewhere (a user's module, a test file) registers itself
when its module is imported."""

from __future__ import annotations

import pkgutil
from collections.abc import Iterator
from importlib import import_module
from typing import Generic, TypeVar

from deepaudit.errors import DeepAuditError

T = TypeVar("T")


class RegistryError(DeepAuditError):
    """An unknown name, or a second entry under a name that is taken."""


class Registry(Generic[T]):
    """Name -> entry. ``packages`` hold the built-in entries and are imported on first lookup."""

    def __init__(self, kind: str, packages: tuple[str, ...]):
        self.kind, self.packages = kind, packages
        self._entries: dict[str, T] = {}
        self._discovered = False

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` under ``name``. Registering the same definition again (a module
        imported twice) replaces it; another definition under a taken name is an error."""
        old = self._entries.get(name)
        if old is not None and _origin(old) != _origin(entry):
            raise RegistryError(f"two {self.kind}s named {name!r}: {_origin(old)} and {_origin(entry)}")
        self._entries[name] = entry

    def _discover(self) -> None:
        if self._discovered:
            return
        for package in self.packages:
            module = import_module(package)
            for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
                import_module(info.name)
        self._discovered = True

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {sorted(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(sorted(self._entries))

    def values(self) -> list[T]:
        return [self._entries[name] for name in self]


def _origin(entry: object) -> str:
    """Where an entry was defined: its class's (or its own) module and qualified name."""
    target = getattr(entry, "cls", entry)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__qualname__)}"
