"""`python -m dlbench.execution.worker FOLDER/.ray/<stack>.task`: a Ray job's entrypoint.

It trains the stack pickled in the file (a `launchers.Task`: the runs, the experiment's
vocabulary with its plugins' sources, the checkpoint, the folder) with `run_task`, the
worker side every launcher shares: resumed from the stack's checkpoint where there is
one, each run's folder written as it finishes. Then it says how it ended beside the task
file (`ray_jobs.result_file`): the run ids it trained and what it told (a stack split, a checkpoint
set aside: also in its log), or the error that stopped it.
"""

from __future__ import annotations

import json
import pickle
import sys
import traceback
from pathlib import Path

from dlbench.execution.launchers import Task, run_task
from dlbench.execution.ray_jobs import result_file
from dlbench.results.store import atomic_write


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m dlbench.execution.worker FOLDER/.ray/STACK.task", file=sys.stderr)
        return 2
    path = Path(argv[1])
    work = pickle.loads(path.read_bytes())
    assert isinstance(work, Task), f"{path} holds no dlbench task"
    try:
        results = run_task(work, log=True)
    except Exception:
        atomic_write(result_file(path), json.dumps({"error": traceback.format_exc()}) + "\n")
        raise
    said = {"runs": [r.spec.run_id for r in results], "notes": [n for r in results for n in r.notes]}
    atomic_write(result_file(path), json.dumps(said) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
