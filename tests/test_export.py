"""`dlbench export DIR --to tensorboard|mlflow`: read back with each viewer's own reader.

A tiny real sweep (a learning rate that trains and one that diverges, times a
model that builds and one that fails) is exported; TensorBoard's EventAccumulator
and the MLflow client must give back every value of each run's metrics.csv at its
step, the final gap, the swept values and the status.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dlbench.components import models
from dlbench.catalog.metrics import METRICS
from dlbench.results import export as export_mod
from sweep_util import dlbench, run_dirs, summary, tiny_config, write_config

LRS = [0.1, 1.0e6]  # 1e6 diverges: its NaN / inf values must come back as they are
HIDDEN = [[16], [13]]  # [13] fails when the model is built: a failed run has no metrics, only its status


@pytest.fixture(scope="module")
def sweep(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    cfg = tiny_config(data_root, name="lrs", grid={"optimizer.lr": LRS, "model.hidden": HIDDEN},
                      train={"steps": 8, "batch_size": 50, "eval_every": 4, "seeds": [0], "device": "cpu"})
    build = models.build

    def build_or_fail(cfg, shape, classes):  # type: ignore[no-untyped-def]
        if cfg.hidden == [13]:
            raise RuntimeError("simulated: not enough memory for hidden=[13]")
        return build(cfg, shape, classes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "build", build_or_fail)
        outcome = dlbench("run", write_config(tmp / "lrs.yaml", cfg), "--out", tmp / "results", "--no-plots")
    assert outcome.code == 1, outcome.err  # some run failed
    root = tmp / "results" / "lrs"
    assert sorted(summary(d)["status"] for d in run_dirs(root).values()) == ["diverged", "failed", "failed", "ok"]
    return root


def scalar_columns(metrics: pd.DataFrame) -> list[str]:
    return [c for c in metrics.columns if c not in export_mod.TIME_COLUMNS]


def test_every_target_is_a_command(sweep: Path, tmp_path: Path) -> None:
    for entry in export_mod.EXPORTS:
        outcome = dlbench("export", sweep, "--to", entry.name, "--output", tmp_path / entry.name)
        assert outcome.code == 0, outcome.err
        assert "4 runs of lrs" in outcome.out


def test_tensorboard_scalars_and_hparams(sweep: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata

    out = tmp_path / "tb"
    for _ in range(2):  # exporting again replaces the event files: nothing doubles
        assert dlbench("export", sweep, "--to", "tensorboard", "-o", out).code == 0
    assert [d.name for d in out.iterdir()] == ["lrs"]  # the experiment's own folder in the logdir
    out = out / "lrs"
    names = {f"optimizer.lr={summary(d)['params']['optimizer.lr']} "
             f"model.hidden={json.dumps(summary(d)['params']['model.hidden'])} seed=0": run_id
             for run_id, d in run_dirs(sweep).items()}
    assert {d.name for d in out.iterdir() if d.is_dir()} == set(names)  # runs named by their labels
    for name, run_id in names.items():
        run_dir = run_dirs(sweep)[run_id]
        assert len(list((out / name).iterdir())) == 1
        events = EventAccumulator(str(out / name), size_guidance={"tensors": 0})
        events.Reload()
        metrics, s = pd.read_csv(run_dir / "metrics.csv"), summary(run_dir)
        assert set(events.Tags()["scalars"]) == ({*scalar_columns(metrics), "gap"} if len(metrics) else set())
        [status] = events.Tensors("status")
        assert status.tensor_proto.string_val[0].decode().startswith(s["status"])
        end = metadata.parse_session_end_info_plugin_data(
            events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_END_INFO_TAG])
        assert end.status == (api_pb2.STATUS_FAILURE if s["status"] == "failed" else api_pb2.STATUS_SUCCESS)
        for column in scalar_columns(metrics) if len(metrics) else []:  # a failed run's metrics.csv: header only
            points = events.Scalars(column)
            kept = metrics[~((metrics["step"] == 0) & metrics[column].isna())]  # no NaN at step 0 (no batch yet)
            assert [p.step for p in points] == kept["step"].tolist()
            np.testing.assert_array_equal([p.value for p in points], kept[column].to_numpy(np.float32))
            # the points keep the run's own timing: wall times apart as its seconds column
            np.testing.assert_allclose(np.diff([p.wall_time for p in points]), np.diff(kept["seconds"]), atol=1e-3)
        if s["status"] != "failed":
            [gap] = events.Scalars("gap")
            assert gap.step == s["final"]["step"] and gap.value == np.float32(s["final"]["gap"])
        start = metadata.parse_session_start_info_plugin_data(
            events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG])
        assert start.hparams["optimizer.lr"].number_value == s["params"]["optimizer.lr"]
        assert start.hparams["model.hidden"].string_value == json.dumps(s["params"]["model.hidden"])

    top = EventAccumulator(str(out))
    top.Reload()
    experiment = metadata.parse_experiment_plugin_data(
        top.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG])
    lr, hidden = experiment.hparam_infos
    assert lr.name == "optimizer.lr" and lr.type == api_pb2.DATA_TYPE_FLOAT64
    assert [v.number_value for v in lr.domain_discrete.values] == LRS
    assert hidden.name == "model.hidden" and hidden.type == api_pb2.DATA_TYPE_STRING
    assert sorted(v.string_value for v in hidden.domain_discrete.values) == sorted(map(json.dumps, HIDDEN))
    assert [m.name.tag for m in experiment.metric_infos] == METRICS.names()


def flat(config: dict, prefix: str = "") -> dict[str, object]:
    """optimizer.lr -> 0.1; an empty section (grid: {} in a run's resolved config) has no values."""
    out: dict[str, object] = {}
    for k, v in config.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_mlflow_runs_params_metrics_tags(sweep: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "mlflow"
    for _ in range(2):  # exporting again replaces the runs exported before
        assert dlbench("export", sweep, "--to", "mlflow", "-o", out).code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lrs")
    exported = {r.data.tags["run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert exported.keys() == run_dirs(sweep).keys()
    for run_id, run_dir in run_dirs(sweep).items():
        run, s = exported[run_id], summary(run_dir)
        assert run.data.tags["status"] == s["status"] and run.data.tags["sweep"] == "lrs"
        assert run.data.tags.get("error") == s["error"]
        assert run.info.status == ("FAILED" if s["status"] == "failed" else "FINISHED")  # diverged runs finished
        hidden = json.dumps(s["params"]["model.hidden"])
        assert run.info.run_name == f"optimizer.lr={s['params']['optimizer.lr']} model.hidden={hidden} seed=0"
        config = flat(yaml.safe_load((run_dir / "config.yaml").read_text()))
        assert run.data.params.keys() == config.keys()
        assert run.data.params["optimizer.lr"] == str(s["params"]["optimizer.lr"])
        assert run.data.params["model.hidden"] == json.dumps(config["model.hidden"])
        assert run.data.params["train.seeds"] == f"[{s['seed']}]"
        metrics = pd.read_csv(run_dir / "metrics.csv")
        for column in scalar_columns(metrics):
            history = sorted(client.get_metric_history(run.info.run_id, column), key=lambda m: m.step)
            kept = metrics[~((metrics["step"] == 0) & metrics[column].isna())]
            assert [m.step for m in history] == kept["step"].tolist()
            np.testing.assert_array_equal([m.value for m in history], kept[column].to_numpy())
        assert run.data.metrics.get("gap") == (s["final"]["gap"] if "final" in s else None)


@pytest.mark.parametrize("target, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_missing_extra_is_one_line(sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str,
                                   module: str) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")] or [module]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: `import` raises ImportError
    outcome = dlbench("export", sweep, "--to", target, "-o", tmp_path / "out")
    assert outcome.code == 2
    assert outcome.error_line == (f"error: --to {target}: the Python package {module!r} is not installed; "
                                  f"install it with: pip install 'dlbench[{target}]'")


def test_two_experiments_in_one_logdir_stay_apart(sweep: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "results" / "lrs2"
    shutil.copytree(sweep, other)
    for config in other.glob("runs/*/config.yaml"):
        config.write_text(config.read_text().replace("name: lrs", "name: lrs2"))
    for folder in (sweep, other):
        assert dlbench("export", folder, "--to", "tensorboard", "-o", tmp_path / "tb").code == 0
    assert sorted(d.name for d in (tmp_path / "tb").iterdir()) == ["lrs", "lrs2"]
    assert len(list((tmp_path / "tb" / "lrs").iterdir())) == 5  # 4 runs and the experiment's record


def test_refusals(sweep: Path, tmp_path: Path) -> None:
    (tmp_path / "lrs").mkdir()
    (tmp_path / "lrs" / "notes.txt").write_text("mine")
    assert "holds files other than TensorBoard event files" in \
        dlbench("export", sweep, "--to", "tensorboard", "-o", tmp_path).error_line
    assert (tmp_path / "lrs" / "notes.txt").read_text() == "mine"
    assert "not a results folder" in dlbench("export", tmp_path, "--to", "mlflow", "-o", tmp_path / "m").error_line
    assert dlbench("export", sweep, "--to", "wandb", "-o", tmp_path / "w").code == 2


def test_tensorboard_hparams_view_compares_the_sweep(sweep: Path, tmp_path: Path) -> None:
    """TensorBoard itself, on this machine's loopback: its HParams backend lists one session group per
    configuration with the final metrics (what the HParams tab shows)."""
    out = tmp_path / "tb"
    assert dlbench("export", sweep, "--to", "tensorboard", "-o", out).code == 0
    program = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen([str(program), "--logdir", str(out), "--host", "127.0.0.1", "--port", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        for line in server.stderr:  # "TensorBoard 2.21.0 at http://127.0.0.1:PORT/ (Press CTRL+C to quit)"
            if found := re.search(r"at (http://127\.0\.0\.1:\d+/)", line):
                break
            assert time.monotonic() < deadline, "TensorBoard did not start"
        assert found, "TensorBoard exited before serving"
        query = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "aggregationType": "AGGREGATION_AVG",
                 "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                 "colParams": [{"hparam": "optimizer.lr"}, {"hparam": "model.hidden"}, {"metric": {"tag": "val_acc"}}]}
        while True:  # the logdir is loaded in the background
            request = urllib.request.Request(found[1] + "data/plugin/hparams/session_groups", data=json.dumps(
                query).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                groups = json.load(response)["sessionGroups"]
            if len(groups) == 4 or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(groups) == 4  # LRS x HIDDEN, one session (seed) each
    ok = next(summary(d) for d in run_dirs(sweep).values() if summary(d)["status"] == "ok")
    [group] = [g for g in groups if g["hparams"] == {"optimizer.lr": ok["params"]["optimizer.lr"],
                                                     "model.hidden": json.dumps(ok["params"]["model.hidden"])}]
    values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
    assert values["val_acc"] == pytest.approx(ok["final"]["val_acc"], rel=1e-6)
    assert values["gap"] == pytest.approx(ok["final"]["gap"], rel=1e-6)
