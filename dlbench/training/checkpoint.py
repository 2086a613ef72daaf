"""Stack checkpoints: a stack's whole training state in one file, written atomically.

Where: `results/<name>/.checkpoints/<key>.pt` (hidden, beside `runs/`; never read as
results), key = a hash of the run ids the stack started with. What: the runs it
holds (their ids, seeds and resolved configs, so a resumed stack is rebuilt exactly,
runs that finished after the checkpoint included), parameters, buffers, optimizer
state, generator states, metrics so far and the step (`engine.Stack.state`). When:
every `train.checkpoint_seconds` between two steps, and on Ctrl-C. The file holds
tensors, numbers, strings, lists and dicts only and is read with
`torch.load(weights_only=True)`: it cannot carry code. A file that cannot be read,
or that is not a stack checkpoint of this format, is set aside (renamed
`<key>.pt.bad`), the caller told so in one line, and its stack starts afresh. Its configs are read
with the experiment's vocabulary (its plugins' components included), passed in by the caller;
a checkpoint of runs that used another source of a plugin is another sweep's: left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import torch

from dlbench.config.vocabulary import Vocabulary
from dlbench.plan.sweep import RunSpec, run_id
from dlbench.training.run import Tell

FORMAT = "dlbench stack checkpoint 1"
FOLDER = ".checkpoints"


def folder(results_root: Path) -> Path:
    return results_root / FOLDER


def path_for(where: Path, specs: list[RunSpec]) -> Path:
    key = hashlib.sha256(",".join(sorted(s.run_id for s in specs)).encode()).hexdigest()[:16]
    return where / f"{key}.pt"


def describe_runs(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """The runs a checkpoint holds, as plain data (with the plugin components they use and their sources)."""
    return [{"run_id": s.run_id, "seed": s.seed, "config": s.config.model_dump_json(),
             "params": json.dumps(s.params), "plugins": json.dumps(s.plugins)} for s in specs]


class OtherVocabulary(Exception):
    """A checkpoint whose runs use plugin components this experiment's vocabulary does not hold as they
    were (an edited plugin's earlier source, another experiment's plugin): not this sweep's runs."""


def runs(saved: list[dict[str, Any]], vocabulary: Vocabulary) -> list[RunSpec]:
    """The runs `describe_runs` wrote, read back with the experiment's vocabulary."""
    held = {(c.kind, c.name, c.facts["sha256"]) for c in vocabulary.components()}
    specs = []
    for r in saved:
        for used in json.loads(r.get("plugins", "{}")).values():
            if (used["kind"], used["name"], used["sha256"]) not in held:
                raise OtherVocabulary(f"{used['kind']} {used['name']!r} of source sha256 {used['sha256'][:8]}")
        config = vocabulary.parse(r["config"])
        used = vocabulary.provenance(config)
        if run_id(config, r["seed"], used) != r["run_id"]:  # another plugin source, or another way of hashing
            raise ValueError(f"run {r['run_id']} does not match its config")
        specs.append(RunSpec(r["run_id"], r["seed"], config, json.loads(r["params"]), plugins=used))
    return specs


@dataclass
class Checkpoint:
    """A stack's checkpoint file and its cadence (every `seconds`; None: only on Ctrl-C)."""

    path: Path
    seconds: float | None
    last: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.last >= self.seconds

    def save(self, state: dict[str, Any]) -> None:
        """Write atomically: a kill during the write leaves the previous checkpoint."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as f:
                torch.save({"format": FORMAT, **state}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.last = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read(path: Path, vocabulary: Vocabulary, tell: Tell) -> tuple[list[RunSpec], dict[str, Any]] | None:
    """(the runs it holds, the stack state), or None after setting a bad file aside (and telling so)."""
    try:
        with warnings.catch_warnings():  # torch's own warnings on odd files: ours below says it in one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("not a dlbench stack checkpoint")
        return runs(state["runs_held"], vocabulary), state
    except OtherVocabulary:  # another plugin source's runs: left alone, as another config's are
        return None
    except Exception as e:  # noqa: BLE001 - truncated, corrupted, foreign: the stack starts afresh
        aside = path.with_name(path.name + ".bad")
        path.replace(aside)
        tell(f"checkpoint {path} is unreadable ({_why(e)}); set aside as {aside.name}, its runs start afresh")
        return None


def _why(e: Exception) -> str:
    """Why a checkpoint could not be read, in a few words (torch's weights-only refusal is a page of advice
    about trusting the file's source, which is beside the point here: the file is set aside either way)."""
    if isinstance(e, EOFError):
        return "empty or cut short"
    if isinstance(e, pickle.UnpicklingError):
        return "not tensors and plain data: damaged, or written by something else"
    return " ".join(f"{type(e).__name__}: {e}".split())[:160]


def resumable(where: Path | None, todo: list[RunSpec], vocabulary: Vocabulary, tell: Tell
              ) -> list[tuple[Path, list[RunSpec], dict[str, Any]]]:
    """The checkpoints in `where` that hold runs to train: (path, the runs it holds, state).
    A checkpoint holding none of them (another config's) is left alone; an unreadable one set aside."""
    if where is None or not where.is_dir():
        return []
    wanted = {s.run_id for s in todo}
    out = []
    for path in sorted(where.glob("*.pt")):
        loaded = read(path, vocabulary, tell)
        if loaded is not None and wanted & {s.run_id for s in loaded[0]}:
            out.append((path, *loaded))
    return out


class Interrupt:
    """Ctrl-C, deferred to the next step boundary so the checkpoint written then is whole."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def deferred_interrupt() -> Iterator[Interrupt]:
    """Inside: the first Ctrl-C sets `requested` (the engine saves, then raises KeyboardInterrupt);
    a second one interrupts at once. Outside the main thread, nothing is deferred."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def handler(signum: int, frame: Any) -> None:
        if interrupt.requested:
            raise KeyboardInterrupt
        interrupt.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupt.requested:
        raise KeyboardInterrupt
