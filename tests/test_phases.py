"""phase_of on log lines as vLLM 0.32 (CPU) and LMCache 0.5.6 write them."""

from __future__ import annotations

import pytest

from infer_cli.engine import phases
from infer_cli.engine.phases import phase_of

API = "(APIServer pid=2371) INFO 05-01 12:00:00 [{}] "
CORE = "(EngineCore pid=2410) INFO 05-01 12:00:09 [{}] "
LMC = (
    "\x1b[32;20m[2025-05-01 12:00:00,123] LMCache INFO:\x1b[0m {} \x1b[3m({}:lmcache.v1.mp)\x1b[0m"
)


@pytest.mark.parametrize(
    ("line", "phase"),
    [
        (
            API.format("api_utils.py:330") + "vLLM server version 0.32.0, serving model /m",
            "starting",
        ),
        (
            API.format("api_utils.py:286")
            + "non-default args: {'model_tag': '/m', 'kv_transfer_config': KVTransferConfig("
            "kv_connector='LMCacheMPConnector'), 'enforce_eager': True}",
            "starting",
        ),
        (API.format("model.py:733") + "Resolved architecture: LlamaForCausalLM", "starting"),
        (API.format("model.py:2152") + "Using max model len 4096", "starting"),
        (
            CORE.format("core.py:134")
            + "Initializing a V1 LLM engine (v0.32.0) with config: model='/m', "
            "Loading weights: KV cache size: 1, torch.compile, Registering kv caches",
            "starting",
        ),
        (CORE.format("cpu_model_runner.py:68") + "Starting to load model /m...", "loading weights"),
        (
            "Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]",
            "loading weights",
        ),
        (
            CORE.format("default_loader.py:502") + "Loading weights took 0.21 seconds",
            "loading weights",
        ),
        (
            CORE.format("gpu_model_runner.py:5150")
            + "Model loading took 0.2534 GiB memory and 0.412 seconds",
            phases.KV_CACHE,
        ),
        (
            CORE.format("cpu_worker.py:260")
            + "Auto set (1.00/23.40) GiB for KV cache on node 0, with 4.00 GiB requested memory",
            phases.KV_CACHE,
        ),
        (
            CORE.format("kv_cache_utils.py:2328") + "CPU KV cache size: 43,690 tokens, "
            "Maximum concurrency for 4,096 tokens per request: 10.67x",
            phases.KV_CACHE,
        ),
        (CORE.format("monitor.py:40") + "Starting torch.compile", "compiling"),
        (
            CORE.format("backends.py:399")
            + "[backbone] Compiling a graph for compile range (1, 2048) takes 21.40 s",
            "compiling",
        ),
        (
            CORE.format("cpu_model_runner.py:87") + "Warming up model for the compilation...",
            "compiling",
        ),
        (
            CORE.format("lmcache_mp_connector.py:867") + "Registering kv caches!",
            "connecting to LMCache",
        ),
        (
            CORE.format("core.py:403")
            + "init engine (profile, create kv cache, warmup model) took 12.31 s",
            "starting API server",
        ),
        (API.format("entry.py:136") + "Supported tasks: ['generate']", "starting API server"),
        (
            API.format("entry.py:140") + "Starting vLLM server on http://127.0.0.1:8000",
            "starting API server",
        ),
        (API.format("launcher.py:195") + "Route: /health, Methods: GET", None),
        ("(APIServer pid=2371) INFO:     Started server process [2371]", "starting API server"),
        ("(APIServer pid=2371) INFO:     Waiting for application startup.", "starting API server"),
        ("(APIServer pid=2371) INFO:     Application startup complete.", "ready"),
        ("INFO:     Application startup complete.", "ready"),
        (
            LMC.format(
                "Starting LMCache HTTP server on http://127.0.0.1:8088", "http_server.py:255"
            ),
            "starting API server",
        ),
        (
            LMC.format("LMCache ZMQ cache server is running on 127.0.0.1:5555", "server.py:495"),
            "starting API server",
        ),
        (API.format("api_server.py:1") + "Some unrelated message", None),
        ("", None),
        ('(APIServer pid=2371) INFO:     127.0.0.1:50000 - "GET /health HTTP/1.1" 200 OK', None),
    ],
)
def test_phase_of(line: str, phase: str | None) -> None:
    assert phase_of(line) == phase


def test_parse_strips_prefixes_and_colours() -> None:
    assert phases.parse(API.format("x.py:1") + "hello") == ("INFO", "hello")
    assert phases.parse("(EngineCore_DP0 pid=5) ERROR 05-01 12:00:00 [core.py:3] boom") == (
        "ERROR",
        "boom",
    )
    assert phases.parse("ERROR:    Application startup failed. Exiting.") == (
        "ERROR",
        "Application startup failed. Exiting.",
    )
    assert phases.parse(LMC.format("hi", "a.py:1")) == ("INFO", "hi")
    assert phases.parse("plain text\r") == (None, "plain text")
