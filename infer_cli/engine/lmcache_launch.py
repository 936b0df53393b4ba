"""LMCache's side of a launch: ``lmcache server``, vLLM's connector to it, its second tiers.

Pure functions of the profile's ``[lmcache]`` table and the run's :class:`LaunchTarget`.
"""

from __future__ import annotations

import json
from pathlib import Path

from infer_cli.config.schema import FsTier, LMCacheSection, RedisTier, S3Tier
from infer_cli.engine.argv import LOOPBACK, client_host, number
from infer_cli.engine.command import Command
from infer_cli.engine.target import LaunchTarget


def lmcache_server(
    cache: LMCacheSection, target: LaunchTarget, index: int | None = None
) -> Command:
    """``lmcache server``; ``index`` names one of several (one per replica, not shared)."""
    port, http_port = target.lmcache_ports(index or 0)
    argv = [
        target.lmcache,
        "server",
        "--host",
        cache.host,
        "--port",
        str(port),
        "--http-host",
        LOOPBACK,
        "--http-port",
        str(http_port),
        "--l1-size-gb",
        number(cache.l1_size_gb),
        "--eviction-policy",
        cache.eviction_policy,
        "--chunk-size",
        str(cache.chunk_size),
    ]
    for adapter in l2_adapters(cache):
        argv += ["--l2-adapter", json.dumps(adapter, separators=(",", ":"))]
    if cache.l2_store_policy:
        argv += ["--l2-store-policy", cache.l2_store_policy]
    if cache.l2_prefetch_policy:
        argv += ["--l2-prefetch-policy", cache.l2_prefetch_policy]
    argv += cache.extra_args
    env = {**target.env, **cache.env}
    return Command(
        name="lmcache" if index is None else f"lmcache-{index}",
        argv=argv,
        env=env,
        health_url=f"http://{LOOPBACK}:{http_port}/healthcheck",
        startup_timeout=cache.startup_timeout,
        stop_timeout=cache.stop_timeout,
    )


def kv_transfer_config(
    cache: LMCacheSection, target: LaunchTarget, port: int | None = None
) -> dict[str, object] | None:
    """vLLM's connector to LMCache; ``port``: the cache server's (default: the shared one)."""
    if cache.mode == "off":
        return None
    if cache.mode == "in-process":
        return {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
    extra: dict[str, object] = {
        "lmcache.mp.host": f"tcp://{client_host(cache.host)}",
        "lmcache.mp.port": target.lmcache_port if port is None else port,
    }
    mode = cache.transfer_mode
    if mode == "auto" and target.device == "cpu":
        mode = "lmcache_driven"  # the default mode hangs at "Registering kv caches" on the CPU
    if mode != "auto":
        extra["lmcache.mp.mp_transfer_mode"] = mode
    return {
        "kv_connector": "LMCacheMPConnector",
        "kv_role": "kv_both",
        "kv_connector_extra_config": extra,
    }


def l2_adapters(cache: LMCacheSection) -> list[dict[str, object]]:
    """The cache server's second tiers, in order: ``local_disk``, ``remote_url``, then ``l2``."""
    adapters: list[dict[str, object]] = []
    if cache.local_disk:
        adapters.append(_fs_adapter(cache.local_disk))
    if cache.remote_url:
        adapters.append(_resp_adapter(cache.remote_url))
    for tier in cache.l2:
        if isinstance(tier, FsTier):
            adapters.append(_fs_adapter(tier.path))
        elif isinstance(tier, RedisTier):
            adapters.append(_resp_adapter(tier.url))
        elif isinstance(tier, S3Tier):
            adapters.append(
                {
                    "type": "s3",
                    "s3_endpoint": f"s3://{tier.bucket}.{tier.host}",
                    "s3_region": tier.region,
                }
            )
        else:
            adapters.append(dict(tier.adapter))
    return adapters


def _fs_adapter(folder: str) -> dict[str, object]:
    return {"type": "fs", "base_path": str(Path(folder.removeprefix("file://")).expanduser())}


def _resp_adapter(url: str) -> dict[str, object]:
    """Redis and Valkey both speak RESP: LMCache's ``resp`` adapter reaches either."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {"type": "resp", "host": parts.hostname or "127.0.0.1", "port": parts.port or 6379}


def lmcache_in_process_env(cache: LMCacheSection) -> dict[str, str]:
    """LMCache's own ``LMCACHE_*`` settings for the in-process connector."""
    env = {
        "LMCACHE_CHUNK_SIZE": str(cache.chunk_size),
        "LMCACHE_LOCAL_CPU": "True",
        "LMCACHE_MAX_LOCAL_CPU_SIZE": number(cache.l1_size_gb),
        "LMCACHE_SAVE_UNFULL_CHUNK": str(cache.save_unfull_chunk),
    }
    if cache.local_disk:
        folder = cache.local_disk.removeprefix("file://").rstrip("/")
        env["LMCACHE_LOCAL_DISK"] = f"file://{folder}/"
        env["LMCACHE_MAX_LOCAL_DISK_SIZE"] = number(cache.max_local_disk_size_gb)
    if cache.remote_url:
        env["LMCACHE_REMOTE_URL"] = cache.remote_url
        env["LMCACHE_REMOTE_SERDE"] = cache.remote_serde
    return env
