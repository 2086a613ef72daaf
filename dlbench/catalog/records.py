"""The catalog's typed records: a component, the settings it reads, a config section.

Types are plain typing annotations with `annotated_types` constraints (Gt, Ge, Lt, Le,
MinLen), so this layer needs neither torch nor pydantic: the schema turns the same
annotations into pydantic models, `dlbench list` prints them, the docs list them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Literal
from collections.abc import Mapping

Role = Literal["meta", "sweep", "execution", "stack", "run"]
# meta: names the experiment or its figures; sweep: expands into runs; execution: where and how
# runs are carried out (never changes a number); stack: shared by every run of a stack;
# run: may differ between the runs of one stack. Only stack and run keys enter a run's id.
HASHED: tuple[Role, ...] = ("stack", "run")


class Facts(dict[str, Any]):
    """A component's facts, readable as `facts["shape"]` or `facts.shape`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Distinct:
    """Annotated marker: a list whose items must all differ (train.seeds). The JSON Schema writes it as
    uniqueItems; validate refuses a repeat with its own rule."""

    def __repr__(self) -> str:
        return "Distinct()"


@dataclass(frozen=True)
class Setting:
    """One key a component or section reads: its type (with constraints), default and one-line doc."""

    name: str
    type: Any  # a typing annotation: float, Annotated[float, Gt(0)], tuple[...], list[...], X | None
    default: Any
    doc: str
    role: Role | None = None  # None: the role of its section
    choices: str | None = None  # the value names a component of this kind (e.g. "activation")
    items: tuple[Setting, ...] = ()  # a list of mappings with these keys (model.conv's layers)
    required: bool = False  # no default: the section must give it
    # added after results were stored: at its default it is left out of a run's id, so the runs stored
    # before it existed (which trained at that default) still count as done
    added: bool = False

    def with_default(self, default: Any) -> Setting:
        """The same setting with another component's own default."""
        return Setting(self.name, self.type, default, self.doc, self.role, self.choices, self.items, self.required,
                       self.added)


@dataclass(frozen=True)
class Component:
    """One named component of a kind: what it is, what it reads, facts about it."""

    kind: str
    name: str
    summary: str
    settings: tuple[Setting, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    source: str = "built in"  # a plugin's file or module

    @property
    def help(self) -> str:
        return self.summary

    @property
    def info(self) -> Any:
        """The facts, readable as `info["shape"]` or `info.shape`."""
        return Facts(self.facts)

    def setting(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)

    def reads(self) -> list[str]:
        return [s.name for s in self.settings]

    def defaults(self) -> dict[str, Any]:
        return {s.name: s.default for s in self.settings if not s.required}


@dataclass(frozen=True)
class Section:
    """A config section: its own settings, and the kind of component it chooses (if any).

    A choosing section is a tagged union: `key` names the component, and the section then
    accepts its own settings plus exactly the settings of that component.
    """

    name: str
    summary: str
    role: Role
    settings: tuple[Setting, ...] = ()
    chooses: str | None = None  # a component kind
    key: str | None = None  # the key that names the component (optimizer.name, model.kind, ...)
    default: str | None = None  # the component chosen when the key is not given
    optional: bool = False  # absent unless given (random, confirm) or its task is chosen

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)


def type_text(annotation: Any) -> str:
    """An annotation as people read it: `float > 0`, `int | 'full'`, `list of int > 0`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base, *meta = args
        bounds = " ".join(_bound(m) for m in meta if _bound(m))
        return f"{type_text(base)} {bounds}".strip()
    if origin in (typing.Union, UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is tuple:
        return f"({', '.join(type_text(a) for a in args)})"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _bound(meta: Any) -> str:
    if isinstance(meta, Distinct):
        return "distinct"
    for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "min length")):
        if hasattr(meta, attr):
            return f"{sign} {getattr(meta, attr)}"
    return ""
