"""Run statuses, defined once: every writer and reader of a run's status uses these names."""

from __future__ import annotations

from typing import Literal

Status = Literal["ok", "diverged", "failed", "pruned"]
OK: Status = "ok"  # trained to the end (or stopped early by early stopping)
DIVERGED: Status = "diverged"  # a non-finite loss ended it
FAILED: Status = "failed"  # an error ended it; its folder keeps the traceback
PRUNED: Status = "pruned"  # successive halving stopped it (random.prune)
STATUSES: tuple[Status, ...] = (OK, DIVERGED, FAILED, PRUNED)
TROUBLE: tuple[Status, ...] = (DIVERGED, FAILED, PRUNED)  # counted in the report's status column, never averaged
EVALUATED: tuple[Status, ...] = (OK, PRUNED)  # runs whose last evaluation is a real measurement
