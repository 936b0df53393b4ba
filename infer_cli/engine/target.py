"""Where and how one run starts the engine: everything a profile cannot know."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infer_cli.engine.argv import LOOPBACK


@dataclass(frozen=True)
class LaunchTarget:
    """Where and how this run starts the engine; everything the profile cannot know."""

    vllm: str
    model: str  # a local folder or a Hugging Face id
    port: int  # vLLM's internal port on 127.0.0.1
    api_key: str
    device: str = "cuda"  # "cuda" or "cpu", after resolving the profile's "auto"
    lmcache: str = "lmcache"
    lmcache_port: int = 5555
    lmcache_http_port: int = 8088
    run_dir: Path = Path("/tmp/infer-run")
    env: Mapping[str, str] = field(
        default_factory=dict
    )  # e.g. the CPU engine environment's variables
    offline: bool = False  # the model is a local folder: never ask the hub
    python: str = "python3"  # the interpreter that runs infer's own simulated engine
    replica_ports: tuple[int, ...] = ()  # one per replica (default: port, port + 1, ...)
    lmcache_servers: tuple[tuple[int, int], ...] = ()
    """(port, http port) of each cache server when the replicas do not share one (default:
    consecutive pairs from lmcache_port)."""
    router: str = "vllm-router"
    router_port: int = 30000
    router_metrics_port: int = 29000
    kv_event_ports: tuple[int, ...] = ()  # kv_aware: each replica's KV event publisher
    worker: bool = False  # ``infer serve --worker``: replicas only, on a reachable address
    replica_host: str = LOOPBACK  # where replicas listen (the worker's address with --worker)

    def replica_port(self, index: int) -> int:
        if not self.replica_ports:
            return self.port + index
        if index >= len(self.replica_ports):
            raise ValueError(f"no port for replica {index}: {len(self.replica_ports)} given")
        return self.replica_ports[index]

    def kv_event_port(self, index: int) -> int:
        """Where replica ``index`` publishes KV cache events (read by the kv_aware policy)."""
        return self.kv_event_ports[index] if self.kv_event_ports else self.port + 1000 + index

    def lmcache_ports(self, index: int) -> tuple[int, int]:
        """The ports of cache server ``index`` (0 is the shared one)."""
        if not self.lmcache_servers:
            if index == 0:
                return self.lmcache_port, self.lmcache_http_port
            step = 2 * index
            return self.lmcache_port + step, self.lmcache_http_port + step
        return self.lmcache_servers[index]
