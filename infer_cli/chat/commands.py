"""Slash commands of ``infer chat``: parsing and what each one does to the session.

:func:`run` returns an :class:`Outcome` for the terminal to show; commands that need the terminal
(``/retry`` streams an answer, ``/exit`` leaves) come back as an action for it to carry out. A
mistake is an :class:`~infer_cli.errors.InferError`, shown as one line; the session goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from infer_cli.chat import conversation as files
from infer_cli.chat.session import ChatSession
from infer_cli.chat.stats import format_cost, median
from infer_cli.errors import InferError, UsageError


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    aliases: tuple[str, ...] = ()


COMMANDS = (
    Command("help", "/help", "list commands and keys", ("?",)),
    Command("system", "/system [TEXT | -]", "show, set, or (with -) remove the system prompt"),
    Command("model", "/model [NAME]", "show the model and those served, or switch model"),
    Command("set", "/set [PARAM VALUE]", "set a sampling parameter (/set temperature 0.2)"),
    Command("unset", "/unset PARAM", "remove a sampling parameter"),
    Command("clear", "/clear", "start a new conversation (keeps system prompt and parameters)"),
    Command("retry", "/retry", "ask the last question again, dropping its answer"),
    Command("save", "/save FILE", "save the conversation as JSON"),
    Command("load", "/load FILE", "load a conversation saved with /save"),
    Command("stats", "/stats", "figures of the last answer and of the whole session"),
    Command("reasoning", "/reasoning [on | off]", "show or hide the thinking of reasoning models"),
    Command("exit", "/exit", "leave (also Ctrl-D, or Ctrl-C at an empty prompt)", ("quit", "bye")),
)
KEYS = (
    ("Enter", "send"),
    ('Alt-Enter (Esc Enter), or a """ block', "new line in the message"),
    ("Up / Down, Ctrl-R", "history (kept across sessions)"),
    ("Ctrl-C", "stop the answer (it is kept, marked); at an empty prompt: leave"),
    ("Tab", "complete a slash command"),
    ("Ctrl-D", "leave"),
)
RESERVED = {
    "model": "use /model NAME",
    "messages": "the conversation is sent as messages",
    "stream": "use --no-stream when starting infer chat",
}
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_BY_NAME = {name: command for command in COMMANDS for name in (command.name, *command.aliases)}

Action = Literal["none", "retry", "exit", "help"]


@dataclass
class Outcome:
    message: str = ""
    rows: list[tuple[str, str]] = field(default_factory=list)
    action: Action = "none"


def is_command(line: str) -> bool:
    return line.startswith("/") and not line.startswith("//") and len(line.strip()) > 1


def split(line: str) -> tuple[str, str]:
    """``"/set top_p 0.9"`` -> ``("set", "top_p 0.9")``; raises for an unknown command."""
    head, _, rest = line.strip()[1:].partition(" ")
    name = head.lower()
    if name not in _BY_NAME:
        raise UsageError(f"unknown command /{head}", hint="/help lists the commands")
    return _BY_NAME[name].name, rest.strip()


async def run(session: ChatSession, line: str) -> Outcome:
    name, argument = split(line)
    handler = _HANDLERS[name]
    return await handler(session, argument)


# --- handlers ----------------------------------------------------------------------------------


async def _help(_session: ChatSession, _argument: str) -> Outcome:
    return Outcome(action="help")


async def _system(session: ChatSession, argument: str) -> Outcome:
    conversation = session.conversation
    if not argument:
        if conversation.system:
            return Outcome(f"system prompt: {conversation.system}")
        return Outcome("no system prompt (set one with /system TEXT)")
    if argument == "-":
        conversation.system = None
        return Outcome("system prompt removed")
    conversation.system = argument
    return Outcome("system prompt set")


async def _model(session: ChatSession, argument: str) -> Outcome:
    if argument:
        model = await session.choose_model(argument)
        return Outcome(f"now talking to {model}")
    served = await session.served_models()
    rows = [(name, "← current" if name == session.model else "") for name in served[:50]]
    if len(served) > 50:
        rows.append((f"… and {len(served) - 50} more", "see `infer models`"))
    return Outcome(f"model: {session.model}", rows=rows)


async def _set(session: ChatSession, argument: str) -> Outcome:
    params = session.conversation.params
    if not argument:
        if not params:
            return Outcome("no parameters set: the server's defaults apply (/set PARAM VALUE)")
        return Outcome("parameters:", rows=[(k, json.dumps(v)) for k, v in params.items()])
    name, _, raw = argument.partition(" ")
    raw = raw.strip()
    if not _PARAM.fullmatch(name):
        raise UsageError(f"not a parameter name: {name!r}", hint="e.g. /set temperature 0.2")
    if name in RESERVED:
        raise UsageError(f"{name} cannot be set here", hint=RESERVED[name])
    if not raw:
        raise UsageError(
            f"/set {name} needs a value", hint=f"e.g. /set {name} 0.5, or /unset {name}"
        )
    params[name] = checked(name, parse_value(raw), f"/set {name}")
    return Outcome(f"{name} = {json.dumps(params[name])}")


async def _unset(session: ChatSession, argument: str) -> Outcome:
    if not argument:
        raise UsageError("/unset needs a parameter name", hint="e.g. /unset temperature")
    if session.conversation.params.pop(argument, None) is None:
        raise UsageError(f"{argument} is not set", hint="/set shows what is set")
    return Outcome(f"{argument} removed (the server's default applies)")


async def _clear(session: ChatSession, _argument: str) -> Outcome:
    session.conversation.messages.clear()
    session.unanswered = None
    return Outcome("conversation cleared")


async def _retry(session: ChatSession, _argument: str) -> Outcome:
    has_question = session.unanswered is not None or any(
        message.role == "user" for message in session.conversation.messages
    )
    if not has_question:
        raise UsageError("nothing to retry yet")
    return Outcome(action="retry")


async def _save(session: ChatSession, argument: str) -> Outcome:
    if not argument:
        raise UsageError("/save needs a file name", hint="e.g. /save chat.json")
    path = files.save(session.conversation, Path(argument))
    return Outcome(f"saved {plural(len(session.conversation.messages), 'message')} to {path}")


async def _load(session: ChatSession, argument: str) -> Outcome:
    if not argument:
        raise UsageError("/load needs a file name", hint="e.g. /load chat.json")
    loaded = files.load(Path(argument))
    note = ""
    current = session.model
    if loaded.model and loaded.model != current:
        try:
            served = await session.served_models()
        except InferError:  # a listing we cannot read must not lose the loaded conversation
            served = []
        if loaded.model in served:
            note = f"; switched to its model {loaded.model}"
        else:
            note = f"; it was held with {loaded.model}, continuing with {current}"
            loaded.model = current
    else:
        loaded.model = current
    session.conversation = loaded
    session.unanswered = None
    count = len(loaded.messages)
    where = Path(argument).expanduser().resolve()
    return Outcome(
        f"loaded {plural(count, 'message')} ({plural(loaded.turns, 'turn')}) from {where}{note}"
    )


async def _stats(session: ChatSession, _argument: str) -> Outcome:
    totals = session.totals
    rows: list[tuple[str, str]] = [
        ("model", session.model),
        ("endpoint", session.client.endpoint.url),
        ("turns", str(session.conversation.turns)),
        ("answers", _answers(totals.answers, totals.interrupted, totals.errors)),
        ("prompt tokens", f"{totals.prompt_tokens} ({totals.cached_tokens} cached)"),
        ("completion tokens", str(totals.completion_tokens)),
    ]
    if totals.cache_hit_rate is not None:
        rows.append(("cached share of prompts", f"{totals.cache_hit_rate:.0%}"))
    ttft = median(totals.ttfts)
    if ttft is not None:
        rows.append(("median time to first token", f"{ttft:.3f} s"))
    rate = median(totals.decode_rates)
    if rate is not None:
        rows.append(("median tokens/s", f"{rate:.1f}"))
    if totals.cost is not None:
        rows.append(("cost", format_cost(totals.cost)))
    return Outcome("session:", rows=rows)


async def _reasoning(session: ChatSession, argument: str) -> Outcome:
    choice = argument.lower()
    if choice in ("on", "off"):
        session.show_reasoning = choice == "on"
    elif choice:
        raise UsageError(f"/reasoning takes on or off, not {argument!r}")
    shown = "shown" if session.show_reasoning else "hidden"
    return Outcome(f"the thinking of reasoning models is {shown}")


async def _exit(_session: ChatSession, _argument: str) -> Outcome:
    return Outcome(action="exit")


_HANDLERS = {
    "help": _help,
    "system": _system,
    "model": _model,
    "set": _set,
    "unset": _unset,
    "clear": _clear,
    "retry": _retry,
    "save": _save,
    "load": _load,
    "stats": _stats,
    "reasoning": _reasoning,
    "exit": _exit,
}


# --- helpers -----------------------------------------------------------------------------------


def parse_value(raw: str) -> Any:
    """A JSON literal (``0.2``, ``true``, ``["\\n"]``, ``null``), else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_option(text: str) -> tuple[str, Any]:
    """``-o key=value`` -> ``(key, value)`` with the value read like ``/set``'s."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not _PARAM.fullmatch(name):
        raise UsageError(
            f"bad option {text!r}", hint="use --option key=value, e.g. --option temperature=0.2"
        )
    if name in RESERVED:
        raise UsageError(f"{name} cannot be set with --option", hint=RESERVED[name])
    return name, checked(name, parse_value(raw.strip()), f"--option {name}")


# The sampling parameters whose type is known: a wrong one is refused at once, not at the next send.
_NUMBERS = {"temperature", "top_p", "min_p", "top_a", "frequency_penalty", "presence_penalty",
            "repetition_penalty", "length_penalty"}  # fmt: skip
_WHOLE = {"max_tokens", "max_completion_tokens", "top_k", "seed", "n", "top_logprobs", "min_tokens"}
_FLAGS = {"logprobs", "ignore_eos", "skip_special_tokens", "include_stop_str_in_output"}


def checked(name: str, value: Any, where: str) -> Any:
    """``value`` if it has the type ``name`` takes (unknown parameters pass as they are)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in _NUMBERS and not number:
        raise UsageError(
            f"{where}: {name} must be a number, not {value!r}", hint=f"e.g. {where} 0.7"
        )
    if name in _WHOLE and not (number and float(value).is_integer()):
        raise UsageError(
            f"{where}: {name} must be a whole number, not {value!r}", hint=f"e.g. {where} 256"
        )
    if name in _FLAGS and not isinstance(value, bool):
        raise UsageError(
            f"{where}: {name} must be true or false, not {value!r}", hint=f"e.g. {where} true"
        )
    return int(value) if name in _WHOLE else value


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def _answers(answers: int, interrupted: int, errors: int) -> str:
    extra = [f"{interrupted} interrupted"] * bool(interrupted) + [f"{errors} failed"] * bool(errors)
    return f"{answers}" + (f" ({', '.join(extra)})" if extra else "")
