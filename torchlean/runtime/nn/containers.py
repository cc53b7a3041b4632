"""ModuleList and ModuleDict: sub-modules held in a list or a dict, registered under torch's names
("0", "1", ... for a list, the keys for a dict), so state_dicts match torch's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .module import Module


def _check(m: Any, where: str) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{where}: {type(m).__name__} is not a Module")
    return m


class ModuleList(Module):
    """A list of modules, registered so ``parameters()``, ``state_dict()``, ``train()`` and ``to()``
    see them; it has no ``forward`` (iterate over it in your own).

    >>> layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
    >>> sorted(layers.state_dict())[:2]
    ['0.bias', '0.weight']
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _items(self) -> list[Module]:
        return list(self._modules.values())

    def _renumber(self, items: list[Module]) -> None:
        for key in list(self._modules):
            self.__dict__.pop(key, None)
        self._modules.clear()
        for i, m in enumerate(items):
            setattr(self, str(i), m)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; returns the list."""
        setattr(self, str(len(self)), _check(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Add each of ``modules`` at the end; returns the list."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before position ``index``."""
        items = self._items()
        items.insert(index, _check(module, "ModuleList.insert"))
        self._renumber(items)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return ModuleList(self._items()[i])
        return self._items()[i]

    def __setitem__(self, i: int, module: Module) -> None:
        items = self._items()
        items[i] = _check(module, "ModuleList")
        self._renumber(items)

    def __delitem__(self, i: int | slice) -> None:
        items = self._items()
        del items[i]
        self._renumber(items)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())


class ModuleDict(Module):
    """A dict of modules by string key, registered like attributes (``state_dict`` names start
    with the key); it has no ``forward``."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict: keys must be non-empty strings without '.', got {key!r}")
        # kept in _modules only (not as an attribute): a key may be "keys" or "items"
        self._modules[key] = _check(module, "ModuleDict")

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def keys(self) -> list[str]:
        """The keys, in insertion order."""
        return list(self._modules)

    def values(self) -> list[Module]:
        """The modules, in insertion order."""
        return list(self._modules.values())

    def items(self) -> list[tuple[str, Module]]:
        """(key, module) pairs, in insertion order."""
        return list(self._modules.items())

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace entries from a mapping or (key, module) pairs."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for k, m in pairs:
            self[k] = m

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module."""
        m = self._modules[key]
        del self[key]
        return m
