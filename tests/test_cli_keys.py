"""``infer keys`` and a served proxy that enforces the keys it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from infer_cli.cli import app
from tests.helpers import free_port, stop_process

runner = CliRunner()


def test_add_list_remove(infer_home: Path) -> None:
    added = runner.invoke(app, ["keys", "add", "alice"])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("sk-infer-")
    stored = (infer_home / "api_keys").read_text()
    assert key not in stored and stored.startswith("alice:")
    assert (infer_home / "api_keys").stat().st_mode & 0o077 == 0

    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert [row["name"] for row in listed["keys"]] == ["alice"]
    assert key not in json.dumps(listed)

    again = runner.invoke(app, ["keys", "add", "alice"])
    assert again.exit_code == 2 and "already exists" in again.stderr

    assert runner.invoke(app, ["keys", "remove", "alice"]).exit_code == 0
    missing = runner.invoke(app, ["keys", "remove", "alice"])
    assert missing.exit_code == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error: no key named 'alice'")


def test_the_served_proxy_enforces_the_keys_file(infer_home: Path) -> None:
    key = runner.invoke(app, ["keys", "add", "bob"]).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "infer_cli", "serve", "--profile", "sim", "--port", str(port)],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        anonymous = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == 401
        auth = {"Authorization": f"Bearer {key}"}
        allowed = httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=10)
        assert allowed.status_code == 200, allowed.text

        assert runner.invoke(app, ["keys", "remove", "bob"]).exit_code == 0
        deadline = time.monotonic() + 10
        while httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth).status_code != 401:
            assert time.monotonic() < deadline, "a removed key must stop working"
            time.sleep(0.2)
    finally:
        stderr = stop_process(process, timeout=30)
    assert key not in stderr  # never logged
