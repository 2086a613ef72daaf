"""The one registry: per kind, the components' records and the builders registered against them.

Records come first (declared in `dlbench.catalog.builtin`, or by a plugin); a builder
(torch code in `dlbench.components`, or a plugin's) registers against a declared name.
A record without a builder, or a builder without a record, fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from collections.abc import Callable, Iterator, Mapping

from dlbench.catalog.records import Component, Facts, Setting

T = TypeVar("T")  # a builder: a function, a class, or what a task does


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A component with its builder: what `KIND[name]` returns."""

    record: Component
    builder: T

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def help(self) -> str:
        return self.record.summary

    @property
    def info(self) -> Facts:
        return Facts(self.record.facts)


class Kind(Generic[T]):
    """Every component of one kind (optimizer, model, ...): records by name, and their builders."""

    def __init__(self, kind: str, label: str) -> None:
        self.kind = kind  # the catalog's key, e.g. "init"
        self.label = label  # how messages name it, e.g. "init scheme"
        self._records: dict[str, Component] = {}
        self._builders: dict[str, T] = {}

    def declare(self, name: str, summary: str, settings: tuple[Setting, ...] = (), *, source: str = "built in",
                facts: Mapping[str, Any] | None = None, **more: Any) -> Component:
        """A new record; `facts` (a mapping that may compute some on first use: a plugin dataset's
        shape) or the keyword facts."""
        if name in self._records:
            taken = self._records[name].source
            raise ValueError(f"{self.label} {name!r} is already taken ({taken})")
        record = Component(self.kind, name, summary, settings, more if facts is None else facts, source)
        self._records[name] = record
        return record

    def register(self, name: str) -> Callable[[T], T]:
        """Attach the builder of a declared component."""

        def add(builder: T) -> T:
            if name not in self._records:
                raise ValueError(f"{self.label} {name!r} has no catalog record; declare it first")
            if name in self._builders:
                raise ValueError(f"{self.label} {name!r} has a builder already")
            self._builders[name] = builder
            return builder

        return add

    def forget(self, name: str) -> None:
        """Drop a component and its builder (a plugin file that changed, loaded again)."""
        self._records.pop(name, None)
        self._builders.pop(name, None)

    def record(self, name: str) -> Component:
        try:
            return self._records[name]
        except KeyError:
            raise KeyError(f"unknown {self.label} {name!r}; allowed: {', '.join(self.names())}") from None

    def __getitem__(self, name: str) -> Entry[T]:
        record = self.record(name)
        try:
            return Entry(record, self._builders[name])
        except KeyError:
            raise KeyError(f"{self.label} {name!r} has no builder (import dlbench.components first)") from None

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[Component]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def names(self) -> list[str]:
        return list(self._records)

    def built(self) -> list[str]:
        return list(self._builders)


class Catalog:
    """Every kind, in the order `dlbench list` shows them."""

    def __init__(self, kinds: Mapping[str, str]) -> None:
        self._kinds: dict[str, Kind[Any]] = {k: Kind(k, label) for k, label in kinds.items()}

    def __getitem__(self, kind: str) -> Kind[Any]:
        return self._kinds[kind]

    def __iter__(self) -> Iterator[Kind[Any]]:
        return iter(self._kinds.values())

    def kinds(self) -> list[str]:
        return list(self._kinds)


CATALOG = Catalog({
    "dataset": "dataset", "preprocessing": "preprocessing", "model": "model", "preset": "model preset",
    "activation": "activation", "norm": "norm", "pooling": "pooling", "init": "init scheme", "loss": "loss",
    "optimizer": "optimizer", "schedule": "schedule", "augmentation": "augmentation", "task": "task",
    "plot": "plot", "function": "test function", "export": "export target",
    "executor": "executor",
})
