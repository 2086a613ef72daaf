"""`dlbench report DIR --format html`: one self-contained page, checked in a real browser.

Headless Chromium (the Debian package; `make system-deps` installs it) opens the page
from disk: its DOM must hold the terminal report's rows cell for cell and every PNG of
the folder byte for byte, nothing may point outside the page, and the screenshot must
show the figures' own colours (the page's style sheet has none of them), so the images
were decoded and drawn, not only embedded.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg

from dlbench.results import report as report_mod
from dlbench.results.render import columns as columns_mod
from sweep_util import dlbench, tiny_config, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The parts of a page the tests look at: table cells by row, images, every URL-valued attribute."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.policy = ""
        self.texts: list[str] = []  # every text node, unescaped
        self._cell: list[str] | None = None
        self.feed(text)
        self.text = text

    def shows(self, text: str) -> bool:
        """`text` is inside one text node of the page (as a reader sees it, not as HTML source)."""
        return any(text in t for t in self.texts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.urls += [v for k, v in a.items() if k in ("src", "href", "srcset", "action", "data", "poster")]
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy":
            self.policy = a["content"]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")
        elif tag == "img":
            self.images.append(a)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


def browser(page: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on the file, offline by construction: no proxy, no network service."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make system-deps` (run by `make test`) installs it")
        pytest.skip("chromium (Debian package) is not installed; `make system-deps` installs it as root")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={out / 'chromium-profile'}", "--proxy-server=127.0.0.1:9", *args, page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def folders(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny training sweep (2 configurations x 2 seeds), an optimizer-path and an activations experiment."""
    tmp = tmp_path_factory.mktemp("html")
    configs = {
        "train": tiny_config(data_root, name="train", grid={"optimizer.name": ["sgd", "adam"]},
                             train={"steps": 8, "batch_size": 50, "eval_every": 4, "seeds": [0, 1], "device": "cpu"}),
        "function": {"name": "function", "task": "function", "train": {"seeds": [0]},
                     "function": {"name": "elliptic", "start": [-7.0, 2.0], "steps": 10},
                     "grid": {"optimizer": [{"name": "sgd", "lr": 0.95}, {"name": "adam", "lr": 0.3}]}},
        "activations": {"name": "activations", "task": "activations", "train": {"seeds": [0]},
                        "activations": {"samples": 100, "features": 20},
                        "model": {"kind": "mlp", "hidden": [20, 20]}, "grid": {"model.activation": ["tanh", "relu"]}},
    }
    for name, cfg in configs.items():
        outcome = dlbench("run", write_config(tmp / f"{name}.yaml", cfg), "--out", tmp / "results")
        assert outcome.code == 0, outcome.err
    return {name: tmp / "results" / name for name in configs}


def html_report(folder: Path, out: Path, *args: Any) -> Page:
    page = out / f"{folder.name}.html"
    outcome = dlbench("report", folder, "--format", "html", "--output", page, *args)
    assert outcome.code == 0, outcome.err
    return Page(page.read_text(encoding="utf-8"))


def assert_self_contained(page: Page) -> None:
    assert page.urls and all(u.startswith("data:") for u in page.urls), [u[:40] for u in page.urls]
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert page.policy.startswith("default-src 'none'")  # the browser itself refuses any fetch


def assert_figures_inlined(page: Page, folder: Path) -> None:
    """Every PNG of the folder, byte for byte, and nothing else."""
    pngs = {p.stem: p.read_bytes() for p in folder.glob("*.png")}
    assert pngs
    inlined = {img["alt"]: base64.b64decode(img["src"].removeprefix("data:image/png;base64,")) for img in page.images}
    assert inlined == pngs


def test_train_report_in_chromium(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = folders["train"]
    html_report(folder, tmp_path)
    page_file = tmp_path / "train.html"
    dom = Page(browser(page_file, tmp_path, "--dump-dom").stdout)  # the page as the browser parsed it

    # the terminal report's rows, cell for cell, under its header, and its caption
    rep = report_mod.report([folder])
    header, rows = columns_mod.display_rows(rep)
    assert dom.tables[0] == [header, *rows]
    assert {r[0] for r in rows} == {"sgd", "adam"}
    for line in columns_mod.caption(rep):
        assert dom.shows(line), line
    assert_figures_inlined(dom, folder)
    assert {img["alt"] for img in dom.images} >= {"curves", "gap"}
    assert_self_contained(dom)
    # the config as given, and the environment every run recorded
    assert dom.shows("optimizer.name: [sgd, adam]")
    versions = dom.tables[-1]
    assert versions[0] == ["versions", "device", "runs"] and versions[1][2] == "4"
    assert "torch " in versions[1][0] and "cpu" in versions[1][1]

    shot = tmp_path / "train.png"
    browser(page_file, tmp_path, f"--screenshot={shot}", "--window-size=1280,2200")
    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.std() > 10  # not a blank page
    # matplotlib's tab:blue and tab:orange (both figures draw them; the page's style has no such colour)
    for rgb in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels - rgb).max(axis=-1) <= 2).sum() > 500, rgb


@pytest.mark.parametrize("task", ["function", "activations"])
def test_task_tables_and_figures(folders: dict[str, Path], tmp_path: Path, task: str) -> None:
    """Folders that train nothing: their own table (as `dlbench report` prints it) and figures."""
    folder = folders[task]
    html_report(folder, tmp_path)
    dom = Page(browser(tmp_path / f"{task}.html", tmp_path, "--dump-dom").stdout)
    terminal = dlbench("report", folder).out
    table = dom.tables[0]
    assert len(table) == 3  # header and one row per configuration
    for row in table:
        for cell in row:
            assert cell.split("\n")[0] in terminal
    assert_figures_inlined(dom, folder)
    assert_self_contained(dom)
    assert dom.shows("no environment recorded")


def test_two_folders_compared(folders: dict[str, Path], tmp_path: Path) -> None:
    """`report A B --format html`: the comparison table, and each folder's figures under its name."""
    other = tmp_path / "again"
    shutil.copytree(folders["train"], other)
    outcome = dlbench("report", folders["train"], other, "-o", tmp_path / "both.html")  # format from the suffix
    assert outcome.code == 0, outcome.err
    page = Page((tmp_path / "both.html").read_text())
    header, rows = columns_mod.display_rows(report_mod.report([folders["train"], other]))
    assert page.tables[0] == [header, *rows] and header[0] == report_mod.EXPERIMENT
    assert "<h2>Figures: again</h2>" in page.text and "<h2>Figures: train</h2>" in page.text
    assert len(page.images) == 2 * len(list(other.glob("*.png")))
