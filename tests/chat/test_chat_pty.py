"""``infer chat`` on a terminal: the interactive loop driven through a pseudo-terminal (pexpect)
as a user types, and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pexpect
import pytest

from infer_cli.client.metrics import Samples
from tests.chat.conftest import SimServer, SimServers
from tests.fake_upstream import FakeUpstream

PROMPT = ">>>"
STATS = "s to first token"


@contextmanager
def interactive(
    server: SimServer | FakeUpstream, home: Path, *args: str
) -> Iterator[pexpect.spawn]:
    env = {
        **os.environ,
        "INFER_HOME": str(home),
        "PROMPT_TOOLKIT_NO_CPR": "1",  # a pty that answers no cursor-position request
        "TERM": "xterm-256color",
    }
    env.pop("NO_COLOR", None)
    if server.api_key:
        env["INFER_API_KEY"] = server.api_key
    child = pexpect.spawn(
        sys.executable,
        ["-m", "infer_cli", "chat", "--url", server.url, *args],
        env=env,
        encoding="utf-8",
        dimensions=(40, 120),
        timeout=30,
    )
    with (home / "pty.log").open("w") as log:
        child.logfile_read = log
        try:
            child.expect_exact(PROMPT)
            yield child
        finally:
            if child.isalive():
                child.terminate(force=True)
            child.close()


def generated_tokens(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    return Samples.from_text(text).total("vllm:generation_tokens_total") or 0.0


def wait_for_tokens(url: str, count: float, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while generated_tokens(url) < count:
        assert time.monotonic() < deadline, "the engine generated nothing"
        time.sleep(0.05)


def engine_saw_a_cancel(url: str, timeout: float = 5) -> bool:
    """The connection was closed, so the proxy cancelled the engine's request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
        if (Samples.from_text(text).total("infer_sim_cancelled_total") or 0) >= 1:
            return True
        time.sleep(0.1)
    return False


def say(child: pexpect.spawn, line: str, until: str = PROMPT) -> str:
    child.sendline(line)
    child.expect_exact(until)
    before: str = child.before
    if until != PROMPT:
        child.expect_exact(PROMPT)
    return before


def test_chat_session_commands_history_and_files(sims: SimServers, infer_home: Path) -> None:
    saved = infer_home / "talk.json"
    (infer_home / "bad.json").write_text('{"messages": "nope"}')
    with interactive(sims.fast, infer_home, "--option", "max_tokens=12") as child:
        say(child, "What is a KV cache?", until=STATS)
        say(child, "/set temperature 0.5", until="temperature = 0.5")
        child.send("first line\x1b\r")  # Alt-Enter: a new line, not sent yet
        child.send("second line\r")
        child.expect_exact(STATS)
        child.expect_exact(PROMPT)
        child.sendline('"""')  # a block: Enter adds lines until one ends with """
        child.sendline("block one")
        child.sendline('block two"""')
        child.expect_exact(STATS)
        child.expect_exact(PROMPT)
        say(child, f"/save {saved}", until="saved 6 messages")
        say(child, "/clear", until="conversation cleared")
        say(child, f"/load {saved}", until="loaded 6 messages (3 turns)")
        say(child, f"/load {infer_home / 'missing.json'}", until="no conversation file")
        say(child, f"/load {infer_home / 'bad.json'}", until="is not a conversation")
        say(child, "/frobnicate", until="unknown command /frobnicate")
        say(child, "/help", until="/retry")
        say(child, "/stats", until="completion tokens")
        child.sendeof()  # Ctrl-D leaves
        child.expect_exact(pexpect.EOF)
    assert child.exitstatus == 0
    data = json.loads(saved.read_text())
    users = [m["content"] for m in data["messages"] if m["role"] == "user"]
    assert users == ["What is a KV cache?", "first line\nsecond line", "block one\nblock two"]
    assert data["params"] == {"max_tokens": 12, "temperature": 0.5}
    history = (infer_home / "chat" / "history").read_text()
    assert "+What is a KV cache?" in history and "+/stats" in history
    assert "+second line" in history  # a multi-line entry, kept whole
    assert len(json.loads((infer_home / "chat" / "last.json").read_text())["messages"]) == 6
    assert "Traceback" not in (infer_home / "pty.log").read_text()


def test_history_is_kept_across_sessions(sims: SimServers, infer_home: Path) -> None:
    with interactive(sims.fast, infer_home) as child:
        say(child, "/system remember me", until="system prompt set")
        child.sendcontrol("c")  # Ctrl-C at an empty prompt leaves
        child.expect_exact(pexpect.EOF)
    assert child.exitstatus == 130  # as a shell reports a Ctrl-C
    with interactive(sims.fast, infer_home) as child:
        child.send("\x1b[A")  # Up: the previous session's last line comes back
        child.expect_exact("remember me")
        child.sendcontrol("c")  # clears the line (not empty: does not leave)
        say(child, "/system", until="no system prompt")
        child.sendeof()
        child.expect_exact(pexpect.EOF)


def test_ctrl_c_stops_an_answer_and_keeps_it_marked(sims: SimServers, infer_home: Path) -> None:
    saved = infer_home / "partial.json"
    with interactive(sims.slow, infer_home) as child:  # 200 ms per token, 128 tokens
        generated = generated_tokens(sims.slow.url)
        child.sendline("tell me a long story")
        wait_for_tokens(sims.slow.url, generated + 3)  # the first ones have reached the chat
        started = time.monotonic()
        child.sendintr()
        child.expect_exact("interrupted")
        child.expect_exact(PROMPT)
        assert time.monotonic() - started < 5, "the answer must stop at once"
        assert engine_saw_a_cancel(sims.slow.url), "the request must be cancelled, not abandoned"
        say(child, f"/save {saved}", until="saved 2 messages")
        say(child, "/set max_tokens 2", until="max_tokens = 2")
        say(child, "and now a short one", until=STATS)  # the next turn works
        child.sendcontrol("d")
        child.expect_exact(pexpect.EOF)
    answer = json.loads(saved.read_text())["messages"][1]
    assert answer["role"] == "assistant" and answer["interrupted"] is True
    assert 1 <= len(answer["content"].split()) < 100


def test_thinking_is_shown_before_the_answer_and_can_be_hidden(
    thinker: FakeUpstream, infer_home: Path
) -> None:
    with interactive(thinker, infer_home) as child:
        shown = say(child, "hi", until=STATS)
        assert "thinking…" in shown and "The user greets." in shown
        assert shown.index("The user greets.") < shown.index("…done thinking")
        assert shown.index("…done thinking") < shown.rindex("Hello, world!")
        say(child, "/reasoning off", until="is hidden")
        hidden = say(child, "again", until=STATS)
        assert "Hello, world!" in hidden and "greets" not in hidden
        child.sendeof()
        child.expect_exact(pexpect.EOF)
    assert child.exitstatus == 0
    assert "Traceback" not in (infer_home / "pty.log").read_text()


@pytest.mark.parametrize("raw", [False, True])
def test_mid_stream_error_is_shown_and_the_next_turn_works(
    sims: SimServers, infer_home: Path, raw: bool
) -> None:
    with interactive(sims.failing, infer_home, *(["--raw"] if raw else [])) as child:
        say(child, "hello", until="failed mid-stream")
        say(child, "/set max_tokens 2", until="max_tokens = 2")  # ends before the failure
        say(child, "again", until=STATS)
        say(child, "/stats", until="1 failed")
        child.sendeof()
        child.expect_exact(pexpect.EOF)
    messages = json.loads((infer_home / "chat" / "last.json").read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].get("error") and not messages[3].get("error")


def test_one_question_on_a_terminal_is_rendered_with_its_figures(
    sims: SimServers, infer_home: Path
) -> None:
    env = {**os.environ, "INFER_HOME": str(infer_home), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    argv = ["-m", "infer_cli", "chat", "--url", sims.fast.url, "--option", "max_tokens=5", "hi"]
    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8", timeout=30)
    try:
        child.expect_exact(STATS)
        child.expect_exact("5 completion tokens")
        child.expect_exact(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_a_one_question_answer(sims: SimServers, infer_home: Path) -> None:
    generated = generated_tokens(sims.slow.url)
    process = subprocess.Popen(
        [sys.executable, "-m", "infer_cli", "chat", "--url", sims.slow.url, "a long story"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "INFER_HOME": str(infer_home)},
    )
    try:
        wait_for_tokens(sims.slow.url, generated + 3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert stdout.endswith("\n") and len(stdout.split()) >= 1  # the answer so far, bare
    assert stderr == "[interrupted]\n"
    kept = json.loads((infer_home / "chat" / "last.json").read_text())["messages"][-1]
    assert kept["interrupted"] is True


def test_a_parameter_of_the_wrong_type_is_refused_at_once(
    sims: SimServers, infer_home: Path
) -> None:
    with interactive(sims.fast, infer_home) as child:
        say(child, "/set temperature hot", until="temperature must be a number, not 'hot'")
        say(child, "/set max_tokens 2.5", until="max_tokens must be a whole number")
        say(child, "/set", until="no parameters set")  # neither was kept
        child.sendeof()
        child.expect_exact(pexpect.EOF)
    assert child.exitstatus == 0


def test_tab_completes_slash_commands(sims: SimServers, infer_home: Path) -> None:
    with interactive(sims.fast, infer_home) as child:
        child.send("/reas\t")  # one command starts so: completed in place
        # The completed part may be drawn apart from what was typed, with terminal codes between
        # (it depends on whether the tab came in the same read): match the text, not the bytes.
        child.expect(r"/reas(?:\x1b\[[0-9;?]*[A-Za-z])*oning")
        child.send("\r")
        child.expect_exact("the thinking of reasoning models is shown")
        child.expect_exact(PROMPT)
        child.sendeof()
        child.expect_exact(pexpect.EOF)
