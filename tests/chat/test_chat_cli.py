"""``infer chat`` one question at a time, through ``CliRunner``, against the simulated engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infer_cli.cli import app
from tests.chat.conftest import SimServers
from tests.fake_upstream import CONTENT, REASONING, FakeUpstream
from tests.helpers import free_port

runner = CliRunner()


def chat(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["chat", *args], input=input, env=env)


def last_conversation(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "chat" / "last.json").read_text())
    return data


def test_one_question_prints_the_bare_answer(sims: SimServers, infer_home: Path) -> None:
    result = chat("--url", sims.fast.url, "hello", "there", "--option", "max_tokens=8")
    assert result.exit_code == 0, result.output
    answer = result.stdout
    assert answer.strip() and answer.endswith("\n")
    assert "\x1b[" not in answer and "first token" not in answer  # no decoration in a pipe
    assert result.stderr == ""
    saved = last_conversation(infer_home)
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert saved["messages"][0]["content"] == "hello there"
    assert saved["messages"][1]["content"] == answer.rstrip("\n")
    assert saved["messages"][1]["stats"]["completion_tokens"] == 8
    assert saved["model"] == "sim-model"  # the first model the server lists


def test_piped_stdin_is_appended_to_the_question(sims: SimServers, infer_home: Path) -> None:
    result = chat(
        "--url", sims.fast.url, "review this", "--option", "max_tokens=3", input="+ a = 1\n"
    )
    assert result.exit_code == 0, result.output
    assert last_conversation(infer_home)["messages"][0]["content"] == "review this\n\n+ a = 1\n"
    only_stdin = chat("--url", sims.fast.url, "--option", "max_tokens=3", input="just stdin")
    assert only_stdin.exit_code == 0, only_stdin.output
    assert last_conversation(infer_home)["messages"][0]["content"] == "just stdin"
    nothing = chat("--url", sims.fast.url, input="")
    assert nothing.exit_code == 2 and "nothing to ask" in nothing.stderr


def test_json_no_stream_options_and_system(sims: SimServers, infer_home: Path) -> None:
    base = ["--url", sims.fast.url, "--option", "max_tokens=5", "--option", "temperature=0"]
    plain = json.loads(chat(*base, "--json", "hi").stdout)
    assert plain["object"] == "chat.completion" and plain["model"] == "sim-model"
    assert plain["usage"]["completion_tokens"] == 5
    text = plain["choices"][0]["message"]["content"]
    with_system = json.loads(chat(*base, "--json", "--system", "be terse " * 20, "hi").stdout)
    assert with_system["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    assert last_conversation(infer_home)["system"].startswith("be terse")
    whole = chat(*base, "--no-stream", "hi")
    assert whole.exit_code == 0 and whole.stdout.strip() == text
    bad = chat(*base, "--option", "oops", "hi")
    assert bad.exit_code == 2 and "--option key=value" in bad.stderr
    hot = chat("--url", sims.fast.url, "--option", "temperature=hot", "hi")
    assert hot.exit_code == 2
    (line,) = hot.stderr.strip().splitlines()
    assert "temperature must be a number, not 'hot'" in line


def test_url_forms_env_and_continue(sims: SimServers, infer_home: Path) -> None:
    for url in (sims.fast.url + "/api/v1", sims.fast.url + "/v1/", sims.fast.url[len("http://") :]):
        result = chat("--url", url, "--option", "max_tokens=2", "hi")
        assert result.exit_code == 0, (url, result.output)
    from_env = chat("--option", "max_tokens=2", "first", env={"INFER_URL": sims.fast.url})
    assert from_env.exit_code == 0, from_env.output
    follow = chat("--url", sims.fast.url, "--continue", "--option", "max_tokens=2", "second")
    assert follow.exit_code == 0, follow.output
    contents = [m["content"] for m in last_conversation(infer_home)["messages"]]
    assert len(contents) == 4 and contents[0] == "first" and contents[2] == "second"


def test_unknown_model_lists_the_served_ones(sims: SimServers) -> None:
    result = chat("--url", sims.fast.url, "--model", "nope", "hi")
    assert result.exit_code == 2
    assert "model 'nope' is not served" in result.stderr and "sim-model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_or_wrong_key(sims: SimServers) -> None:
    missing = chat("--url", sims.failing.url, "hi")
    assert missing.exit_code == 1
    assert "needs an API key" in missing.stderr and "INFER_API_KEY" in missing.stderr
    wrong = chat("--url", sims.failing.url, "--api-key", "wrong", "hi")
    assert wrong.exit_code == 1 and "refused the API key" in wrong.stderr
    models = runner.invoke(app, ["models", "--url", sims.failing.url])
    assert models.exit_code == 1 and "INFER_API_KEY" in models.stderr


def test_unreachable_endpoint_names_the_url_and_infer_serve() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["chat", "--url", url, "hi"], ["models", "--url", url]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert f"cannot reach {url}" in line and "infer serve" in line


def test_mid_stream_error_shows_the_partial_answer_and_the_error(
    sims: SimServers, infer_home: Path
) -> None:
    key = {"INFER_API_KEY": sims.failing.api_key or ""}
    result = chat("--url", sims.failing.url, "hi", env=key)
    assert result.exit_code == 1
    assert 1 <= len(result.stdout.split()) <= 3  # the three tokens before the failure
    assert "failed mid-stream" in result.stderr and "after 3 tokens" in result.stderr
    kept = last_conversation(infer_home)["messages"][-1]
    assert kept["role"] == "assistant" and kept["error"] and kept["content"]


def test_broken_pipe_ends_quietly(sims: SimServers, infer_home: Path) -> None:
    command = (
        f"{sys.executable} -m infer_cli chat --url {sims.fast.url} --option max_tokens=400 hi"
        " | head -c 10"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "INFER_HOME": str(infer_home)},
    )
    assert len(done.stdout) == 10
    assert done.stderr == "" and done.returncode == 0


# --- a reasoning model ---------------------------------------------------------------------------

ANSWER = "".join(CONTENT[:4])  # the fake's default answer: "Hello, world!"
THOUGHT = "".join(REASONING).strip()  # "Let me think.\n\nThe user greets."


def ask_thinker(fake: FakeUpstream, *args: str, env: dict[str, str] | None = None) -> Any:
    return chat("--url", fake.url, "--api-key", fake.api_key, *args, env=env)


def sent_messages(fake: FakeUpstream) -> list[dict[str, Any]]:
    chats = [seen for seen in fake.requests if seen["path"] == "/v1/chat/completions"]
    messages: list[dict[str, Any]] = json.loads(chats[-1]["body"])["messages"]
    return messages


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_piped_answer_goes_to_stdout_and_the_thinking_to_stderr(
    thinker: FakeUpstream, infer_home: Path, field: str
) -> None:
    thinker.reasoning_field = field
    result = ask_thinker(thinker, "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == ANSWER + "\n"  # a script gets the answer alone
    assert result.stderr == THOUGHT + "\n"
    saved = last_conversation(infer_home)
    assert [m["content"] for m in saved["messages"]] == ["hi", ANSWER]
    assert "greets" not in json.dumps(saved)  # the thinking is not kept
    assert saved["messages"][1]["stats"]["completion_tokens"] == len(REASONING) + 4
    follow = ask_thinker(thinker, "--continue", "and then?")
    assert follow.exit_code == 0, follow.output
    assert sent_messages(thinker) == [  # nor sent back to the model
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "and then?"},
    ]


def test_hide_reasoning_option_and_env(thinker: FakeUpstream) -> None:
    for args, env in [(["--hide-reasoning"], None), ([], {"INFER_HIDE_REASONING": "1"})]:
        result = ask_thinker(thinker, *args, "hi", env=env)
        assert result.exit_code == 0, result.output
        assert (result.stdout, result.stderr) == (ANSWER + "\n", "")
    whole = ask_thinker(thinker, "--hide-reasoning", "--no-stream", "hi")
    assert (whole.stdout, whole.stderr) == (ANSWER + "\n", "")


def test_thinking_of_a_whole_answer_and_json(thinker: FakeUpstream) -> None:
    whole = ask_thinker(thinker, "--no-stream", "hi")
    assert whole.exit_code == 0, whole.output
    assert (whole.stdout, whole.stderr) == (ANSWER + "\n", THOUGHT + "\n")
    thinker.reasoning_field = "reasoning"
    result = ask_thinker(thinker, "--json", "hi")
    assert result.exit_code == 0 and result.stderr == ""
    message = json.loads(result.stdout)["choices"][0]["message"]  # the server's JSON, as it is
    assert message == {"role": "assistant", "content": ANSWER, "reasoning": "".join(REASONING)}
