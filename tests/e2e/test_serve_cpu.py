"""``infer serve --profile cpu`` for real: vLLM on the CPU with SmolLM2, LMCache in MP mode.

One server is started for the module (about 40 s) and shared by the tests, in file order; the last
test stops it the way a user does (Ctrl-C) and checks that nothing is left behind.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Served, serve_cpu
from tests.helpers import descendants, pid_alive, shm_segments_of

MODEL = "smollm2-135m-instruct"
LONG_PROMPT = " ".join(
    f"Paragraph {i}: the quick brown fox jumps over the lazy dog while the river keeps "
    "flowing past the old mill."
    for i in range(70)
)


@pytest.fixture(scope="module")
def served(cpu_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_cpu(tmp_path_factory.mktemp("serve-home")) as running:
        yield running


def chat(url: str, content: str, **extra: object) -> dict[str, object]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        **extra,
    }
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_health_is_503_while_starting_then_ready(served: Served) -> None:
    assert served.saw_503, "the proxy should answer /health with 503 while the engine starts"
    health = httpx.get(f"{served.url}/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["model"] == MODEL
    assert health["engine"] == "ready"
    log = served.stderr.read_text()
    assert "ready" in log
    run_dirs = list((served.home / "runs").iterdir())
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "vllm.log").stat().st_size > 0
    assert (run_dirs[0] / "lmcache.log").stat().st_size > 0


def test_the_engine_is_only_reachable_through_the_proxy(served: Served) -> None:
    """It listens on 127.0.0.1 with an internal key: vLLM refuses without it; the proxy adds it."""
    _, argv = vllm_process(served)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    direct = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    assert httpx.get(f"{direct}/v1/models", timeout=10).status_code == 401
    models = httpx.get(f"{served.url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_chat_completion_through_the_public_port_is_sensible(served: Served) -> None:
    result = chat(served.url, "What is the capital of France?", max_tokens=30)
    text = result["choices"][0]["message"]["content"]  # type: ignore[index]
    assert "Paris" in text


def test_streaming_through_the_public_port(served: Served) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from one to five."}],
        "max_tokens": 20,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    pieces = []
    done = False
    with httpx.stream(
        "POST", f"{served.url}/v1/chat/completions", json=body, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line.removeprefix("data: "))
            for choice in chunk.get("choices", []):
                pieces.append(choice["delta"].get("content") or "")
    assert done
    assert len(pieces) > 3
    assert "".join(pieces).strip()


def test_the_openrouter_contract_holds_on_the_real_engine(served: Served) -> None:
    import openai

    listing = httpx.get(f"{served.url}/api/v1/models", timeout=10).json()
    assert listing["object"] == "list"
    entry = listing["data"][0]
    assert entry["id"] == MODEL and entry["context_length"] == 4096
    assert isinstance(entry["pricing"]["prompt"], str)

    client = openai.OpenAI(base_url=f"{served.url}/api/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        stream=True,
        # OpenRouter-only fields; SmolLM2 runs without a reasoning parser, so vLLM ignores the
        # effort and the proxy leaves out the budget vLLM would refuse
        extra_body={
            "provider": {"order": ["infer"]},
            "transforms": [],
            "reasoning": {"effort": "low", "max_tokens": 64, "exclude": True},
        },
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    extra = usage.model_extra or {}
    assert "cost" in extra and usage.prompt_tokens_details is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()

    metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert "infer_proxy_requests_total" in metrics
    assert "vllm:prefix_cache_queries_total" in metrics  # the engine's own, appended


def test_the_same_long_prompt_twice_reports_cached_tokens(served: Served) -> None:
    first = chat(served.url, LONG_PROMPT + " Summarise.", max_tokens=5)
    second = chat(served.url, LONG_PROMPT + " Summarise.", max_tokens=5)
    usage = second["usage"]
    assert usage["prompt_tokens"] > 1000  # type: ignore[index]
    cached = usage["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
    assert cached >= 1024, f"expected a prefix-cache hit, got usage {usage} after {first['usage']}"


def vllm_process(served: Served) -> tuple[int, list[str]]:
    """The pid and argv of the ``vllm serve`` process under this ``infer serve``."""
    for pid in descendants(served.process.pid):
        try:
            parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(parts) > 2 and parts[1].endswith(b"/vllm") and parts[2] == b"serve":
            return pid, [p.decode() for p in parts]
    raise AssertionError("no vllm serve process found under infer")


def engine_counter(direct_url: str, name: str) -> float:
    """The sum of one of vLLM's Prometheus counters over its labels (``/metrics`` is open)."""
    text = httpx.get(f"{direct_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_restarted_vllm_gets_external_cache_hits_from_lmcache(served: Served) -> None:
    """SIGHUP restarts vLLM alone; LMCache keeps the KV chunks the old vLLM computed."""
    prompt = LONG_PROMPT.replace("quick brown fox", "slow green turtle") + " Summarise."
    chat(served.url, prompt, max_tokens=5)
    served.remember_pids()
    old_pid, _ = vllm_process(served)
    lmcache_pids = {
        pid
        for pid in descendants(served.process.pid)
        if b"lmcache" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1]
    }
    assert lmcache_pids

    served.process.send_signal(signal.SIGHUP)
    saw_503 = False
    deadline = time.monotonic() + 300
    while True:
        assert served.process.poll() is None, served.stderr.read_text()[-3000:]
        assert time.monotonic() < deadline, "vLLM did not come back within 300 s"
        status = httpx.get(f"{served.url}/health", timeout=5).status_code
        if status == 503:
            saw_503 = True
        elif status == 200 and saw_503:
            break
        time.sleep(0.5)
    served.remember_pids()
    new_pid, argv = vllm_process(served)
    assert new_pid != old_pid and not pid_alive(old_pid)
    assert all(pid_alive(pid) for pid in lmcache_pids), "LMCache's server must survive"

    direct = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    hits_before = engine_counter(direct, "vllm:external_prefix_cache_hits_total")
    usage = chat(served.url, prompt, max_tokens=5)["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
    hits = engine_counter(direct, "vllm:external_prefix_cache_hits_total") - hits_before
    assert cached >= 1024, f"the new vLLM should reuse LMCache's KV, got usage {usage}"
    assert hits >= 1024, f"expected external (LMCache) prefix-cache hits, got {hits}"


def test_ctrl_c_stops_everything_and_leaves_nothing(served: Served) -> None:
    served.remember_pids()
    engine_pids = served.pids - {served.process.pid}
    assert len(engine_pids) >= 3  # lmcache server, vLLM API server, its engine core
    segments = shm_segments_of(engine_pids)
    assert segments, (
        "LMCache MP mode should have a /dev/shm/lmcache_kv_<pid>_* segment while running"
    )

    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=60) == 0
    log = served.stderr.read_text()
    assert "stopping" in log
    survivors = [pid for pid in engine_pids if pid_alive(pid)]
    assert survivors == [], f"processes left behind: {survivors}"
    assert [s for s in segments if s.exists()] == []
