"""Which runs train together: runs whose stack-role settings (catalog) agree share a stack, at most
MAX_STACK of them, a larger group split into equal stacks."""

from __future__ import annotations

import json
import math

from dlbench.plan.sweep import RunSpec, identity

MAX_STACK = 256  # runs per stack; larger groups are split into equal stacks


def stack_key(spec: RunSpec) -> str:
    """Runs with equal keys can train in one stack: their stack-role settings (catalog) agree."""
    shared = identity(spec.config, spec.seed, roles=("stack",), plugins=spec.plugins)
    del shared["seed"]
    return json.dumps(shared, sort_keys=True)


def stacks(specs: list[RunSpec], max_stack: int = MAX_STACK) -> list[list[RunSpec]]:
    """Split specs into stacks of compatible runs (first-appearance order), each at most max_stack long,
    of equal sizes where a group is split."""
    by_key: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_key.setdefault(stack_key(spec), []).append(spec)
    out = []
    for members in by_key.values():
        n = math.ceil(len(members) / max_stack)
        size = math.ceil(len(members) / n)
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out
