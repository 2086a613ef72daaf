"""The catalog: one typed record per component of every kind, the config's sections and the
role of every key, run statuses. The bottom layer: it imports no torch, pandas or pydantic."""

from dlbench.catalog import builtin
from dlbench.catalog.builtin import SECTIONS, TOP
from dlbench.catalog.records import HASHED, Component, Distinct, Role, Section, Setting, type_text
from dlbench.catalog.registry import CATALOG, Catalog, Entry, Facts, Kind

__all__ = ["CATALOG", "HASHED", "SECTIONS", "TOP", "Catalog", "Component", "Distinct", "Entry", "Facts", "Kind", "Role",
           "Section", "Setting", "builtin", "type_text", "roles", "settings_by_key"]


def settings_by_key() -> dict[str, Setting]:
    """Every config key (dotted; every component's settings included) -> its setting (the first declared)."""
    out: dict[str, Setting] = {s.name: s for s in TOP.settings}
    for section in SECTIONS.values():
        settings = list(section.settings)
        if section.chooses:
            settings += [s for c in CATALOG[section.chooses] for s in c.settings]
        for s in settings:
            out.setdefault(f"{section.name}.{s.name}", s)
    return out


def roles() -> dict[str, Role]:
    """Every config key (dotted; a section's component settings included) -> its role."""
    out: dict[str, Role] = {s.name: s.role or TOP.role for s in TOP.settings}
    for section in SECTIONS.values():
        out[section.name] = section.role
        settings = list(section.settings)
        if section.chooses:
            settings += [s for c in CATALOG[section.chooses] for s in c.settings]
        for s in settings:
            out[f"{section.name}.{s.name}"] = s.role or section.role
    return out
