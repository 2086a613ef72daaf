"""docs/quickstart.ipynb runs top to bottom on a real Jupyter kernel (this venv's Python) and
shows what it promises: the report table, a progress bar, the curves, the comparison."""

from __future__ import annotations

import base64
import shutil
import sys
from typing import Any

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from sweep_util import ONE_THREAD, REPO

NOTEBOOK = REPO / "docs" / "quickstart.ipynb"


def outputs(cell: Any, kind: str) -> list[Any]:
    return [o for o in cell.outputs if kind in o.get("data", {})]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The notebook's code cells after running it where Jupyter runs it, in its own folder (a
    fresh copy of docs/), on a kernel that runs this interpreter with this checkout first on the
    path (never another Python's kernel)."""
    work = tmp_path_factory.mktemp("notebook")
    docs = work / "docs"
    docs.mkdir()
    shutil.copy(NOTEBOOK, docs / NOTEBOOK.name)
    kernels = work / "jupyter"
    write_kernel_spec(kernels / "kernels" / "dlbench-test", overrides={
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "env": {"PYTHONPATH": str(REPO), **ONE_THREAD}})
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(kernels))  # searched first: the kernel named below is this one
        env.setenv("JUPYTER_RUNTIME_DIR", str(work / "runtime"))
        NotebookClient(notebook, kernel_name="dlbench-test", timeout=300,
                       resources={"metadata": {"path": str(docs)}}).execute()
    # opened from docs/, it works from the repository root: results/ there, nothing written into docs/
    assert (work / "results" / "nb_optimizers" / "runs.csv").is_file()
    assert sorted(p.name for p in docs.iterdir()) == [NOTEBOOK.name]
    return [c for c in notebook.cells if c.cell_type == "code"]


def test_the_notebook_runs_without_errors(executed: list[Any]) -> None:
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert errors == [], errors


def test_the_notebook_shows_the_table_progress_curves_and_comparison(executed: list[Any]) -> None:
    sources = [c.source for c in executed]
    run_cell = executed[next(i for i, s in enumerate(sources) if s.startswith("config = "))]
    (table,) = outputs(run_cell, "text/html")
    assert "<table>" in table.data["text/html"] and "vs best" in table.data["text/html"]
    assert outputs(run_cell, "application/vnd.jupyter.widget-view+json")  # the notebook progress bar
    plot_cell = executed[next(i for i, s in enumerate(sources) if ".plot(" in s)]
    (image,) = outputs(plot_cell, "image/png")
    assert base64.b64decode(image.data["image/png"]).startswith(b"\x89PNG")
    compare_cell = executed[next(i for i, s in enumerate(sources) if s.startswith("wide = "))]
    (comparison,) = outputs(compare_cell, "text/html")
    assert "nb_optimizers vs nb_wide" in comparison.data["text/html"]
