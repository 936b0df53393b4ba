"""``infer chat``: talk to the endpoint, interactively or one question at a time."""

from __future__ import annotations

from typing import Annotated

import typer

from infer_cli.cli.options import ApiKeyOption, ModelOption, UrlOption, resolve_url


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
    import sys

    from infer_cli import paths
    from infer_cli.chat.commands import parse_option
    from infer_cli.errors import UsageError
    from infer_cli.ui.chat_app import ChatRequest, run

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
    request = ChatRequest(
        url=resolve_url(url),
        api_key=api_key,
        model=model,
        system=system,
        params=params,
        question=text,
        stream=not no_stream,
        json_output=json_output,
        raw=raw,
        hide_reasoning=hide_reasoning,
        resume=last if resume else None,
        history_file=paths.chat_home() / "history",
        autosave_file=last,
    )
    try:
        code = run(request)
    except BrokenPipeError:
        # the reader went away (infer chat ... | head): end quietly, and point stdout at
        # /dev/null so that Python's own flush at exit does not complain either
        _silence_stdout()
        code = 0
    if code:
        raise typer.Exit(code)


def _silence_stdout() -> None:
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
