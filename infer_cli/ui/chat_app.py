"""``infer chat`` at the terminal: one question (``infer chat "..."``, piped input) or the
interactive loop. The command opens the client and makes the session (``infer_cli.chat``), which
holds the state; this module reads keys, wires Ctrl-C to
:meth:`~infer_cli.chat.session.ChatSession.interrupt` and draws.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from infer_cli.chat import commands
from infer_cli.chat import conversation as files
from infer_cli.chat.session import ChatSession, Reply, TextCallback
from infer_cli.errors import EXIT_INTERRUPTED, InferError, ModelNotFoundError
from infer_cli.ui.chat_screen import ChatView, print_answer, print_reasoning
from infer_cli.ui.chat_view import AnswerStream, PlainStream, chat_console

Ask = Callable[[TextCallback, TextCallback], Awaitable[Reply]]
"""Asks for one answer, given where its text and its thinking go."""


@dataclass
class ChatOptions:
    """How the terminal chat runs (the endpoint, key and conversation are the session's)."""

    model: str | None = None
    question: str | None = None
    """One question and leave; None: the interactive loop."""
    stream: bool = True
    json_output: bool = False
    raw: bool = False
    history_file: Path | None = None
    autosave_file: Path | None = None


async def run(session: ChatSession, options: ChatOptions) -> int:
    """Choose the model, then answer the one question or run the loop. The exit code: 0, 1 (the
    answer failed) or :data:`~infer_cli.errors.EXIT_INTERRUPTED` (Ctrl-C)."""
    await _choose_model(session, options)
    if options.question is None:
        return await _interactive(session, options)
    try:
        return await _once(session, options)
    finally:
        _autosave(session, options)


async def _choose_model(session: ChatSession, options: ChatOptions) -> None:
    check = session.client.endpoint.loopback or options.model is None
    if options.model:
        await session.choose_model(options.model, check=check)
        return
    saved = session.conversation.model
    if saved:
        try:
            await session.choose_model(saved)
            return
        except ModelNotFoundError:
            pass
    await session.choose_model(None)


# --- one question ------------------------------------------------------------------------------


async def _once(session: ChatSession, options: ChatOptions) -> int:
    assert options.question is not None
    out = sys.stdout
    terminal = out.isatty()
    if options.json_output:
        reply = await session.ask(options.question, stream=False)
        if reply.error is not None:
            raise reply.error
        out.write(json.dumps(reply.response, indent=2, ensure_ascii=False) + "\n")
        out.flush()
        return 0
    markdown = terminal and not options.raw
    console = chat_console()
    view = ChatView(console, markdown=markdown)
    notes = out if terminal else sys.stderr
    shown = session.show_reasoning
    if options.stream:
        stream = (
            view.answer_stream(reasoning=shown)
            if markdown
            else PlainStream(out, notes, reasoning=shown)
        )
        reply = await _answer(session, stream, _asking(session, options.question))
    else:
        thinking = _reasoning_printer(chat_console(notes), shown=shown)
        asking = session.ask(options.question, stream=False, on_reasoning=thinking)
        reply = await _interruptible(session, asking)
        if reply.text:
            print_answer(console, reply.text, markdown=markdown)
    if terminal:
        ChatView(chat_console(sys.stderr)).stats(reply.stats)
    if reply.error is not None:
        raise reply.error
    return EXIT_INTERRUPTED if reply.interrupted else 0


# --- the interactive loop ----------------------------------------------------------------------


async def _interactive(session: ChatSession, options: ChatOptions) -> int:
    from infer_cli.ui.chat_input import ChatInput

    console = chat_console()
    view = ChatView(console, markdown=not options.raw)
    assert options.history_file is not None
    prompt = ChatInput(options.history_file)
    view.banner(session)
    try:
        while True:
            try:
                text = await prompt.read()
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED  # left with Ctrl-C, as a shell reports it
            except EOFError:
                return 0
            if not text.strip():
                continue
            if commands.is_command(text):
                if not await _command(session, view, options, text):
                    return 0
                continue
            await _turn(session, view, options, _asking(session, text))
    finally:
        view.goodbye(_autosave(session, options))


async def _command(session: ChatSession, view: ChatView, options: ChatOptions, text: str) -> bool:
    """Carry out a slash command; False to leave."""
    try:
        outcome = await commands.run(session, text)
    except InferError as error:
        view.error(error)
        return True
    if outcome.action == "exit":
        return False
    if outcome.action == "help":
        view.help()
    elif outcome.action == "retry":
        await _turn(session, view, options, _retrying(session))
    else:
        view.outcome(outcome)
    return True


async def _turn(session: ChatSession, view: ChatView, options: ChatOptions, ask: Ask) -> None:
    shown = session.show_reasoning
    if options.stream:
        reply = await _answer(session, view.answer_stream(reasoning=shown), ask)
    else:
        thinking = _reasoning_printer(view.console, shown=shown)
        reply = await _interruptible(session, ask(lambda _piece: None, thinking))
        if reply.text:
            print_answer(view.console, reply.text, markdown=view.markdown)
    if reply.error is not None:
        view.error(reply.error, partial=reply.started)
    if not reply.started and (reply.error is not None or reply.interrupted):
        view.unanswered()
    view.stats(reply.stats)
    _autosave(session, options)


def _asking(session: ChatSession, text: str) -> Ask:
    def ask(on_text: TextCallback, on_reasoning: TextCallback) -> Awaitable[Reply]:
        return session.ask(text, on_text, on_reasoning=on_reasoning)

    return ask


def _retrying(session: ChatSession) -> Ask:
    def ask(on_text: TextCallback, on_reasoning: TextCallback) -> Awaitable[Reply]:
        return session.retry(on_text, on_reasoning=on_reasoning)

    return ask


def _reasoning_printer(console: Console, *, shown: bool) -> TextCallback:
    """Where the thinking of a whole (not streamed) answer goes: printed at once, or nowhere."""

    def show(text: str) -> None:
        if shown:
            print_reasoning(console, text)

    return show


# --- plumbing ----------------------------------------------------------------------------------


async def _answer(session: ChatSession, stream: AnswerStream, ask: Ask) -> Reply:
    """Stream one answer into ``stream``; Ctrl-C interrupts it (the partial answer is kept)."""
    stream.start()
    interrupted = False
    try:
        with _ctrl_c_interrupts(session):
            reply = await ask(stream.append, stream.append_reasoning)
        interrupted = reply.interrupted
    finally:
        stream.finish(interrupted=interrupted)
    return reply


async def _interruptible(session: ChatSession, waiting: Awaitable[Reply]) -> Reply:
    with _ctrl_c_interrupts(session):
        return await waiting


@contextmanager
def _ctrl_c_interrupts(session: ChatSession) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, session.interrupt)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _autosave(session: ChatSession, options: ChatOptions) -> str | None:
    """Keep the conversation for ``infer chat --continue``; never fails the chat."""
    path = options.autosave_file
    if path is None or not session.conversation.messages:
        return None
    try:
        return str(files.save(session.conversation, path))
    except InferError:
        return None
