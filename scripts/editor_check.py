"""What an editor shows for each config of the bad-config corpus: every entry of tests/bad_configs.yaml
opened in the YAML language server (npm yaml-language-server, the server VS Code's YAML extension runs)
with configs/schema.json as its modeline's schema, and the first diagnostic printed.

    npm install --prefix /tmp/yls yaml-language-server
    python scripts/editor_check.py /tmp/yls/node_modules/.bin/yaml-language-server

Not part of the test suite (it needs Node.js); docs/guide/editor.md reports what it printed.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def _messages(stream: IO[bytes], out: queue.Queue[dict[str, Any]]) -> None:
    while True:
        headers: dict[str, str] = {}
        while (line := stream.readline().decode()).strip():
            key, _, value = line.partition(":")
            headers[key.lower()] = value.strip()
        if not headers:
            return
        out.put(json.loads(stream.read(int(headers["content-length"]))))


def diagnostics(server: str, files: list[Path], timeout_s: float = 120.0) -> dict[Path, list[dict[str, Any]]]:
    """Open each file in the language server; its diagnostics, as the server publishes them."""
    proc = subprocess.Popen([server, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    threading.Thread(target=_messages, args=(proc.stdout, inbox), daemon=True).start()

    def send(message: dict[str, Any]) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        stdin.write(f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        stdin.flush()

    root = files[0].parent.as_uri()
    send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": root, "capabilities": {}}})
    while inbox.get(timeout=timeout_s).get("id") != 1:
        pass
    send({"method": "initialized", "params": {}})
    settings = {"validate": True, "schemaStore": {"enable": False}}
    send({"method": "workspace/didChangeConfiguration", "params": {"settings": {"yaml": settings}}})
    for path in files:
        send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": path.as_uri(), "languageId": "yaml", "version": 1, "text": path.read_text()}}})
    found: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(files) and time.monotonic() < deadline:
        try:
            message = inbox.get(timeout=1.0)
        except queue.Empty:
            continue
        if message.get("method") == "textDocument/publishDiagnostics":
            found[message["params"]["uri"]] = message["params"]["diagnostics"]
        elif "id" in message and "method" in message:  # the server asks for its settings
            send({"id": message["id"], "result": [settings] * len(message["params"].get("items", [None]))})
    proc.kill()
    return {path: found.get(path.as_uri(), []) for path in files}


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else shutil.which("yaml-language-server") or "yaml-language-server"
    corpus: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "tests" / "bad_configs.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(REPO / "configs" / "schema.json", folder / "schema.json")
        files = {}
        for i, (name, entry) in enumerate(corpus.items()):
            files[name] = folder / f"{i:02d}.yaml"
            files[name].write_text("# yaml-language-server: $schema=schema.json\n" +
                                   yaml.safe_dump({"name": "bad", **entry["config"]}, sort_keys=False))
        found = diagnostics(server, list(files.values()))
        agree = 0
        for name, path in files.items():
            shown = found[path]
            expected = "schema" in corpus[name]
            agree += bool(shown) == expected
            first = shown[0] if shown else None
            where = f"line {first['range']['start']['line']}: {first['message'][:90]}" if first else "-"
            print(f"{'ok ' if bool(shown) == expected else 'BAD'} {name[:50]:50} {where}")
    refused = sum("schema" in e for e in corpus.values())
    print(f"{agree} of {len(corpus)} as the corpus says ({refused} underlined where the schema refuses, "
          f"{len(corpus) - refused} left to validate)")


if __name__ == "__main__":
    main()
