"""Which runs train together: runs whose stack-role settings (catalog) agree share a stack, at most
MAX_STACK of them, a larger group split into equal stacks; for N workers, at most an equal share."""

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


def parts(specs: list[RunSpec], workers: int | None) -> list[tuple[list[RunSpec], int]]:
    """The runs in parts, each with the largest stack it may form, so that `workers` workers are all busy:
    no stack larger than an equal share of the runs (None: no share, stacks of up to MAX_STACK). Search
    runs that prune (random.prune) stay in whole stacks: successive halving compares the runs of one
    stack, so a split round would halve each part on its own."""
    if not workers:
        return [(specs, MAX_STACK)]
    share = min(MAX_STACK, max(1, math.ceil(len(specs) / workers)))
    return [([s for s in specs if s.pruning is None], share), ([s for s in specs if s.pruning is not None], MAX_STACK)]
