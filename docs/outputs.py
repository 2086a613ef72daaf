"""The output blocks the README and the docs show, produced by running dlbench: each is
`<!-- output: NAME -->` before a fenced block, and docs/outputs/NAME.txt holds what the
command printed. `python docs/outputs.py [WORKDIR]` reruns every command (in WORKDIR, where
results/quickstart is trained first) and rewrites the files; tests/test_docs.py runs them
again and checks that the files and the blocks still say exactly that.

A command runs in a pseudo-terminal of the given width, as a user's terminal would show it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = REPO / "docs" / "outputs"
# name -> (terminal width, dlbench arguments); run after `dlbench run configs/quickstart.yaml`
COMMANDS: dict[str, tuple[int, list[str]]] = {
    "quickstart-report-100": (100, ["report", "results/quickstart"]),
    "quickstart-report-80": (80, ["report", "results/quickstart"]),
    "seeds3-report-100": (100, ["report", "results/seeds3/quickstart"]),
    "seeds3-init-100": (100, ["report", "results/seeds3/quickstart", "--group-by", "init.scheme"]),
    "quickstart-status-80": (80, ["status", "results/quickstart"]),
}
# the sweeps the commands read: (dlbench run arguments, the folder it fills)
SWEEPS = [(["run", "configs/quickstart.yaml", "--no-plots"], "results/quickstart"),
          (["run", "configs/quickstart.yaml", "--set", "train.seeds=[0,1,2]", "--out", "results/seeds3",
           "--no-plots"],
           "results/seeds3/quickstart")]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_terminal(args: list[str], width: int, cwd: Path) -> str:
    """`dlbench ARGS` in a pseudo-terminal `width` columns wide: what the user sees, colours removed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TERM": "xterm"}
    env.pop("COLUMNS", None)
    process = subprocess.Popen([sys.executable, "-m", "dlbench", *args], cwd=cwd, stdin=follower, stdout=follower,
                               stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the follower closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    process.wait()
    os.close(leader)
    text = _ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def produce(workdir: Path) -> dict[str, str]:
    """Every output, from a quickstart trained in `workdir` (configs/ linked from the repo)."""
    if not (workdir / "configs").exists():
        (workdir / "configs").symlink_to(REPO / "configs")
    for args, folder in SWEEPS:
        if not (workdir / folder / "summary.csv").exists():
            subprocess.run([sys.executable, "-m", "dlbench", *args], cwd=workdir, check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return {name: in_terminal(args, width, workdir) for name, (width, args) in COMMANDS.items()}


MARKED = re.compile(r"(<!-- output: ([\w-]+) -->\n```\n)(.*?)(```)", re.S)
# a markdown table (docs/outputs/NAME.md, written by docs/experiments.py) between two markers
REPORT = re.compile(r"(<!-- report: ([\w-]+) -->\n)(.*?)(<!-- end report -->)", re.DOTALL)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def fill(page: Path) -> None:
    """Each marked block and report table of `page` set to its output file."""
    text = page.read_text()
    filled = MARKED.sub(lambda m: m[1] + (OUTPUTS / f"{m[2]}.txt").read_text() + m[4], text)
    filled = REPORT.sub(lambda m: m[1] + "\n" + (OUTPUTS / f"{m[2]}.md").read_text() + "\n" + m[4], filled)
    if filled != text:
        page.write_text(filled)
        print(f"filled {page.relative_to(REPO)}")


if __name__ == "__main__":
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO
    OUTPUTS.mkdir(exist_ok=True)
    for name, text in produce(work).items():
        (OUTPUTS / f"{name}.txt").write_text(text)
        print(f"wrote docs/outputs/{name}.txt")
    for page in pages():
        fill(page)
