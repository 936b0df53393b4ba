"""What an engine process is doing while it starts, read from its log lines.

vLLM (0.32) and LMCache (0.5) do not report their start-up progress anywhere but in their logs, so
the supervisor maps known log messages to a short human phase. The messages were taken from vLLM's
and LMCache's sources; a line that matches nothing returns ``None`` and the previous phase stays.

Also home to the small log-line helpers the supervisor shares: stripping colours and logger
prefixes.
"""

from __future__ import annotations

import re

STARTING = "starting"
LOADING_WEIGHTS = "loading weights"
KV_CACHE = "profiling memory / allocating KV cache"
COMPILING = "compiling"
CONNECTING_LMCACHE = "connecting to LMCache"
API_SERVER = "starting API server"
READY = "ready"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# vLLM: "(EngineCore_DP0 pid=12) INFO 05-01 12:00:00 [core.py:134] message"
_VLLM_PREFIX = re.compile(
    r"^\s*(?:\([\w.\-]+ pid=\d+\)\s*)?"
    r"(?:(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+"
    r"\[[^\]]*\]\s*)?"
)
# LMCache: "[2025-05-01 12:00:00,123] LMCache INFO: message (server.py:495:lmcache.v1...)"
_LMCACHE_PREFIX = re.compile(r"^\s*\[[\d\- :,.]+\]\s+LMCache\s+([A-Z]+):\s*")
_LMCACHE_SUFFIX = re.compile(r"\s+\([\w.\-]+\.py:\d+:[\w.\-]+\)\s*$")
# uvicorn: "INFO:     Application startup complete."
_UVICORN_PREFIX = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+")

# (phase, substrings); the first group with a matching substring wins, so later phases come first
# where one line could match several.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (READY, ("Application startup complete",)),
    (
        API_SERVER,
        (
            "Starting vLLM server on",
            "Starting vLLM API server",
            "Available routes are",
            "Supported tasks:",
            "Started server process",
            "Waiting for application startup",
            "init engine (profile, create kv cache, warmup model) took",
            "Starting LMCache HTTP server",
            "cache server is running",
            "LMCache HTTP server initialized",
        ),
    ),
    (
        CONNECTING_LMCACHE,
        (
            "Registering kv caches",
            "Registering KV caches",
            "Resolved LMCache MP geometry",
            "Waiting for LMCache MP server",
            "Connecting to LMCache",
        ),
    ),
    (
        COMPILING,
        (
            "Starting torch.compile",
            "torch.compile took",
            "Compiling a graph",
            "Dynamo bytecode transform",
            "Warming up model for the compilation",
            "Compile and warming up model",
            "Capturing CUDA graph",
            "Graph capturing",
            "Directly load the compiled graph",
            "Directly load AOT compilation",
        ),
    ),
    (
        KV_CACHE,
        (
            "Model loading took",
            "Memory profiling",
            "Available KV cache memory",
            "KV cache size:",
            "Maximum concurrency for",
            "GiB for KV cache",
            "num_gpu_blocks",
            "num_cpu_blocks",
        ),
    ),
    (
        LOADING_WEIGHTS,
        (
            "Starting to load model",
            "Loading model from scratch",
            "Loading weights",
            "Loading safetensors checkpoint shards",
            "Loading pt checkpoint shards",
            "Loading model weights",
        ),
    ),
    (
        STARTING,
        (
            "vLLM server version",
            "vLLM API server version",
            "Resolved architecture",
            "Using max model len",
            "Automatically detected platform",
        ),
    ),
)
# Lines that dump a whole configuration (and so may mention anything): recognised by how they start.
_CONFIG_DUMPS = ("non-default args", "Initializing a V1 LLM engine", "Initializing a V0 LLM engine")
# Only the head of a message is searched, so a long value in a message cannot fake a phase.
_HEAD = 160


def strip_colours(line: str) -> str:
    """The line without ANSI escape sequences."""
    return _ANSI.sub("", line)


def parse(line: str) -> tuple[str | None, str]:
    """The level (``"ERROR"``, ``"INFO"``, ... or ``None``) and the bare message of one log line.

    Colours, carriage returns and the vLLM / LMCache / uvicorn logger prefix are removed.
    """
    text = _ANSI.sub("", line).replace("\r", "").strip()
    lmcache = _LMCACHE_PREFIX.match(text)
    if lmcache:
        message = _LMCACHE_SUFFIX.sub("", text[lmcache.end() :]).strip()
        return lmcache.group(1), message
    level: str | None = None
    vllm = _VLLM_PREFIX.match(text)
    if vllm:
        level = vllm.group(1)
        text = text[vllm.end() :]
    uvicorn = _UVICORN_PREFIX.match(text)
    if uvicorn:
        level = level or uvicorn.group(1)
        text = text[uvicorn.end() :]
    if level == "WARN":
        level = "WARNING"
    return level, text.strip()


def clean(line: str) -> str:
    """A log line without colours, carriage returns or a vLLM / LMCache / uvicorn logger prefix."""
    return parse(line)[1]


def phase_of(line: str) -> str | None:
    """The start-up phase a vLLM or LMCache log line announces, or ``None`` if it tells none."""
    text = clean(line)
    if text.startswith(_CONFIG_DUMPS):
        return STARTING
    text = text[:_HEAD]
    for phase, needles in _RULES:
        if any(needle in text for needle in needles):
            return phase
    return None
