"""An experiment's vocabulary, as a value: the built-ins plus the experiment's plugins.

The experiment folder keeps it (`record`, `files`: `vocabulary.json` and the plugins'
sources under `plugins/`), so that any process rebuilds it from the folder alone
(`from_folder`): a resumed run, a worker, a SLURM task, `status`.

A `Vocabulary` holds the experiment's plugin records (how each was named, its file or
module, its source text and that text's sha256) and builds from them the config model
that validates the experiment's configs (`schema.config_model`, once per set of
components). It is passed along (sweep, launcher, job, checkpoint reader), never looked
up: a worker process, a Ray or SLURM task rebuilds it from the records its job carries
(`install`), a resumed run reads its checkpoints with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from dlbench.errors import ConfigError
from dlbench.plugins import KINDS, LOADED, Plugin, from_config, install, kept_file, kept_name
from dlbench.catalog import CATALOG, SECTIONS, Component
from dlbench.config import schema
from dlbench.config.yaml_io import apply_overrides, read_config


@dataclass(frozen=True)
class Vocabulary:
    """The built-ins plus `plugins` (plain data: it pickles into a job and reads back anywhere)."""

    plugins: tuple[Plugin, ...] = ()

    def components(self) -> tuple[Component, ...]:
        """The plugin components this vocabulary adds to the built-ins: those its plugins registered, and
        those registered from Python in this process (a notebook's cell: no plugin file to name)."""
        mine = {p.path: p.sha256 for p in self.plugins}
        return tuple(c for kind in KINDS for c in CATALOG[kind] if "plugin" in c.facts and (
            mine.get(c.facts["plugin"]) == c.facts["sha256"]
            or (c.facts["plugin"] not in mine and c.facts["plugin"] not in LOADED)))

    def model(self) -> type[schema.Base]:
        """The config model of this vocabulary (built once per set of components and sources)."""
        return schema.config_model(self.components())

    def validate(self, data: Mapping[str, Any], prefix: str = "") -> Any:
        """A config mapping -> a validated config, or one line saying what is wrong (ConfigError)."""
        return schema.validate(data, prefix, self.model())

    def parse(self, text: str) -> Any:
        """A resolved config this vocabulary wrote as JSON (a checkpoint's, a job's) -> the config."""
        return self.model().model_validate_json(text)

    def provenance(self, config: Any) -> dict[str, dict[str, Any]]:
        """section -> where the plugin component a resolved config chooses there came from: its name and
        kind, its file (or module), the source's sha256 and the copy the experiment folder keeps (empty for
        built-ins). Recorded once per run spec: its id hashes the sha256, its summary.json names the rest."""
        by_name = {(c.kind, c.name): c for c in self.components()}
        out = {}
        for section in SECTIONS.values():
            value = getattr(config, section.name, None) if section.chooses in KINDS else None
            record = by_name.get((section.chooses or "", str(getattr(value, section.key or "", ""))))
            if record is None:
                continue
            path, digest = str(record.facts["plugin"]), str(record.facts["sha256"])
            plugin = next((p for p in self.plugins if p.path == path and p.sha256 == digest), None)
            out[section.name] = {"name": record.name, "kind": record.kind, "file": Path(path).name,
                                 "module": plugin.module if plugin else None, "sha256": digest,
                                 "kept": kept_name(plugin) if plugin else None}
        return out

    def sources(self, provenances: Iterable[Mapping[str, Mapping[str, Any]]]) -> list[Plugin]:
        """The plugins these runs' components came from (their files go into the experiment folder)."""
        digests = {p["sha256"] for used in provenances for p in used.values()}
        return [p for p in self.plugins if p.sha256 in digests]

    def record(self) -> dict[str, Any]:
        """What `vocabulary.json` says: each plugin as it was named, its file or module (a module's
        distribution and version), its sha256 and where the folder keeps its source (and a module's other
        files): everything but the source text, which `files` gives."""
        return {"plugins": [{**{k: v for k, v in asdict(p).items() if k not in ("source", "files")},
                             "kept": kept_name(p),
                             "files": [{"path": f, "kept": kept_file(f, text)} for f, text in p.files]}
                            for p in self.plugins]}

    def files(self) -> dict[str, str]:
        """The plugins' sources, by where the experiment folder keeps them (plugins/<hash>-<file>)."""
        return {kept_file(path, text): text for p in self.plugins for path, text in ((p.path, p.source), *p.files)}

    def install(self) -> Vocabulary:
        """Load the plugins in this process (a worker: from their source text; no shared filesystem) and
        build the config model, so that configs pickled by a process with the same vocabulary unpickle here."""
        install(self.plugins)
        self.model()
        return self


def current() -> Vocabulary:
    """Every plugin loaded in this process (Python callers that loaded plugins themselves; tests)."""
    return Vocabulary(tuple(LOADED.values()))


def load(source: str | Path | Mapping[str, Any], overrides: list[str] | None = None,
         extra: list[str] | None = None) -> tuple[Any, dict[str, Any], Vocabulary]:
    """Read, override and validate a config file (or mapping): (config, raw dict, its vocabulary). The
    plugins it names (`plugins:`, relative to its file), `extra` ones (--plugin) and the installed entry
    points load first; one line (ConfigError) for whatever is wrong."""
    data = apply_overrides(read_config(source), overrides or [])
    path = None if isinstance(source, Mapping) else Path(source)
    vocabulary = Vocabulary(tuple(from_config(data, path, extra or [])))
    return vocabulary.validate(data), data, vocabulary


RECORD = "vocabulary.json"  # in the experiment folder, beside experiment.yaml


def from_folder(folder: str | Path) -> Vocabulary:
    """The vocabulary of the experiment in `folder`, rebuilt from what it keeps (`vocabulary.json` and the
    sources under `plugins/`) and installed in this process: a worker, a SLURM task, `status` or a resumed
    run need neither the config's directory nor the plugin files where they were. A module plugin is
    imported (its distribution must be installed here); a folder written before plugins were recorded,
    or with none, gives the built-ins."""
    folder = Path(folder)
    path = folder / RECORD
    if not path.is_file():
        return Vocabulary()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        found = []
        for p in record["plugins"]:
            source = (folder / p["kept"]).read_text(encoding="utf-8")
            files = tuple((f["path"], (folder / f["kept"]).read_text(encoding="utf-8")) for f in p.get("files", ()))
            found.append(Plugin(p["name"], p["path"], source, p["sha256"], p.get("module"), p.get("distribution"),
                                p.get("version"), files))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot rebuild the experiment's plugins from it ({type(e).__name__}: {e})"
                          ) from None
    return Vocabulary(tuple(found)).install()
