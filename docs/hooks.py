"""mkdocs hook: pages other work adds later join the navigation when their file exists, so
`mkdocs build --strict` never names a page that is not there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (section, title, file under docs/) added when the file exists
OPTIONAL = [("Guides", "GPUs", "gpu.md"), ("Guides", "Your own components", "plugins.md"),
            ("Experiments", "The textbook", "textbook.md")]


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    for section, title, file in OPTIONAL:
        if (docs / file).is_file():
            for entry in config["nav"]:
                if isinstance(entry, dict) and section in entry:
                    entry[section].append({title: file})
    return config
