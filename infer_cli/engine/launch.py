"""From a profile to the exact ``lmcache server``, ``vllm serve`` and ``vllm-router`` command lines.

Pure functions: every value that depends on the machine (executables, ports, the model folder, the
internal key, the run folder) arrives in a :class:`LaunchTarget`, so the same profile always gives
the same argv, and golden files can pin them for every bundled profile.

One replica and no workers: ``lmcache`` then ``vllm``. Several replicas (``[replicas]``) or other
machines' engines: ``lmcache`` (or ``lmcache-0``, ``lmcache-1``, ... when not shared), ``vllm-0``,
``vllm-1``, ..., then ``router`` over all of them. The replicas share one internal key: vllm-router
passes the caller's ``Authorization`` header through to whichever engine it picks (measured with
vllm-router 0.1.17; its ``--api-key`` is not sent on requests), so every engine behind it must
accept the key the proxy sends (``routing``).

Each process has a module of its own: ``lmcache_launch``, ``vllm_launch``, ``routing`` (the
router); ``argv`` spells values and ``target`` holds the machine's side. Here is the whole plan.
"""

from __future__ import annotations

from dataclasses import replace

from infer_cli.config.schema import Profile
from infer_cli.engine.argv import LOOPBACK, shell_line
from infer_cli.engine.command import Command
from infer_cli.engine.lmcache_launch import lmcache_in_process_env, lmcache_server
from infer_cli.engine.routing import replica_url, routed, router_command
from infer_cli.engine.target import LaunchTarget
from infer_cli.engine.vllm_launch import vllm_serve

# What other modules take from here (the pieces live in the modules named above).
__all__ = [
    "LOOPBACK",
    "Command",
    "LaunchTarget",
    "lmcache_in_process_env",
    "plan",
    "replicated",
    "routed",
    "shell_line",
    "sim_engine",
]


def plan(profile: Profile, target: LaunchTarget) -> list[Command]:
    """The processes of one run, in start order."""
    if profile.engine.backend == "sim":
        return [sim_engine(profile, target)]
    if profile.replicas.count == 1 and not routed(profile, target):
        launches = []
        if profile.lmcache.mode == "mp":
            launches.append(lmcache_server(profile.lmcache, target))
        launches.append(vllm_serve(profile, target))
        return launches
    return replicated(profile, target)


def replicated(profile: Profile, target: LaunchTarget) -> list[Command]:
    """Cache server(s), the replicas (they start side by side), then the router over them."""
    count, cache = profile.replicas.count, profile.lmcache
    servers: list[Command] = []
    if cache.mode == "mp":
        shared = cache.shared or count == 1
        servers = [lmcache_server(cache, target, None if shared else i) for i in range(count)]
        servers = servers[:1] if shared else servers
    replicas = []
    for index in range(count):
        server = servers[0 if len(servers) == 1 else index] if servers else None
        command = vllm_serve(profile, target, index)
        replicas.append(replace(command, requires=(server.name,) if server else ()))
    commands = [*servers, *replicas]
    if routed(profile, target):
        urls = [replica_url(target, i) for i in range(count)]
        commands.append(router_command(profile, target, [*urls, *profile.replicas.workers]))
    return commands


def sim_engine(profile: Profile, target: LaunchTarget) -> Command:
    """infer's simulated engine as a child process, started and watched exactly like vLLM."""
    settings = profile.sim.model_copy(
        update={
            "model": profile.model.name,
            "context_length": profile.model.context_length or profile.sim.context_length,
        }
    )
    argv = [target.python, "-m", "infer_cli.sim", "--host", LOOPBACK, "--port", str(target.port)]
    argv += ["--settings-json", settings.model_dump_json(exclude_defaults=True)]
    return Command(
        name="sim",
        argv=argv,
        env={"VLLM_API_KEY": target.api_key},
        health_url=f"http://{LOOPBACK}:{target.port}/health",
        startup_timeout=profile.engine.startup_timeout,
        stop_timeout=profile.engine.stop_timeout,
    )
