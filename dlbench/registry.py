"""A tiny name -> builder registry with info records (the timm idea).

Every pluggable choice (dataset, model, activation, norm, init scheme, optimizer,
loss) lives in one `Registry`; `dlbench list` prints them and the tests iterate
them, so a new entry is documented and tested the moment it is registered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    builder: T
    help: str
    info: Any = field(default_factory=dict)  # a kind's typed record (e.g. DatasetInfo), or a dict of facts

    def facts(self) -> dict[str, Any]:
        """The info record as name -> value, unset fields left out (for `dlbench list`)."""
        info = dataclasses.asdict(self.info) if dataclasses.is_dataclass(self.info) else dict(self.info)
        return {k: v for k, v in info.items() if v not in (None, {}, ())}


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "", info: Any = None, **facts: Any) -> Callable[[T], T]:
        """Register a builder with its info record (`info=`), or with loose facts as keywords."""

        def add(builder: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            text = help or next(iter((builder.__doc__ or "").strip().splitlines()), "")
            self._entries[name] = Entry(name, builder, text, info if info is not None else dict(facts))
            return builder

        return add

    def __getitem__(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)
