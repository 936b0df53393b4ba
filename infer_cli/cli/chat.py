"""``infer chat``: talk to the endpoint, interactively or one question at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from infer_cli.cli.options import ApiKeyOption, ModelOption, UrlOption, resolve_url

if TYPE_CHECKING:
    from infer_cli.chat.conversation import Conversation


def chat(
    question: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="QUESTION",
            help="Ask this and print the answer (piped stdin is appended). Without it: the "
            "interactive chat.",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    system: Annotated[
        str | None,
        typer.Option("--system", metavar="TEXT", help="System prompt.", show_default=False),
    ] = None,
    options: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            metavar="KEY=VALUE",
            help="A sampling parameter, e.g. --option temperature=0.2 (repeatable).",
            show_default=False,
        ),
    ] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Wait for the whole answer, then print it.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole JSON response (one question).")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print answers as plain text, not rendered Markdown.")
    ] = False,
    hide_reasoning: Annotated[
        bool,
        typer.Option(
            "--hide-reasoning",
            envvar="INFER_HIDE_REASONING",
            help="Do not show the thinking of reasoning models, only their answers.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--continue", help="Go on with the last conversation (kept after every answer)."
        ),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Chat with the endpoint: streamed Markdown answers, history, /help for commands.

    [b]Examples[/]

      infer chat                                  [dim]# interactive[/]
      infer chat "What is the capital of France?"  [dim]# one question, the answer on stdout[/]
      git diff | infer chat --option temperature=0 "review this"
      infer chat -u https://openrouter.ai/api/v1 -m meta-llama/llama-3.1-8b-instruct
    """
    import asyncio
    import sys

    from infer_cli import paths
    from infer_cli.chat.commands import parse_option
    from infer_cli.chat.session import ChatSession
    from infer_cli.client.api import Client
    from infer_cli.errors import UsageError
    from infer_cli.ui import chat_app

    params = dict(parse_option(option) for option in options or ())
    text = " ".join(question) if question else None
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped.strip():
            text = f"{text}\n\n{piped}" if text else piped
        elif text is None:
            raise UsageError("nothing to ask: stdin is empty", hint='e.g. infer chat "question"')
    if text is None:
        if json_output:
            raise UsageError("--json needs a question", hint='e.g. infer chat --json "question"')
        if not sys.stdout.isatty():
            raise UsageError(
                "the interactive chat needs a terminal", hint='ask one question: infer chat "..."'
            )
    last = paths.chat_home() / "last.json"
    conversation = _conversation(last if resume else None, system, params)
    settings = chat_app.ChatOptions(
        model=model,
        question=text,
        stream=not no_stream,
        json_output=json_output,
        raw=raw,
        history_file=paths.chat_home() / "history",
        autosave_file=last,
    )
    address = resolve_url(url)

    async def main() -> int:
        async with Client(address, api_key) as client:
            session = ChatSession(client, conversation)
            session.show_reasoning = not hide_reasoning
            return await chat_app.run(session, settings)

    try:
        code = asyncio.run(main())
    except BrokenPipeError:
        # the reader went away (infer chat ... | head): end quietly, and point stdout at
        # /dev/null so that Python's own flush at exit does not complain either
        _silence_stdout()
        code = 0
    if code:
        raise typer.Exit(code)


def _conversation(resume: Path | None, system: str | None, params: dict[str, Any]) -> Conversation:
    """The conversation to start from: the saved one (``--continue``) or a new one, with the
    system prompt and sampling parameters the command line gave (an empty ``--system`` drops a
    saved one)."""
    from infer_cli.chat import conversation as files

    conversation = files.load(resume) if resume else files.Conversation()
    if system is not None:
        conversation.system = system or None
    conversation.params.update(params)
    return conversation


def _silence_stdout() -> None:
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
