"""``infer serve --dry-run``'s text: the commands with fixed placeholders where each start picks
its own values (free loopback ports, the internal key, the run folder), so that two dry runs
differ only where their profiles do.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from infer_cli.engine.launch import shell_line

if TYPE_CHECKING:
    from infer_cli.engine.process import Command
    from infer_cli.serve.plan import ServePlan

PLACEHOLDER_KEY = "DRY-RUN-INTERNAL-KEY"
FIRST_PLACEHOLDER_PORT = 18001
_PORT_FLAGS = ("--port", "--http-port")


def placeholders(plan: ServePlan) -> dict[str, str]:
    """Each value this start picked for itself -> its fixed placeholder."""
    ports: list[str] = [str(plan.vllm_port)]
    for command in plan.commands:
        found = re.search(r":(\d+)/", command.health_url)
        if found:
            ports.append(found.group(1))
        for flag, value in zip(command.argv, command.argv[1:], strict=False):
            if flag in _PORT_FLAGS:
                ports.append(value)
    ports += [str(port) for port in plan.picked_ports]  # the router's metrics, KV event ports
    cache = plan.profile.lmcache
    fixed = {str(plan.port), str(cache.port or ""), str(cache.http_port or "")}
    chosen = [port for port in dict.fromkeys(ports) if port not in fixed]  # in order of role
    # the key and the folder first: a port's digits may occur inside them
    mapping = {
        plan.api_key: PLACEHOLDER_KEY,
        str(plan.run_dir): str(plan.run_dir.with_name(f"DRY-RUN-{plan.profile_name}")),
    }
    for i, port in enumerate(chosen):
        mapping[port] = str(FIRST_PLACEHOLDER_PORT + i)
    return mapping


def _swap(text: str, mapping: dict[str, str]) -> str:
    for value, placeholder in mapping.items():
        if value.isdigit():
            text = re.sub(rf"(?<!\d){value}(?!\d)", placeholder, text)
        else:
            text = text.replace(value, placeholder)
    return text


def stable(command: Command, mapping: dict[str, str]) -> Command:
    """``command`` with the values of ``mapping`` replaced by their placeholders."""
    return replace(
        command,
        argv=[_swap(item, mapping) for item in command.argv],
        env={key: _swap(value, mapping) for key, value in command.env.items()},
        health_url=_swap(command.health_url, mapping),
    )


def dry_run_text(plan: ServePlan, prerequisites: list[str], *, real_values: bool = False) -> str:
    """The whole dry run, as copy-pasteable shell with comments."""
    mapping = {} if real_values else placeholders(plan)
    lines = [
        f"# infer serve --profile {plan.profile_name}: the commands, in start order",
        f"# the proxy then listens on http://{plan.host}:{plan.port}",
    ]
    if mapping:
        lines.append(
            "# loopback ports (from 18001), the internal key and the run folder are placeholders:"
            " each start picks its own (--real-values shows this one's)"
        )
    if prerequisites:
        lines.append("#")
        lines.append("# needs:")
        lines.extend(f"#   - {line}" for line in prerequisites)
    for command in plan.commands:
        shown = stable(command, mapping)
        lines.append("")
        lines.append(f"# {shown.name} (ready when {shown.health_url} answers 200)")
        lines.append(shell_line(shown))
    return "\n".join(lines)
