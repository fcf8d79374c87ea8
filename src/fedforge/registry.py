"""One generic registry used for every plug-in kind (datasets, models, algorithms, ...).

Besides plain names, a registry may hold families: `torchvision:efficientnet_b0` asks the
`torchvision` family's resolver for the entry `efficientnet_b0`. A name not found is looked
for once more after the installed packages' `fedforge.plugins` entry points are imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fedforge.errors import UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to plug-ins; unknown names raise an error listing the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._families: dict[str, tuple[Callable[[str], T], str]] = {}

    def add_family(self, prefix: str, resolve: Callable[[str], T], describe: str) -> None:
        """Names `prefix:NAME` are resolved by `resolve(NAME)` (which raises UnknownNameError)."""
        self._families[prefix.lower()] = (resolve, describe)

    def families(self) -> dict[str, str]:
        """Each family's `prefix:NAME` pattern and what it holds."""
        return {f"{prefix}:NAME": describe for prefix, (_, describe) in sorted(self._families.items())}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: `@registry.register("name")`. Re-registering a name needs replace=True."""

        def decorator(obj: T) -> T:
            self.add(name, obj, replace=replace)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, replace: bool = False) -> None:
        key = name.lower()
        if key in self._entries and not replace and self._entries[key] is not obj:
            raise ValueError(f"{self.kind} '{name}' is already registered; pass replace=True to override it")
        self._entries[key] = obj

    def remove(self, name: str) -> None:
        """Forget a registered name (e.g. a plug-in defined only for one experiment or test)."""
        self._entries.pop(name.lower(), None)

    def get(self, name: str) -> T:
        key = str(name).lower()
        prefix, sep, member = str(name).partition(":")
        if sep and prefix.lower() in self._families:
            return self._families[prefix.lower()][0](member)
        if key not in self._entries:
            from fedforge.plugins import load_entry_points

            load_entry_points()
        if key not in self._entries:
            known = ", ".join(self.names())
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(key, self._entries)}; known {self.kind}s: {known}"
            )
        return self._entries[key]

    def names(self) -> list[str]:
        from fedforge.plugins import load_entry_points

        load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
