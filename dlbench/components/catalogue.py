"""What `dlbench list` prints, readable without importing torch.

The registries are the source: `build()` reads every registry (importing torch)
into name / help / facts records, and catalogue.json beside this file holds the
result, so `dlbench list` starts as fast as `--help`. After adding or changing a
registry entry, rewrite the file:

    python -m dlbench.components.catalogue

tests/test_layers.py fails while the file differs from the registries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATALOGUE = Path(__file__).with_name("catalogue.json")


def build() -> list[dict[str, Any]]:
    """Every registry as {kind, entries: [{name, help, facts}]}, in `dlbench list` order."""
    from dlbench.components.data import DATASETS
    from dlbench.components.functions import FUNCTIONS
    from dlbench.components.inits import INITS
    from dlbench.components.losses import LOSSES
    from dlbench.components.models import ACTIVATIONS, MODELS, NORMS, POOLS, PRESETS
    from dlbench.components.augment import AUGMENTATIONS
    from dlbench.components.optimizers import OPTIMIZERS
    from dlbench.components.schedules import SCHEDULES
    from dlbench.results.plots import PLOTS

    registries = (DATASETS, MODELS, PRESETS, ACTIVATIONS, NORMS, POOLS, INITS, OPTIMIZERS, SCHEDULES, LOSSES,
                  AUGMENTATIONS, FUNCTIONS, PLOTS)
    return [{"kind": r.kind,
             "entries": [{"name": e.name, "help": e.help,
                          "facts": {k: _shown(v) for k, v in e.facts().items() if k != "hyper"}} for e in r]}
            for r in registries]


def _shown(value: Any) -> str:
    """A fact as `dlbench list` prints it; sets sorted, so the file is the same on every write."""
    if isinstance(value, (set, frozenset)):
        return ", ".join(sorted(map(str, value)))
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "nothing"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def read() -> list[dict[str, Any]]:
    return json.loads(CATALOGUE.read_text(encoding="utf-8"))


def text(catalogue: list[dict[str, Any]]) -> str:
    return json.dumps(catalogue, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    CATALOGUE.write_text(text(build()), encoding="utf-8")
    print(f"wrote {CATALOGUE}")
