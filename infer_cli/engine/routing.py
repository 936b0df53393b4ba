"""Several replicas: their names, addresses and devices, and ``vllm-router`` over them.

The replicas share one internal key: vllm-router passes the caller's ``Authorization`` header
through to whichever engine it picks (measured with vllm-router 0.1.17; its ``--api-key`` is not
sent on requests), so every engine behind it must accept the key the proxy sends.
"""

from __future__ import annotations

from infer_cli.config.schema import Profile
from infer_cli.engine.argv import LOOPBACK, client_host, number
from infer_cli.engine.command import Command
from infer_cli.engine.target import LaunchTarget


def routed(profile: Profile, target: LaunchTarget) -> bool:
    """Whether this run starts vllm-router (never on a worker machine)."""
    return profile.replicas.routed and not target.worker


def replica_name(profile: Profile, target: LaunchTarget, index: int | None) -> str:
    if index is None or (profile.replicas.count == 1 and not routed(profile, target)):
        return "vllm"
    return f"vllm-{index}"


def replica_url(target: LaunchTarget, index: int) -> str:
    """Where the router (on this machine) reaches replica ``index``."""
    return f"http://{client_host(target.replica_host)}:{target.replica_port(index)}"


def kv_events(profile: Profile, target: LaunchTarget) -> bool:
    """kv_aware routing on this machine: replicas publish KV events over loopback ZMQ."""
    return profile.replicas.policy == "kv_aware" and routed(profile, target)


def device_group(profile: Profile, target: LaunchTarget, index: int | None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` of replica ``index`` on a GPU machine; None: leave it alone."""
    replicas = profile.replicas
    if target.device != "cuda" or (replicas.count == 1 and replicas.device_groups is None):
        return None
    i = index or 0
    if replicas.device_groups is not None:
        group = replicas.device_groups[i]
    else:
        size = profile.gpus_per_replica
        group = list(range(i * size, (i + 1) * size))
    return ",".join(str(device) for device in group)


def router_command(profile: Profile, target: LaunchTarget, worker_urls: list[str]) -> Command:
    """``vllm-router`` on loopback over ``worker_urls``; the proxy forwards to it.

    Ready when ``/liveness`` answers: its ``/health`` is 503 while any one engine is down, which
    is the router doing its job, not the router failing. ``/readiness`` says how many are healthy.
    """
    replicas = profile.replicas
    argv = [target.router, "--host", LOOPBACK, "--port", str(target.router_port)]
    argv += ["--worker-urls", *worker_urls, "--policy", replicas.policy]
    argv += ["--prometheus-host", LOOPBACK, "--prometheus-port", str(target.router_metrics_port)]
    argv += ["--health-check-interval-secs", str(replicas.health_check_interval)]
    if kv_events(profile, target):  # the local replicas' KV events feed the kv_aware policy
        for i in range(replicas.count):
            source = f"{replica_url(target, i)}=tcp://{LOOPBACK}:{target.kv_event_port(i)}"
            argv += ["--kv-event-source", source]
        argv += ["--kv-event-model", profile.model.name]
        if profile.engine.block_size is not None:
            argv += ["--kv-event-block-size", str(profile.engine.block_size)]
    valued = (
        ("cache_threshold", "--cache-threshold"),
        ("balance_abs_threshold", "--balance-abs-threshold"),
        ("balance_rel_threshold", "--balance-rel-threshold"),
        ("health_failure_threshold", "--health-failure-threshold"),
        ("max_retries", "--retry-max-retries"),
        ("request_timeout", "--request-timeout-secs"),
    )
    for option, flag in valued:
        value = getattr(replicas, option)
        if value is not None:
            argv += [flag, number(value)]
    argv += replicas.router_extra_args
    return Command(
        name="router",
        argv=argv,
        env={},
        health_url=f"http://{LOOPBACK}:{target.router_port}/liveness",
        startup_timeout=replicas.router_startup_timeout,
        stop_timeout=profile.engine.stop_timeout,
        after=tuple(replica_name(profile, target, i) for i in range(replicas.count)),
    )
