"""``infer status`` and ``infer chat`` open the client (with the URL and key they were given), hand
it to their view, and close it however the command ends. The endpoint is the fake upstream in a
thread; ``Client`` is watched (its own ``__init__`` and ``aclose`` still run), not replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infer_cli.cli import app
from infer_cli.client.api import Client
from tests.fake_upstream import CONTENT, FakeUpstream
from tests.helpers import free_port

runner = CliRunner()


@dataclass
class Clients:
    opened: list[Client] = field(default_factory=list)
    closed: list[Client] = field(default_factory=list)

    def one_opened_and_closed(self) -> Client:
        (client,) = self.opened
        assert self.closed == [client]
        return client


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Clients:
    seen = Clients()
    init, aclose = Client.__init__, Client.aclose

    def watched_init(self: Client, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        seen.opened.append(self)

    async def watched_aclose(self: Client) -> None:
        seen.closed.append(self)
        await aclose(self)

    monkeypatch.setattr(Client, "__init__", watched_init)
    monkeypatch.setattr(Client, "aclose", watched_aclose)
    return seen


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_status_opens_one_client_with_the_url_and_key_and_closes_it(
    thinker: FakeUpstream, clients: Clients
) -> None:
    shown = invoke("status", "--url", thinker.url, "--api-key", thinker.api_key, "--json")
    assert shown.exit_code == 0, shown.output
    client = clients.one_opened_and_closed()
    assert client.endpoint.url == thinker.url and client.api_key == thinker.api_key
    assert '"model": "fake/model"' in shown.stdout  # listed with the key: the view used it


def test_status_closes_its_client_when_the_endpoint_is_down(clients: Clients) -> None:
    down = invoke("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.exit_code == 1
    clients.one_opened_and_closed()


def test_chat_opens_one_client_with_the_url_and_key_and_closes_it(
    thinker: FakeUpstream, clients: Clients, infer_home: Path
) -> None:
    thinker.reasoning_chunks = 0
    asked = invoke("chat", "--url", thinker.url, "--api-key", thinker.api_key, "hi")
    assert asked.exit_code == 0, asked.output
    assert asked.stdout == "".join(CONTENT[: thinker.chunks]) + "\n"
    client = clients.one_opened_and_closed()
    assert client.endpoint.url == thinker.url and client.api_key == thinker.api_key


def test_chat_closes_its_client_when_the_answer_fails(clients: Clients, infer_home: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    failed = invoke("chat", "--url", url, "hi")
    assert failed.exit_code == 1
    assert f"cannot reach {url}" in failed.stderr
    clients.one_opened_and_closed()


def test_chat_opens_no_client_when_the_conversation_cannot_be_read(
    clients: Clients, infer_home: Path
) -> None:
    missing = invoke("chat", "--url", "http://127.0.0.1:9", "--continue", "hi")
    assert missing.exit_code != 0
    (line,) = missing.stderr.strip().splitlines()
    assert "no conversation file" in line and "last.json" in line
    assert clients.opened == []
