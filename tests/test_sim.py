"""The simulated engine over real sockets: httpx and the openai SDK as clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from infer_cli.sim import SimSettings, running
from infer_cli.sim.tokenizer import split
from infer_cli.wire.prometheus import parse
from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "Say something."}]
LONG = [
    {"role": "system", "content": "You are a careful assistant. " * 40},
    {"role": "user", "content": "Summarise the rules above in one line."},
]

Sim = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def sim() -> Sim:
    """``async with sim(**settings) as http``: a simulated engine and a client for it."""

    @asynccontextmanager
    async def run(api_key: str | None = None, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings.setdefault("ms_per_output_token", 0)
        async with (
            running(SimSettings(**settings), api_key=api_key) as url,
            httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as http,
        ):
            yield http

    return run


def events(lines: list[str]) -> list[Any]:
    """The ``data:`` payloads of an event stream, JSON-decoded (``[DONE]`` kept as a string)."""
    found: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            found.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == "" or line.startswith(":"), line
    return found


async def stream_events(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    async with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return events([line async for line in response.aiter_lines()])


async def metric(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The one sample of /metrics named ``name`` with vLLM's labels and ``labels``."""
    found = [
        sample.value
        for sample in parse((await http.get("/metrics")).text)
        if sample.name == name
        and set(sample.labels) == {"engine", "model_name", *labels}
        and sample.matches({"engine": "0", **labels})
    ]
    assert len(found) == 1, f"{name} {labels} not once in /metrics"
    return found[0]


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    assert "param" in error
    return dict(error)


# --- listing, health ------------------------------------------------------------------------------


async def test_models_say_they_are_simulated(sim: Sim) -> None:
    async with sim(model="org/tiny-sim", context_length=4096) as http:
        assert (await http.get("/health")).status_code == 200
        body = (await http.get("/v1/models")).json()
        assert (await http.get("/version")).json()["simulated"] is True
    assert body["object"] == "list"
    (model,) = body["data"]
    assert model["id"] == model["root"] == "org/tiny-sim"
    assert model["object"] == "model"
    assert model["owned_by"] == "infer-sim"
    assert model["simulated"] is True
    assert model["max_model_len"] == 4096
    assert isinstance(model["created"], int) and model["created"] > 1_600_000_000


# --- shapes ---------------------------------------------------------------------------------------


async def test_chat_completion_has_openai_shape(sim: Sim) -> None:
    async with sim() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "sim-model", "messages": USER, "max_tokens": 7}
        )
        tokenized = (await http.post("/tokenize", json={"messages": USER})).json()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", body["id"])
    assert body["object"] == "chat.completion"
    assert abs(body["created"] - time.time()) < 60
    assert body["model"] == "sim-model"
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "length"
    text = choice["message"]["content"]
    assert len(split(text)) == 7 and text[0].isupper()
    assert body["usage"] == {
        "prompt_tokens": tokenized["count"],
        "completion_tokens": 7,
        "total_tokens": tokenized["count"] + 7,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_chat_stream_has_openai_chunks_and_final_usage(sim: Sim) -> None:
    request = {"messages": USER, "max_tokens": 6}
    async with sim() as http:
        whole = (await http.post("/v1/chat/completions", json=request)).json()
        chunks = await stream_events(
            http,
            "/v1/chat/completions",
            {**request, "stream_options": {"include_usage": True}},
        )
        plain = await stream_events(http, "/v1/chat/completions", request)
    assert chunks[-1] == "[DONE]"
    *deltas, usage_chunk, _ = chunks
    assert len({chunk["id"] for chunk in chunks[:-1]}) == 1
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", deltas[0]["id"])
    for chunk in chunks[:-1]:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "sim-model"
        assert isinstance(chunk["created"], int)
    assert deltas[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in deltas[:-1])
    assert deltas[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in chunk for chunk in deltas)
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in deltas)
    assert text == whole["choices"][0]["message"]["content"]  # the same prompt, the same answer
    assert len(deltas) == 1 + 6  # role, then one token per chunk
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    assert usage_chunk["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    # Without include_usage: no usage chunk.
    assert plain[-1] == "[DONE]"
    assert all(chunk["choices"] for chunk in plain[:-1])
    assert all("usage" not in chunk for chunk in plain[:-1])


async def test_text_completions_plain_and_streamed(sim: Sim) -> None:
    request = {"model": "sim-model", "prompt": "Once upon a time", "max_tokens": 5}
    async with sim() as http:
        body = (await http.post("/v1/completions", json=request)).json()
        chunks = await stream_events(
            http,
            "/v1/completions",
            {**request, "stream_options": {"include_usage": True, "continuous_usage_stats": True}},
        )
    assert re.fullmatch(r"cmpl-[0-9a-f]{32}", body["id"])
    assert body["object"] == "text_completion"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == len(split("Once upon a time")) == 4
    assert body["usage"]["completion_tokens"] == 5
    *deltas, final, done = chunks
    assert done == "[DONE]"
    assert all(chunk["object"] == "text_completion" for chunk in deltas)
    assert "".join(chunk["choices"][0]["text"] for chunk in deltas) == body["choices"][0]["text"]
    assert [chunk["usage"]["completion_tokens"] for chunk in deltas] == [1, 2, 3, 4, 5]
    assert final["choices"] == [] and final["usage"]["total_tokens"] == 9


async def test_stop_strings_end_the_answer_before_them(sim: Sim) -> None:
    request = {"messages": USER, "max_tokens": 40}
    async with sim() as http:
        full = (await http.post("/v1/chat/completions", json=request)).json()
        text = full["choices"][0]["message"]["content"]
        stop = split(text)[20]  # a word from the middle of the answer
        stopped = (
            await http.post("/v1/chat/completions", json={**request, "stop": ["@@", stop]})
        ).json()
        chunks = await stream_events(http, "/v1/chat/completions", {**request, "stop": stop})
    choice = stopped["choices"][0]
    assert choice["message"]["content"] == text[: text.index(stop)]
    assert choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == stop
    assert stopped["usage"]["completion_tokens"] <= 21
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert streamed == choice["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_bad_requests_get_vllm_errors(sim: Sim) -> None:
    async with sim(context_length=100) as http:
        chat = "/v1/chat/completions"
        assert_error(await http.post(chat, content=b"{not json"), 400, "BadRequestError")
        assert_error(await http.post(chat, json={"messages": "hi"}), 400, "BadRequestError")
        missing = await http.post(chat, json={"model": "gpt-x", "messages": USER})
        assert "gpt-x" in assert_error(missing, 404, "NotFoundError")["message"]
        too_many = await http.post(chat, json={"messages": USER, "max_tokens": 100})
        assert (
            "maximum context length is 100"
            in assert_error(too_many, 400, "BadRequestError")["message"]
        )
        assert_error(await http.post(chat, json={"messages": USER, "n": 3}), 400, "BadRequestError")
        assert_error(await http.get("/v1/nothing"), 404, "NotFoundError")
        assert_error(await http.get(chat), 405, "Method Not Allowed")


# --- prefix cache and timing ----------------------------------------------------------------------


async def test_cached_tokens_count_a_shared_prefix_the_second_time(sim: Sim) -> None:
    async with sim() as http:

        async def ask(messages: list[dict[str, str]]) -> dict[str, Any]:
            response = await http.post(
                "/v1/chat/completions", json={"messages": messages, "max_tokens": 20}
            )
            return dict(response.json())

        first = await ask(LONG)
        second = await ask(LONG)
        answer = first["choices"][0]["message"]["content"]
        follow_up = [*LONG, {"role": "assistant", "content": answer}, *USER]
        third = await ask(follow_up)
        hits = await metric(http, "vllm:prefix_cache_hits_total")
        queries = await metric(http, "vllm:prefix_cache_queries_total")
    prompt = first["usage"]["prompt_tokens"]
    assert prompt > 200
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached % 16 == 0 and prompt - 16 <= cached < prompt
    # The next turn hits through the first answer, which the engine cached as it generated it.
    cached_third = third["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached_third >= (prompt + 20) // 16 * 16 - 16
    assert hits == cached + cached_third
    assert queries == prompt * 2 + third["usage"]["prompt_tokens"]


async def test_timing_follows_the_settings(sim: Sim) -> None:
    async with sim(ms_per_output_token=20, prefill_ms_per_token=2.0) as http:
        started = time.monotonic()
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json={"messages": LONG, "max_tokens": 10, "stream": True},
        ) as response:
            arrivals: list[float] = []
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.monotonic() - started)
        cold_ttft, total = arrivals[0], arrivals[-1]
        started = time.monotonic()
        await http.post("/v1/chat/completions", json={"messages": LONG, "max_tokens": 1})
        warm = time.monotonic() - started
    # ~250 uncached tokens at 2 ms, then 9 gaps of 20 ms; the second time only the last block.
    assert cold_ttft >= 0.45
    assert total - cold_ttft >= 0.175
    assert total < cold_ttft + 2.0
    assert warm < cold_ttft / 2


async def test_first_token_and_stall_delay_the_first_token(sim: Sim) -> None:
    async with sim(first_token_ms=150, stall_ms=150, prefill_ms_per_token=0) as http:
        started = time.monotonic()
        response = await http.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.29


# --- faults ---------------------------------------------------------------------------------------


async def test_fail_after_tokens_breaks_the_stream_with_vllms_error_event(sim: Sim) -> None:
    async with sim(fail_after_tokens=3) as http:
        chunks = await stream_events(http, "/v1/chat/completions", {"messages": USER})
        whole = await http.post("/v1/chat/completions", json={"messages": USER})
        short = await http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 3})
        failed = await metric(http, "infer_sim_failed_total")
    *deltas, error, done = chunks
    assert done == "[DONE]"
    assert error["error"]["code"] == 500 and "after 3 tokens" in error["error"]["message"]
    assert len(deltas) == 4  # role + 3 tokens
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in deltas)
    assert_error(whole, 500, "InternalServerError")
    assert short.status_code == 200  # done before the failure point
    assert failed == 2


async def test_fail_mode_disconnect_drops_the_connection(sim: Sim) -> None:
    async with sim(fail_after_tokens=2, fail_mode="disconnect") as http:
        seen: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream(
                "POST", "/v1/chat/completions", json={"messages": USER, "stream": True}
            ) as response:
                async for line in response.aiter_lines():
                    seen.append(line)
        assert (await http.get("/health")).status_code == 200
    assert len(events(seen)) == 3 and "[DONE]" not in seen


async def test_error_rate_one_answers_500(sim: Sim) -> None:
    async with sim(error_rate=1.0) as http:
        for _ in range(3):
            response = await http.post("/v1/chat/completions", json={"messages": USER})
            assert_error(response, 500, "InternalServerError")
        streamed = await http.post(
            "/v1/completions", json={"prompt": "x", "stream": True, "max_tokens": 2}
        )
        assert_error(streamed, 500, "InternalServerError")
        assert (await http.get("/v1/models")).status_code == 200
        assert await metric(http, "infer_sim_injected_errors_total") == 4


async def test_error_rate_is_seeded(sim: Sim) -> None:
    outcomes: list[list[int]] = []
    for _ in range(2):
        async with sim(error_rate=0.5, seed=3) as http:
            statuses = []
            for _ in range(12):
                response = await http.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
                statuses.append(response.status_code)
            outcomes.append(statuses)
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 500}


# --- tokenize, metrics, concurrency ---------------------------------------------------------------


async def test_tokenize_counts_prompts_and_messages(sim: Sim) -> None:
    async with sim(context_length=2048) as http:
        text = (await http.post("/tokenize", json={"prompt": "Hello, world!"})).json()
        strs = (
            await http.post(
                "/tokenize",
                json={"model": "sim-model", "prompt": "Hello, world!", "return_token_strs": True},
            )
        ).json()
        chat = (await http.post("/tokenize", json={"messages": USER})).json()
        bare = (
            await http.post("/tokenize", json={"messages": USER, "add_generation_prompt": False})
        ).json()
        usage = (
            await http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 1})
        ).json()["usage"]
        bad = await http.post("/tokenize", json={"prompt": 5})
    assert text["count"] == 4 and len(text["tokens"]) == 4
    assert text["max_model_len"] == 2048
    assert text["token_strs"] is None
    assert strs["token_strs"] == ["Hello", ",", " world", "!"]
    assert strs["tokens"] == text["tokens"]
    assert chat["count"] == usage["prompt_tokens"]
    assert bare["count"] == chat["count"] - 3  # "<|im_start|>", "assistant", "\n"
    assert_error(bad, 400, "BadRequestError")


async def test_metrics_counters_move(sim: Sim) -> None:
    async with sim() as http:
        assert (await http.get("/metrics")).headers["content-type"].startswith("text/plain")
        before = await metric(http, "vllm:prompt_tokens_total")
        assert before == 0
        for _ in range(2):
            await http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 4})
        await http.post("/v1/completions", json={"prompt": "a b", "max_tokens": 3, "stop": "@"})
        prompt = await metric(http, "vllm:prompt_tokens_total")
        generated = await metric(http, "vllm:generation_tokens_total")
        success = await metric(http, "vllm:request_success_total", finished_reason="length")
        ttft_count = await metric(http, "vllm:time_to_first_token_seconds_count")
        running_now = await metric(http, "vllm:num_requests_running")
        kv = await metric(http, "vllm:kv_cache_usage_perc")
    assert prompt > 2
    assert generated == 4 + 4 + 3
    assert success == 3
    assert ttft_count == 3
    assert running_now == 0 and kv == 0


async def test_running_and_waiting_follow_max_num_seqs(sim: Sim) -> None:
    async with sim(max_num_seqs=2, ms_per_output_token=40) as http:

        def post(max_tokens: int) -> asyncio.Task[httpx.Response]:
            body = {"messages": USER, "max_tokens": max_tokens}
            return asyncio.create_task(http.post("/v1/chat/completions", json=body))

        def gauges(running_now: int, waiting: int) -> Callable[[], Any]:
            async def check() -> bool:
                return (
                    await metric(http, "vllm:num_requests_running") == running_now
                    and await metric(http, "vllm:num_requests_waiting") == waiting
                )

            return check

        long = [post(20), post(20)]
        await wait_until(gauges(2, 0))
        assert await metric(http, "vllm:kv_cache_usage_perc") > 0
        short = post(2)
        await wait_until(gauges(2, 1))
        responses = await asyncio.gather(*long, short)
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert await gauges(0, 0)()


async def test_many_concurrent_streams_all_complete(sim: Sim) -> None:
    async with sim(ms_per_output_token=2) as http:

        async def one(index: int) -> int:
            request = {"prompt": f"request {index}", "max_tokens": 30}
            chunks = await stream_events(http, "/v1/completions", request)
            assert chunks[-1] == "[DONE]"
            return len(split("".join(chunk["choices"][0]["text"] for chunk in chunks[:-1])))

        counts = await asyncio.gather(*(one(index) for index in range(64)))
        assert counts == [30] * 64
        assert await metric(http, "vllm:generation_tokens_total") == 64 * 30


# --- cancellation ---------------------------------------------------------------------------------


async def test_client_disconnect_cancels_the_generation(sim: Sim) -> None:
    async with sim(ms_per_output_token=50, max_num_seqs=1) as http:
        chat = {"messages": USER, "max_tokens": 1000, "stream": True}

        def settled(cancelled: int, waiting: int = 0, running_now: int = 0) -> Callable[[], Any]:
            async def check() -> bool:
                return (
                    await metric(http, "infer_sim_cancelled_total") == cancelled
                    and await metric(http, "vllm:num_requests_waiting") == waiting
                    and await metric(http, "vllm:num_requests_running") == running_now
                )

            return check

        async with http.stream("POST", "/v1/chat/completions", json=chat) as decoding:
            lines = decoding.aiter_lines()
            assert (await anext(lines)).startswith("data: ")  # generating, holding the one slot
            # A second stream waits for the slot; its client gives up while it waits.
            async with http.stream("POST", "/v1/completions", json={"prompt": "x", "stream": True}):
                await wait_until(settled(0, waiting=1, running_now=1))
            await wait_until(settled(1, waiting=0, running_now=1))
            started = time.monotonic()
        # The first client goes away in the middle of its answer (50 s long).
        await wait_until(settled(2), timeout=3)
        assert time.monotonic() - started < 2.5
        # A client of a non-streamed answer times out while the engine decodes.
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                "/v1/completions",
                json={"prompt": "x", "max_tokens": 100},
                timeout=httpx.Timeout(10, read=0.3),
            )
        await wait_until(settled(3), timeout=3)
        assert await metric(http, "vllm:request_success_total", finished_reason="abort") == 3
        # Every slot is free again: the next request runs at once.
        ok = await http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 2})
        assert ok.status_code == 200


# --- auth -----------------------------------------------------------------------------------------


async def test_api_key_protects_v1_only(sim: Sim) -> None:
    async with sim(api_key="s3cret") as http:
        denied = await http.get("/v1/models")
        assert denied.status_code == 401
        assert denied.json() == {"error": "Unauthorized"}
        wrong = await http.post(
            "/v1/chat/completions",
            json={"messages": USER},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert (await http.get("/v1/models", headers=auth)).status_code == 200
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.post("/tokenize", json={"prompt": "x"})).status_code == 200


# --- a client nobody here wrote -------------------------------------------------------------------


async def test_openai_sdk_talks_to_the_simulator() -> None:
    import openai

    async with running(SimSettings(ms_per_output_token=0), api_key="k") as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        try:
            models = await client.models.list()
            assert [model.id for model in models.data] == ["sim-model"]
            assert models.data[0].owned_by == "infer-sim"
            chat = await client.chat.completions.create(
                model="sim-model", messages=USER, max_tokens=5, temperature=0.7, seed=1
            )
            assert chat.choices[0].finish_reason == "length"
            assert chat.usage is not None and chat.usage.completion_tokens == 5
            stream = await client.chat.completions.create(
                model="sim-model",
                messages=USER,
                max_completion_tokens=5,
                seed=1,
                stream=True,
                stream_options={"include_usage": True},
            )
            parts: list[str] = []
            usage = None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                usage = chunk.usage or usage
            assert usage is not None and usage.completion_tokens == 5
            assert usage.prompt_tokens_details is not None
            assert "".join(parts) == chat.choices[0].message.content
            text = await client.completions.create(model="sim-model", prompt="Hi", max_tokens=3)
            assert text.choices[0].text
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="other", messages=USER)
            bad_key = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bad", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                await bad_key.models.list()
            await bad_key.close()
        finally:
            await client.close()


# --- the process ----------------------------------------------------------------------------------


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return _popen([sys.executable, "-m", "infer_cli.sim", *args], env=env)


def _popen(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()
        try:
            if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the simulator did not become healthy")


def _sim_argv(settings: SimSettings, port: int) -> list[str]:
    """The simulator's command line exactly as ``infer serve --profile sim`` builds it."""
    from infer_cli.config import loader
    from infer_cli.engine import launch

    profile = loader.load("sim", environ={}).profile
    profile = profile.model_copy(update={"sim": settings})
    profile.model.served_name = settings.model
    target = launch.LaunchTarget(
        vllm="-", model="-", port=port, api_key="key", python=sys.executable
    )
    return launch.sim_engine(profile, target).argv


def test_processes_serve_and_stop_cleanly_on_sigterm_and_sigint() -> None:
    settings = SimSettings(model="proc-model", ms_per_output_token=20)
    ports = [free_port(), free_port()]
    assert ports[0] != ports[1]
    term_url, int_url = (f"http://127.0.0.1:{port}" for port in ports)
    processes = [_popen(_sim_argv(settings, port), env={"VLLM_API_KEY": "key"}) for port in ports]
    auth = {"Authorization": "Bearer key"}
    try:
        for process, url in zip(processes, (term_url, int_url), strict=True):
            _wait_healthy(process, url)
        assert httpx.get(term_url + "/v1/models", trust_env=False).status_code == 401
        listed = httpx.get(term_url + "/v1/models", headers=auth, trust_env=False).json()
        assert listed["data"][0]["id"] == "proc-model"
        # An answer in flight when SIGTERM comes ends cleanly, in vLLM's error shape.
        with httpx.stream(
            "POST",
            term_url + "/v1/completions",
            json={"prompt": "x", "max_tokens": 5000, "stream": True},
            headers=auth,
            trust_env=False,
        ) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: {")
            started = time.monotonic()
            processes[0].send_signal(signal.SIGTERM)
            rest = events(list(lines))
        processes[1].send_signal(signal.SIGINT)
        outputs = [process.communicate(timeout=10) for process in processes]
        assert time.monotonic() - started < 8
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert rest[-1] == "[DONE]"
    assert rest[-2]["error"]["code"] == 503
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert stdout == b""
        assert "simulated engine serving 'proc-model'" in stderr.decode()
        assert "Traceback" not in stderr.decode()


def test_process_rejects_bad_settings_and_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        bad = _start("--settings-json", '{"modle": "x"}')
        busy = _start("--port", str(taken.getsockname()[1]))
        _, bad_stderr = bad.communicate(timeout=10)
        _, busy_stderr = busy.communicate(timeout=10)
    assert bad.returncode == 2
    assert "modle" in bad_stderr.decode()
    assert busy.returncode == 1
    assert "already in use" in busy_stderr.decode()
