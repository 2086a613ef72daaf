"""Executors: one interface, `launch(specs, device, progress) -> iterator of RunResult`.

Results are yielded as runs finish, so the caller can store each one at once
(that is what makes an interrupted sweep resumable). A run that raises is
yielded as `failed` with its error; the sweep goes on.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

import torch

from dlbench.registry import Registry
from dlbench.sweep import RunSpec
from dlbench.train import Progress, RunResult, failed, train

StartRun = Callable[[RunSpec], Progress | None]  # called when a run starts; returns its step callback


class Executor(Protocol):
    def __call__(self, specs: list[RunSpec], device: torch.device,
                 on_start: StartRun | None = None) -> Iterator[RunResult]: ...


EXECUTORS: Registry[Executor] = Registry("executor")


@EXECUTORS.register("serial")
def serial(specs: list[RunSpec], device: torch.device, on_start: StartRun | None = None) -> Iterator[RunResult]:
    """one run after another in this process"""
    for spec in specs:
        progress = on_start(spec) if on_start else None
        try:
            yield train(spec, device, progress)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - isolation: a crashing run is recorded, not fatal
            yield failed(spec, e, device)
