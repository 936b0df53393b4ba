"""Fuzzing the proxy with schemathesis over its own ``/openapi.json``, in front of the simulated
engine: every operation, valid and invalid requests, open and with an API key.

What must hold for every request: no 5xx, and a response the document describes (a documented
status, its content type, a body that fits its schema, its headers). A request the document allows
must not be refused by the proxy itself (a 400 without ``metadata.upstream_status``): the engine
may still refuse it (a prompt beyond the context, what the simulator does not do, like ``n: 2``),
and that refusal is relayed as a documented 400.

The run is bounded and repeatable: a fixed number of examples per operation and mode, derandomized
(the same cases every run), no shrinking (every failing case is reported, each once).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisException
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infer_cli.config import loader
from infer_cli.proxy.app import ProxyConfig, create_app
from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.proxy.openrouter.listing import provider_info
from infer_cli.proxy.state import UpstreamState
from infer_cli.sim import server as sim_server
from infer_cli.wire.server import AppServer, bind

KEY = "fuzz-client-key"
ENGINE_KEY = "fuzz-engine-key"
EXAMPLES = {GenerationMode.POSITIVE: 16, GenerationMode.NEGATIVE: 10}
"""Examples per operation and mode: ~25 s per proxy on two cores."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# The simulator answers at once: what is fuzzed is the proxy, not the timing model.
SIM = [
    "sim.ms_per_output_token=0",
    "sim.first_token_ms=0",
    "sim.prefill_ms_per_token=0",
    "sim.max_tokens_default=8",
]


class Served:
    """The simulated engine and two proxies in front of it (open, and with a key), served by an
    event loop of their own in a thread, as schemathesis calls them with blocking requests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = AsyncExitStack()
        self.urls: dict[str, str] = {}

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    def stop(self) -> None:
        try:
            self.run(self.stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()

    async def _start(self) -> None:
        profile = loader.load(str(loader.bundled_dir() / "sim.toml"), overrides=SIM, environ={})
        settings_ = profile.profile.sim
        engine = await self.stack.enter_async_context(
            sim_server.running(settings_, api_key=ENGINE_KEY)
        )
        state = UpstreamState(url=engine, api_key=ENGINE_KEY, model=settings_.model, status="ready")
        info = provider_info(profile.profile)
        for name, keys in (("open", ()), ("keyed", (KEY,))):
            app = create_app(
                ProxyConfig(profile="sim"),
                state,
                provider=info,
                guards=GuardConfig(api_keys=keys, engine_metrics=False),
            )
            server = AppServer(app, bind("127.0.0.1", 0))
            await server.start()
            self.stack.push_async_callback(server.stop)
            self.urls[name] = server.url


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    stack = Served()
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class Findings:
    """Every failing case of a run, and what ran."""

    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fail(self, case: Any, response: Any, problem: str) -> None:
        if len(self.failures) < 40:
            body = f" {_short(case.body)}" if isinstance(case.body, dict | list | str) else ""
            request = f"{case.method} {case.formatted_path}{body}"
            answer = f"{response.status_code} {_short(response.text)}" if response else "-"
            self.failures.append(f"{request}\n    -> {answer}\n    {_short(problem, 600)}")


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


def fuzz(url: str, headers: dict[str, str], findings: Findings) -> list[str]:
    """Run every operation of the proxy at ``url``; the labels of the operations run."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers)
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode, count in EXAMPLES.items():
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception as exc:  # an operation without anything to make invalid
                if mode is GenerationMode.NEGATIVE:
                    continue
                raise AssertionError(f"{operation.label}: no valid request: {exc}") from exc
            _examples(strategy, count, lambda case, m=mode: _check(case, m, url, headers, findings))
    return labels


def _examples(strategy: Any, count: int, test: Callable[[Any], None]) -> None:
    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # no shrinking: failures are collected, not raised
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        test(case)

    # Fewer examples than asked for (an operation with little to vary): what ran was checked.
    with contextlib.suppress(HypothesisException):
        run()


def _check(
    case: Any, mode: GenerationMode, url: str, headers: dict[str, str], findings: Findings
) -> None:
    findings.cases += 1
    try:
        response = case.call(base_url=url, headers=headers, timeout=30)
    except Exception as exc:
        findings.fail(case, None, f"no answer: {exc}")
        return
    findings.by_status[response.status_code] = findings.by_status.get(response.status_code, 0) + 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (AssertionError, FailureGroup) as exc:  # a group of failures is a BaseException
        findings.fail(case, response, str(exc))
    if mode is GenerationMode.POSITIVE and response.status_code == 400:
        error = _error(response)
        if "upstream_status" not in error.get("metadata", {}):
            findings.fail(case, response, "a request the document allows, refused by the proxy")


def _error(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _report(findings: Findings, labels: list[str], seconds: float) -> str:
    return (
        f"{len(labels)} operations, {findings.cases} requests in {seconds:.1f} s, statuses "
        f"{dict(sorted(findings.by_status.items()))}; {len(findings.failures)} failures:\n"
        + "\n".join(findings.failures)
    )


EVERY_ROUTE = {
    "GET /health",
    "GET /api/v1/models",
    "GET /v1/models",
    "GET /api/v1/generation",
    *(
        f"POST {prefix}/{path}"
        for prefix in ("/v1", "/api/v1")
        for path in ("chat/completions", "completions")
    ),
    *(
        f"POST {prefix}/{path}"
        for prefix in ("", "/v1", "/api/v1")
        for path in ("tokenize", "detokenize")
    ),
}


def test_every_operation_of_the_open_proxy_answers_as_documented(served: Served) -> None:
    document = requests.get(f"{served.urls['open']}/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    findings, started = Findings(), time.monotonic()
    labels = fuzz(served.urls["open"], {}, findings)
    report = _report(findings, labels, time.monotonic() - started)
    print(report)
    assert set(labels) >= EVERY_ROUTE, report
    assert findings.by_status.get(200, 0) > findings.cases // 4, report  # not only refusals
    assert not findings.failures, report


def test_every_operation_behind_a_key_answers_as_documented(served: Served) -> None:
    url = served.urls["keyed"]
    findings, started = Findings(), time.monotonic()
    labels = fuzz(url, {"Authorization": f"Bearer {KEY}"}, findings)
    # Without the key, or with another, each operation but /health answers the documented 401.
    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}
    )
    for result in schema.get_all_operations():
        operation = result.ok()
        for headers in ({}, {"Authorization": "Bearer not-a-key"}):
            _examples(
                operation.as_strategy(),
                1,
                lambda case, h=headers: _check(case, GenerationMode.POSITIVE, url, h, findings),
            )
    report = _report(findings, labels, time.monotonic() - started)
    print(report)
    assert findings.by_status.get(401, 0) >= 2 * (len(labels) - 1), report
    assert not findings.failures, report


@pytest.mark.parametrize(
    "asked",
    [
        {"max_tokens": 4097.0},  # a whole float is the integer it is, over the maximum too
        {"max_tokens": 5000, "max_completion_tokens": 10},  # each field is capped, not one
    ],
)
def test_max_tokens_over_the_maximum_output_is_refused_however_it_is_written(
    served: Served, asked: dict[str, Any]
) -> None:
    # Found by the fuzz's invalid requests: the document caps both fields at the profile's
    # maximum output (4096 for sim), and these reached the engine.
    body = {"messages": [{"role": "user", "content": "hi"}], **asked}
    response = requests.post(f"{served.urls['open']}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["metadata"]["error_type"] == "max_tokens_exceeded"
