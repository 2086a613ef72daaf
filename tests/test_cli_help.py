"""The command line as a user reads it: --version, help in the user's words, every kind listed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sweep_util import dlbench, one_thread, tiny_config, write_config  # noqa: F401 - fixture

import dlbench as package

COMMANDS = ["run", "plot", "report", "export", "validate", "list"]


def test_version() -> None:
    res = dlbench("--version")
    assert res.code == 0 and res.out.strip() == f"dlbench {package.__version__}"


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_speaks_the_users_words(command: list[str]) -> None:
    text = dlbench(*command, "--help").out
    assert "Usage:" in text
    assert "<bool>" not in text and "<path>" not in text and "list[" not in text and "range>" not in text
    assert not re.search(r"\{\w+\}", text)  # arguments as CONFIG, not {config}


@pytest.mark.parametrize("user", [{}, {"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "active"}])
def test_openmp_threads_spin_briefly_unless_the_user_set_how(monkeypatch: pytest.MonkeyPatch,
                                                             user: dict[str, str]) -> None:
    for key in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in user.items():
        monkeypatch.setenv(key, value)
    assert dlbench("--version").code == 0
    expected = user.get("GOMP_SPINCOUNT", None if "OMP_WAIT_POLICY" in user else "1000")
    assert os.environ.get("GOMP_SPINCOUNT") == expected


def test_run_usage_names_its_argument() -> None:
    assert "run [OPTIONS] CONFIG" in dlbench("run", "--help").out
    assert "report [OPTIONS] RESULTS_DIR..." in dlbench("report", "--help").out
    assert "plot [OPTIONS] RESULTS_DIR [NAME...]" in dlbench("plot", "--help").out


def test_list_help_names_every_kind_it_lists() -> None:
    help_text = " ".join(dlbench("list", "--help").out.split())
    titles = [line.strip() for line in dlbench("list").out.splitlines() if line and not line.startswith(" ")]
    assert titles
    for title in titles:  # 'init schemes' in the listing -> named in the help
        assert title.split()[-1].rstrip("s")[:6] in help_text, title


def test_report_help_says_the_format_follows_the_output_suffix() -> None:
    # the panel's borders out: the help column wraps differently as options come and go
    text = " ".join(dlbench("report", "--help").out.replace("│", " ").split())
    assert "--output suffix" in text and ".md -> markdown" in text


def test_validate_counts_the_runs_a_search_may_add(tmp_path: Path, data_root: Path) -> None:
    cfg = tiny_config(data_root,
                      random={"trials": 4, "rounds": 2, "space": {"optimizer.lr": {"log_uniform": [1e-3, 1]}}},
                      confirm={"top": 1, "seeds": [10, 11]})
    res = dlbench("validate", write_config(tmp_path / "c.yaml", cfg))
    assert res.code == 0, res.err
    assert "4 runs now, up to 6 more in later rounds and the confirm stage" in res.out  # round 2: 4, confirm: 2


def test_list_says_where_a_dataset_comes_from_without_an_unknown_hash() -> None:
    text = dlbench("list", "dataset").out
    assert "source: generated locally by the mnist1d package" in " ".join(text.split())
    assert "sha256 ?" not in text
