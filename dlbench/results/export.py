"""Export a results folder to the viewers researchers already use: TensorBoard and MLflow.

Both read the folder only (load_mod.load_runs: one row per finished run with its
flattened config, swept values and status; each run's metrics.csv) and write the
same things: every column of metrics.csv by step (`step` is the step, `seconds`
the time of the point, every other column a scalar), the final train-test `gap`
from summary.json at the last step, the swept values as hyperparameters and the
run's status. The viewers' packages are optional extras, imported only here.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pandas as pd

from dlbench.catalog import CATALOG, Kind
from dlbench.catalog.metrics import METRICS
from dlbench.catalog.status import FAILED
from dlbench.errors import ConfigError
from dlbench.results import load as load_mod

TIME_COLUMNS = ("step", "seconds")  # the axes of every other column, not scalars of their own
_EVENT_FILE = "events.out.tfevents."


@dataclass
class Run:
    """One finished run as the exporters see it."""

    run_id: str
    sweep: str
    seed: int
    status: str
    error: str | None
    swept: dict[str, Any]  # swept key -> value (keys a case leaves out are absent)
    config: dict[str, Any]  # the resolved config, flattened (optimizer.lr -> 0.1)
    metrics: pd.DataFrame  # metrics.csv (no rows for a failed run)
    gap: float | None  # final train - test accuracy (summary.json), None when the run has none
    end: float  # when the run was stored (seconds since the epoch)
    start: float  # `end` less the run's wall time (a failed run has none: its start is its end)

    @property
    def name(self) -> str:
        """The run as people name it: its swept values and seed (MLflow's run name, TensorBoard's run)."""
        return " ".join([*(f"{k}={_text(v)}" for k, v in self.swept.items()), f"seed={self.seed}"])

    def times(self) -> Iterator[tuple[int, float, dict[str, float]]]:
        """(step, wall time, scalars) per evaluation; the last evaluation ends at `end`. A value
        the evaluation has not got is left out (train_batch_loss at step 0: no batch yet), while
        a diverged run's inf and NaN after step 0 are kept: they are what happened."""
        last = self.metrics["seconds"].iloc[-1] if len(self.metrics) else 0.0
        for row in self.metrics.to_dict("records"):
            scalars = {k: float(v) for k, v in row.items() if k not in TIME_COLUMNS
                       and not (row["step"] == 0 and math.isnan(float(v)))}
            yield int(row["step"]), self.end - (last - row["seconds"]), scalars


def _value(value: Any) -> Any:
    """A DataFrame cell as a plain Python value; NaN (a key this run does not have) as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def runs(root: Path) -> list[Run]:
    """Every finished run of a results folder, in run-id order."""
    table, keys = load_mod.load_runs(root)
    if table.empty:
        raise ConfigError(f"{root}: no finished training runs to export (a task: function or activations folder "
                          "has none)")
    out = []
    for row in table.to_dict("records"):
        folder = root / "runs" / row["run_id"]
        metrics_file = folder / "metrics.csv"
        metrics = pd.read_csv(metrics_file) if metrics_file.is_file() else pd.DataFrame(columns=list(TIME_COLUMNS))
        end = (folder / "summary.json").stat().st_mtime  # the run was stored when it finished
        config = {k.removeprefix("config."): _value(v) for k, v in row.items() if k.startswith("config.")}
        # the swept values as the run recorded them (a column with gaps would make round 2 a float)
        params = json.loads((folder / "summary.json").read_text()).get("params") or {}
        swept = {k: params[k] for k in keys if params.get(k) is not None}
        out.append(Run(run_id=row["run_id"], sweep=str(config.get("name") or root.name), seed=int(row["seed"]),
                       status=row["status"], error=_value(row.get("error")), swept=swept, config=config,
                       metrics=metrics, gap=_value(row.get("final.gap")), end=end,
                       start=end - (_value(row.get("wall_time")) or 0.0)))
    return out


ExportFn = Callable[[Path, Path], str]  # (results folder, output) -> what was written, in words
EXPORTS: Kind[ExportFn] = CATALOG["export"]


# ---------------------------------------------------------------- TensorBoard


def _clear_events(folder: Path) -> None:
    """Remove an earlier export of this experiment (its event files, in run folders); refuse a
    folder holding anything else."""
    if not folder.exists():
        return
    if folder.is_dir() and all(p.name.startswith(_EVENT_FILE) and len(p.relative_to(folder).parts) <= 2
                               for p in folder.rglob("*") if not p.is_dir()):
        shutil.rmtree(folder)
        return
    raise ConfigError(f"--output: {folder} holds files other than TensorBoard event files; "
                      "choose another --output folder")


def _folder_names(exported: list[Run]) -> list[str]:
    """Each run's TensorBoard folder: its name (a '/' would nest it), the run id when two share one."""
    names = [run.name.replace("/", "∕") for run in exported]
    return [f"{n} {run.run_id}" if names.count(n) > 1 else n for n, run in zip(names, exported)]


def _hparam(value: Any) -> bool | float | str:
    """TensorBoard's hparams take booleans, numbers and strings."""
    return value if isinstance(value, (bool, str)) else float(value) if isinstance(value, (int, float)) else str(value)


@EXPORTS.register("tensorboard")
def tensorboard(root: Path, out: Path) -> str:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.compat.proto import tensor_pb2, types_pb2
    from tensorboard.plugins.text import metadata as text_metadata
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    exported = runs(root)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {out} is a file; TensorBoard's logdir is a folder")
    top = out / exported[0].sweep  # experiments exported into one logdir stay apart, by name
    names = _folder_names(exported)
    domains: dict[str, set[Any]] = {}
    for run in exported:
        for k, v in run.swept.items():
            domains.setdefault(k, set()).add(_hparam(v))
    _clear_events(top)
    for run, name in zip(exported, names):
        writer = EventFileWriter(str(top / name))
        hparams = {k: _hparam(v) for k, v in run.swept.items()}  # no trial id: seeds of one configuration group
        start = hp.hparams_pb(hparams, start_time_secs=run.start)
        writer.add_event(event_pb2.Event(wall_time=run.start, summary=start))
        status = run.status + (f": {run.error}" if run.error else "")
        text = summary_pb2.Summary(value=[summary_pb2.Summary.Value(  # the Text tab (text_pb needs TensorFlow)
            tag="status", metadata=text_metadata.create_summary_metadata(display_name=None, description=None),
            tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[status.encode()]))])
        writer.add_event(event_pb2.Event(wall_time=run.end, step=0, summary=text))
        for step, wall_time, scalars in run.times():
            values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
            writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values)))
        if run.gap is not None:
            gap = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="gap", simple_value=run.gap)])
            writer.add_event(event_pb2.Event(wall_time=run.end, step=int(run.metrics["step"].iloc[-1]), summary=gap))
        end = hp._summary_pb(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(  # (v1's needs TF)
            session_end_info=plugin_data_pb2.SessionEndInfo(
                status=api_pb2.STATUS_FAILURE if run.status == FAILED else api_pb2.STATUS_SUCCESS,
                end_time_secs=run.end)))
        writer.add_event(event_pb2.Event(wall_time=run.end, summary=end))
        writer.close()
    # one experiment record at the top: the HParams view's columns, and its filters over the swept values
    experiment = hp.hparams_config_pb(
        hparams=[hp.HParam(k, hp.Discrete(sorted(v)) if len({type(x) for x in v}) == 1 else None)
                 for k, v in domains.items()],
        metrics=[hp.Metric(m.name, display_name=m.label.removesuffix(" %")) for m in METRICS],
        time_created_secs=min(run.start for run in exported))
    writer = EventFileWriter(str(top))
    writer.add_event(event_pb2.Event(wall_time=min(run.start for run in exported), summary=experiment))
    writer.close()
    return f"{len(exported)} runs of {exported[0].sweep} -> {top} (view: tensorboard --logdir {out})"


# ---------------------------------------------------------------- MLflow


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _text(value: Any) -> str:
    """A config value as a param: YAML's spelling of null and booleans, numbers and strings as they are."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


@EXPORTS.register("mlflow")
def mlflow(root: Path, out: Path) -> str:
    import alembic  # noqa: F401  MLflow's SQLite store needs both, and mlflow-skinny does not bring them
    import sqlalchemy  # noqa: F401
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    exported = runs(root)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {out} is a file; MLflow's store is a folder (OUT/mlflow.db)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("mlflow", "alembic"):  # creating the store's tables logs each migration step
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = f"sqlite:///{(out / 'mlflow.db').as_posix()}"  # relative paths are relative to the working directory
    client = MlflowClient(tracking_uri=uri)
    sweep = exported[0].sweep
    found = client.get_experiment_by_name(sweep)
    experiment_id = found.experiment_id if found else client.create_experiment(
        sweep, artifact_location=(out / "artifacts").resolve().as_uri())
    for run in exported:
        # exporting again replaces the runs exported before (a rerun may have changed them)
        for old in client.search_runs([experiment_id], filter_string=f"tags.run_id = '{run.run_id}'"):
            client.delete_run(old.info.run_id)
        # a staged search's stage and round are swept values, not config keys: params and tags too
        staged = {k: v for k, v in run.swept.items() if k in ("stage", "round", "case") and k not in run.config}
        tags = {"run_id": run.run_id, "sweep": sweep, "status": run.status, **{k: _text(v) for k, v in staged.items()}}
        if run.error:
            tags["error"] = run.error
        created = client.create_run(experiment_id, start_time=int(1000 * run.start), tags=tags, run_name=run.name)
        run_id = created.info.run_id
        params = [Param(k, _text(v)) for k, v in {**run.config, **staged}.items()]
        for batch in _batches(params, MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=batch)
        metrics = [Metric(k, v, int(1000 * t), step) for step, t, scalars in run.times() for k, v in scalars.items()]
        if run.gap is not None:
            metrics.append(Metric("gap", run.gap, int(1000 * run.end), int(run.metrics["step"].iloc[-1])))
        for batch in _batches(metrics, MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=batch)
        client.set_terminated(run_id, status="FAILED" if run.status == FAILED else "FINISHED",
                              end_time=int(1000 * run.end))
    return (f"{len(exported)} runs of {sweep} -> MLflow experiment {sweep!r} in {out / 'mlflow.db'} "
            f"(view: mlflow ui --backend-store-uri {uri})")


def export(root: Path, target: str, out: Path) -> str:
    """Write the runs of results folder `root` to `out` in the viewer `target`'s format."""
    if not (root / "runs").is_dir():
        raise ConfigError(f"{root}: not a results folder of a training sweep (expected {root / 'runs'}/)")
    try:
        entry = EXPORTS[target]
    except KeyError as e:
        raise ConfigError(f"--to: {e.args[0]}") from None
    try:
        return entry.builder(root, out)  # each target imports its viewer's packages when called
    except ImportError as e:
        package = (e.name or target).split(".")[0]
        raise ConfigError(f"--to {target}: the Python package {package!r} is not installed; "
                          f"install it with: pip install 'dlbench[{entry.info['extra']}]'") from None
