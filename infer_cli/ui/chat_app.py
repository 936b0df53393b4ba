"""``infer chat`` at the terminal: one question (``infer chat "..."``, piped input) or the
interactive loop. The session (``infer_cli.chat``) holds the state; this module reads keys, wires
Ctrl-C to :meth:`~infer_cli.chat.session.ChatSession.interrupt` and draws.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from infer_cli.chat import commands
from infer_cli.chat import conversation as files
from infer_cli.chat.conversation import Conversation
from infer_cli.chat.session import ChatSession, Reply, TextCallback
from infer_cli.client.api import Client
from infer_cli.errors import EXIT_INTERRUPTED, InferError, ModelNotFoundError
from infer_cli.ui.chat_screen import ChatView, print_answer, print_reasoning
from infer_cli.ui.chat_view import AnswerStream, PlainStream, chat_console

Ask = Callable[[TextCallback, TextCallback], Awaitable[Reply]]
"""Asks for one answer, given where its text and its thinking go."""


@dataclass
class ChatRequest:
    url: str
    api_key: str | None = None
    model: str | None = None
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    question: str | None = None
    """One question and leave; None: the interactive loop."""
    stream: bool = True
    json_output: bool = False
    raw: bool = False
    hide_reasoning: bool = False
    """Do not show the thinking of reasoning models (``/reasoning on`` shows it again)."""
    resume: Path | None = None
    """A conversation to go on with (``--continue`` gives the last one)."""
    history_file: Path | None = None
    autosave_file: Path | None = None


def run(request: ChatRequest) -> int:
    """The exit code: 0, 1 (the answer failed), 130 (interrupted)."""
    return asyncio.run(_main(request))


async def _main(request: ChatRequest) -> int:
    async with Client(request.url, request.api_key) as client:
        session = ChatSession(client, _starting_conversation(request))
        session.show_reasoning = not request.hide_reasoning
        await _choose_model(session, request)
        if request.question is None:
            return await _interactive(session, request)
        try:
            return await _once(session, request)
        finally:
            _autosave(session, request)


def _starting_conversation(request: ChatRequest) -> Conversation:
    conversation = files.load(request.resume) if request.resume else Conversation()
    if request.system is not None:
        conversation.system = request.system or None
    conversation.params.update(request.params)
    return conversation


async def _choose_model(session: ChatSession, request: ChatRequest) -> None:
    check = session.client.endpoint.loopback or request.model is None
    if request.model:
        await session.choose_model(request.model, check=check)
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


async def _once(session: ChatSession, request: ChatRequest) -> int:
    assert request.question is not None
    out = sys.stdout
    terminal = out.isatty()
    if request.json_output:
        reply = await session.ask(request.question, stream=False)
        if reply.error is not None:
            raise reply.error
        out.write(json.dumps(reply.response, indent=2, ensure_ascii=False) + "\n")
        out.flush()
        return 0
    markdown = terminal and not request.raw
    console = chat_console()
    view = ChatView(console, markdown=markdown)
    notes = out if terminal else sys.stderr
    shown = session.show_reasoning
    if request.stream:
        stream = (
            view.answer_stream(reasoning=shown)
            if markdown
            else PlainStream(out, notes, reasoning=shown)
        )
        reply = await _answer(session, stream, _asking(session, request.question))
    else:
        thinking = _reasoning_printer(chat_console(notes), shown=shown)
        asking = session.ask(request.question, stream=False, on_reasoning=thinking)
        reply = await _interruptible(session, asking)
        if reply.text:
            print_answer(console, reply.text, markdown=markdown)
    if terminal:
        ChatView(chat_console(sys.stderr)).stats(reply.stats)
    if reply.error is not None:
        raise reply.error
    return EXIT_INTERRUPTED if reply.interrupted else 0


# --- the interactive loop ----------------------------------------------------------------------


async def _interactive(session: ChatSession, request: ChatRequest) -> int:
    from infer_cli.ui.chat_input import ChatInput

    console = chat_console()
    view = ChatView(console, markdown=not request.raw)
    assert request.history_file is not None
    prompt = ChatInput(request.history_file)
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
                if not await _command(session, view, request, text):
                    return 0
                continue
            await _turn(session, view, request, _asking(session, text))
    finally:
        view.goodbye(_autosave(session, request))


async def _command(session: ChatSession, view: ChatView, request: ChatRequest, text: str) -> bool:
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
        await _turn(session, view, request, _retrying(session))
    else:
        view.outcome(outcome)
    return True


async def _turn(session: ChatSession, view: ChatView, request: ChatRequest, ask: Ask) -> None:
    shown = session.show_reasoning
    if request.stream:
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
    _autosave(session, request)


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


def _autosave(session: ChatSession, request: ChatRequest) -> str | None:
    """Keep the conversation for ``infer chat --continue``; never fails the chat."""
    path = request.autosave_file
    if path is None or not session.conversation.messages:
        return None
    try:
        return str(files.save(session.conversation, path))
    except InferError:
        return None
