"""The README and the docs cannot drift: the site builds strictly, every shell, Python and
YAML example runs, and every output block is what the command prints.

Blocks are fenced code in README.md and docs/**/*.md. A block may be preceded by a marker:
`<!-- output: NAME -->` (the block is docs/outputs/NAME.txt, which docs/outputs.py writes by
running the command), `<!-- not run: REASON -->` or `<!-- not checked: REASON -->`. A markdown
table between `<!-- report: NAME -->` and `<!-- end report -->` is docs/outputs/NAME.md
(docs/experiments.py writes those from the shipped experiments' results).
Unmarked: ```bash / ```python / ```yaml blocks run; a plain block of commands runs; a plain
block of `$ command` lines runs each command and compares what it prints with the lines
below it; any other plain block fails the test until it is marked.
"""

from __future__ import annotations

import doctest
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
import yaml
from sweep_util import REPO, dlbench, one_thread  # noqa: F401 - fixture

sys.path.insert(0, str(REPO / "docs"))
import outputs  # docs/outputs.py, the script that writes the output blocks

FENCE = re.compile(r"(?:<!-- (output|not run|not checked): ?(.*?) -->\n)?^```(\w*)\n(.*?)^```", re.S | re.M)
COMMAND = ("dlbench ", "make ", "$ ")
MAKEFILE = (REPO / "Makefile").read_text()
EXTERNAL = ("pip ", "tensorboard ", "mlflow ", "jupyter ")  # other programs: not run here


@dataclass
class Block:
    page: Path
    line: int
    marker: str | None
    reason: str
    lang: str
    body: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks() -> Iterator[Block]:
    for page in outputs.pages():
        text = page.read_text()
        for m in FENCE.finditer(text):
            marker, reason, lang, body = m.groups()
            yield Block(page, text[:m.start(3) if marker is None else m.start()].count("\n") + 1, marker,
                        reason or "", lang, body)


def kind(block: Block) -> str:
    lines = [line for line in block.body.splitlines() if line.strip()]
    if block.marker in ("not run", "not checked"):
        return "skip"
    if block.marker == "output":
        return "output"
    if block.lang in ("bash", "sh", "shell") or (not block.lang and lines and all(
            line.startswith(COMMAND) for line in lines)):
        return "commands"
    if not block.lang and lines and lines[0].startswith("$ "):
        return "session"
    if block.lang in ("python", "yaml"):
        return block.lang
    return "unmarked"


ALL = list(blocks())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's checkout after `make quickstart`: configs/, results/quickstart trained (and the
    three-seed quickstart the report guide reads), the produced outputs beside it."""
    work = tmp_path_factory.mktemp("user")
    work.joinpath("produced").mkdir()
    for name, text in outputs.produce(work).items():
        (work / "produced" / f"{name}.txt").write_text(text)
    return work


def test_every_plain_block_is_a_command_an_output_or_marked() -> None:
    unmarked = [b.name for b in ALL if kind(b) == "unmarked"]
    assert not unmarked, f"mark these blocks (<!-- output: NAME --> or <!-- not checked: why -->): {unmarked}"


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    config_page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    # a key that names a component lists the names it takes, not a bare "str"
    assert re.search(r"<code>model.activation</code></td>\s*<td>one of relu, sigmoid, tanh", config_page)
    assert re.search(r"<code>loss</code></td>\s*<td>one of cross_entropy,", config_page)
    # help text that says DIR/<name>/ shows it, not an empty HTML tag
    assert "DIR/&lt;name&gt;/" in (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()


@pytest.mark.parametrize("name", sorted(outputs.COMMANDS))
def test_output_files_are_what_the_commands_print(workdir: Path, name: str) -> None:
    assert (workdir / "produced" / f"{name}.txt").read_text() == (outputs.OUTPUTS / f"{name}.txt").read_text()


@pytest.mark.parametrize("block", [b for b in ALL if kind(b) == "output"], ids=lambda b: b.name)
def test_output_blocks_show_the_output_files(block: Block) -> None:
    assert block.body == (outputs.OUTPUTS / f"{block.reason}.txt").read_text(), \
        "rerun: python docs/outputs.py (it rewrites docs/outputs/ and the marked blocks)"


REPORTS = [(page, m[2], m[3]) for page in outputs.pages() for m in outputs.REPORT.finditer(page.read_text())]


@pytest.mark.parametrize("page,name,body", REPORTS, ids=[f"{p.name}:{n}" for p, n, _ in REPORTS])
def test_report_tables_show_the_report_files(page: Path, name: str, body: str) -> None:
    assert body == "\n" + (outputs.OUTPUTS / f"{name}.md").read_text() + "\n", \
        "rerun: python docs/experiments.py WORKDIR (it rewrites docs/outputs/experiments-* and the tables)"


def test_the_experiments_page_shows_every_experiments_table_and_figures() -> None:
    import experiments  # docs/experiments.py, the script that produces them

    page = (REPO / "docs" / "experiments.md").read_text()
    for name, (report, figures) in experiments.EXPERIMENTS.items():
        marker = f"<!-- report: experiments-{name} -->" if report is not None else \
            f"<!-- output: experiments-{name} -->"
        assert marker in page, name
        for figure in figures:
            image = experiments.image(name, figure)
            assert image.is_file() and f"(img/{image.name})" in page, image
    for name in experiments.DIAGNOSTICS:
        assert f"<!-- output: experiments-{name}-diagnostics -->" in page, name


def _command(line: str) -> str:
    line = line.removeprefix("$ ")
    return line.split("  #", 1)[0].split(" # ", 1)[0].strip()


def _run(command: str, workdir: Path, session: bool = False) -> str | None:
    """Run one documented command as a user would after `make quickstart`; its output, or None
    when it is one the suite cannot run (checked otherwise). Outside a session it must succeed;
    in a session what it prints is the check (a refusal's one line included)."""
    if command.startswith(EXTERNAL):
        return None
    if command.startswith("make "):
        target = command.split()[1]
        assert re.search(rf"(?m)^{re.escape(target)}:", MAKEFILE) or target in MAKEFILE.split("EXPERIMENTS :=")[1]\
            .split("\n\n")[0], f"{command}: no such make target"
        if target == "quickstart":
            args = ["run", "configs/quickstart.yaml"]
        elif (REPO / "configs" / f"{target}.yaml").is_file():  # an experiment: minutes at full size; it validates
            args = ["validate", f"configs/{target}.yaml"]
        else:  # setup, the suite itself, downloads, long benchmarks: the target exists
            return None
    else:
        assert command.startswith("dlbench "), command
        args = shlex.split(command)[1:]
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        res = dlbench(*args)
    finally:
        os.chdir(cwd)
    assert session or res.code == 0, f"{command}: exit {res.code}\n{res.err[-2000:]}"
    return res.output


@pytest.mark.parametrize("block", [b for b in ALL if kind(b) in ("commands", "session")], ids=lambda b: b.name)
def test_shell_examples_run(block: Block, workdir: Path) -> None:
    if kind(block) == "commands":
        for line in block.body.splitlines():
            if line.strip() and not line.startswith("#"):
                _run(_command(line), workdir)
        return
    # a session: `$ command` lines, each followed by what it prints
    for chunk in re.split(r"(?m)^(?=\$ )", block.body):
        if not chunk.strip():
            continue
        first, _, shown = chunk.partition("\n")
        printed = _run(_command(first), workdir, session=True)
        if printed is not None:
            assert [line.rstrip() for line in printed.splitlines()] == shown.rstrip("\n").splitlines(), first


@pytest.mark.parametrize("block", [b for b in ALL if kind(b) == "python"], ids=lambda b: b.name)
def test_python_examples_run(block: Block, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    if ">>>" in block.body:  # a session: what it prints is checked
        test = doctest.DocTestParser().get_doctest(block.body, {}, block.name, str(block.page), block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0, f"{block.name}: {runner.failures} example(s) printed something else"
    else:
        exec(compile(block.body, block.name, "exec"), {})


@pytest.mark.parametrize("block", [b for b in ALL if kind(b) == "yaml"], ids=lambda b: b.name)
def test_yaml_examples_are_valid_configs(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(block.body)
    res = dlbench("validate", path, "--yes")
    assert res.code == 0, f"{block.name}: {res.err}"
    # the editors' schema (configs/schema.json) accepts it too: it never underlines what validate takes
    errors = list(_editor_schema().iter_errors(yaml.safe_load(block.body)))
    assert not errors, f"{block.name}: {errors[0].json_path}: {errors[0].message}"


@functools.cache
def _editor_schema() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads((REPO / "configs" / "schema.json").read_text()))


def test_the_readme_is_a_landing_page() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) < 16_000
    config = (REPO / "configs" / "quickstart.yaml").read_text()
    assert f"```yaml\n{config}```" in text  # the config shown is the shipped one
    assert all(len(line) <= 100 for b in ALL if b.page.name == "README.md" for line in b.body.splitlines())
