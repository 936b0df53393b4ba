"""How values are spelled on an engine's command line, and how a command is shown to a person."""

from __future__ import annotations

import shlex

from infer_cli.engine.command import Command

LOOPBACK = "127.0.0.1"


def flag(option: str) -> str:
    """``max_num_seqs`` -> ``--max-num-seqs``."""
    return "--" + option.replace("_", "-")


def switch(option: str, on: bool) -> str:
    """``--enable-x`` or ``--no-enable-x``."""
    return flag(option) if on else "--no-" + option.replace("_", "-")


def number(value: float | int) -> str:
    """``2.0`` -> ``2``, ``0.92`` -> ``0.92``: what a person would type."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def client_host(bind_host: str) -> str:
    """Where a client on this machine reaches a server bound to ``bind_host``."""
    return LOOPBACK if bind_host in ("0.0.0.0", "::", "") else bind_host


def shell_line(command: Command) -> str:
    """A copy-pasteable shell line: the environment assignments, then the command, one option
    (with its values) per continued line."""
    assignments = [f"{key}={shlex.quote(value)}" for key, value in sorted(command.env.items())]
    return " \\\n    ".join([*assignments, *_option_lines(command.argv)])


def _option_lines(argv: list[str]) -> list[str]:
    """``vllm serve MODEL --a 1 --b`` -> ``["vllm serve MODEL", "--a 1", "--b"]`` (quoted)."""
    lines: list[list[str]] = [[]]
    for item in argv:
        if item.startswith("--") and lines[-1]:
            lines.append([])
        lines[-1].append(item)
    return [shlex.join(line) for line in lines]
