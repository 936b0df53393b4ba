"""What a new user meets first: clients that find their server, plain help with examples, shell
completion, one meaning per short flag, and a dry run two runs of which can be diffed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from infer_cli.cli import app
from infer_cli.cli.help import plain_help
from infer_cli.client import DEFAULT_URL, default_url, resolve_url
from infer_cli.ui.serve_view import client_hint
from tests.helpers import free_port

runner = CliRunner()
INFER = Path(sys.executable).parent / "infer"
# bench's help and flags belong to its own command group (tests/test_cli_bench.py)
OWN_COMMANDS = ["serve", "pull", "chat", "models", "status", "profiles", "engine", "keys"]


def tree() -> Any:
    command = typer.main.get_command(app)
    plain_help(command)
    return command


def leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subs = getattr(command, "commands", {})
    if not subs:
        return [(path, command)]
    return [leaf for name, sub in subs.items() for leaf in leaves(sub, (*path, name))]


# --- clients find their server (item 4) -----------------------------------------------------------


def test_default_url_is_built_from_infer_host_and_port() -> None:
    assert default_url({}) == DEFAULT_URL == "http://127.0.0.1:8080"
    assert default_url({"INFER_PORT": "19150"}) == "http://127.0.0.1:19150"
    assert default_url({"INFER_HOST": "10.0.0.5", "INFER_PORT": "9000"}) == "http://10.0.0.5:9000"
    # a server bound to every address is reached through loopback
    assert default_url({"INFER_HOST": "0.0.0.0"}) == "http://127.0.0.1:8080"
    assert default_url({"INFER_HOST": "::"}) == "http://[::1]:8080"
    assert resolve_url("http://gpu-box:8000", {"INFER_PORT": "1"}) == "http://gpu-box:8000"


@pytest.mark.parametrize(
    "argv", [["status"], ["models"], ["chat", "hi"], ["bench", "latency", "-n", "1", "-q"]]
)
def test_client_commands_call_infer_port(argv: list[str]) -> None:
    port = free_port()  # nothing listens there: the error names the URL the command called
    result = runner.invoke(app, argv, env={"INFER_PORT": str(port)})
    assert result.exit_code == 1, result.output
    assert f"cannot reach http://127.0.0.1:{port}" in result.stderr


def test_infer_url_wins_over_infer_port() -> None:
    port, other = free_port(), free_port()
    env = {"INFER_PORT": str(port), "INFER_URL": f"http://127.0.0.1:{other}"}
    result = runner.invoke(app, ["status"], env=env)
    assert f"cannot reach http://127.0.0.1:{other}" in result.stderr
    flag = runner.invoke(app, ["models", "-u", f"http://127.0.0.1:{port}"], env=env)
    assert f"cannot reach http://127.0.0.1:{port}" in flag.stderr


def test_serve_banner_names_the_client_command_for_another_address() -> None:
    assert client_hint("http://127.0.0.1:8080") is None
    hint = client_hint("http://0.0.0.0:19150")
    assert hint is not None and "infer chat -u http://127.0.0.1:19150" in hint
    assert "INFER_URL=http://127.0.0.1:19150" in hint


# --- help (item 5) -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OWN_COMMANDS)
def test_help_has_plain_metavars_capital_arguments_and_examples(name: str) -> None:
    command = tree().commands[name]
    for path, _ in leaves(command, (name,)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, path
        text = result.stdout
        for internal in ("<bool>", "<str>", "<int>", "<float", "list[", "range]", "[x>="):
            assert internal not in text, (path, internal)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert not re.search(r"[{\[][a-z_]+[}\]]", usage), usage  # arguments named in capitals


@pytest.mark.parametrize(
    "path", [["serve"], ["chat"], ["models"], ["status"], ["pull"], ["profiles", "show"],
             ["profiles", "validate"], ["profiles", "init"], ["keys", "add"],
             ["engine", "install"]],
)  # fmt: skip
def test_each_command_shows_examples(path: list[str]) -> None:
    text = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).stdout
    assert "Examples" in text
    assert f"infer {' '.join(path)}" in text.split("Examples", 1)[1]


# --- shell completion (item 6) -------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(shell: str) -> None:
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(
        [str(INFER), "--show-completion", shell], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "_INFER_COMPLETE" in done.stdout


def test_completion_completes_commands_and_options() -> None:
    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_INFER_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        done = subprocess.run(
            [str(INFER)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        return done.stdout.split()

    assert "profiles" in complete("infer pro")
    assert "--watch" in complete("infer status --wa")


# --- short flags (item 7) ------------------------------------------------------------------------


def test_each_short_flag_means_one_thing_across_the_tool() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)

    def walk(command: Any) -> None:
        for param in command.params:
            if param.param_type_name != "option":
                continue
            long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            for opt in param.opts:
                if re.fullmatch(r"-\w", opt):
                    meanings[opt].add(long)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(tree())
    assert {flag: longs for flag, longs in meanings.items() if len(longs) > 1} == {}
    assert meanings["-u"] == {"--url"} and meanings["-s"] == {"--set"}
    assert meanings["-i"] == {"--interval"} and meanings["-m"] == {"--model"}


@pytest.mark.parametrize("argv", [["chat"], ["models"], ["status"]])
def test_client_options_are_the_same_everywhere(argv: list[str]) -> None:
    command = tree()
    for part in argv:
        command = command.commands[part]
    options = {opt for param in command.params for opt in param.opts}
    assert {"--url", "-u", "--api-key"} <= options


# --- dry run (item 10) ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["cpu", "h100", "sim", "cpu-2x", "h100x8-dp"])
def test_two_dry_runs_are_identical(profile: str) -> None:
    first = runner.invoke(app, ["serve", "-p", profile, "--dry-run"])
    second = runner.invoke(app, ["serve", "-p", profile, "--dry-run"])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    real = runner.invoke(app, ["serve", "-p", profile, "--dry-run", "--real-values"])
    assert real.exit_code == 0 and real.stdout != first.stdout  # fresh ports and key each time


def test_dry_run_placeholders_are_consistent_and_valid_shell() -> None:
    out = runner.invoke(app, ["serve", "-p", "cpu", "--dry-run"]).stdout
    assert "VLLM_API_KEY=DRY-RUN-INTERNAL-KEY" in out
    # vLLM's port in its health URL and on its command line are the same placeholder
    health = re.search(r"# vllm \(ready when http://127.0.0.1:(\d+)/health", out)
    assert health is not None and f"--port {health.group(1)}" in out
    # LMCache's port is the one vLLM's connector is given
    port = re.search(r"lmcache server .*?--port (\d+)", out, re.DOTALL)
    assert port is not None and f'"lmcache.mp.port":{port.group(1)}' in out
    check = subprocess.run(["bash", "-n"], input=out, text=True, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def test_dry_run_prints_prerequisites() -> None:
    cpu = runner.invoke(app, ["serve", "-p", "cpu", "--dry-run"]).stdout
    assert "the engine is not installed: serve would build it" in cpu
    refused = runner.invoke(app, ["serve", "-p", "cpu", "--dry-run", "--no-install"]).stdout
    assert "--no-install would refuse" in refused
    multinode = runner.invoke(
        app, ["serve", "-p", "multinode", "--dry-run", "-s", "engine.vllm=/opt/vllm"]
    ).stdout
    assert "a running Ray cluster" in multinode
    assert "Ray" not in runner.invoke(app, ["serve", "-p", "sim", "--dry-run"]).stdout
