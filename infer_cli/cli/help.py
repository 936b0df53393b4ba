"""Plain help: every value shown as a word in capitals (``URL``, ``N``, ``SECONDS``), never a
type name in angle brackets, and every argument named in capitals, as the usage lines of most
command-line tools read.

Commands give their own ``metavar`` where a word says more than the type; :func:`plain_help`
fills in the rest once, when the root command starts, so a new option cannot bring Typer's
internal ``<bool>`` / ``<str>`` / ``list[str]`` back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

# The word shown for a value of each type when the option does not name one itself.
_WORDS: dict[Any, str] = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}


def plain_help(command: Any) -> None:
    """Give every parameter under ``command`` (a click command or group) a plain metavar."""
    _plain_help_option(command)
    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument":
            # the argument's name says what it is: no type column beside it
            param.display_type_rich = _no_type
        if param.metavar is not None:
            continue
        if param.param_type_name == "argument":
            param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""  # a flag takes no value: show none
        else:
            param.metavar = _word(param)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


def _word(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    choices = getattr(descriptor, "choices", None) if descriptor is not None else None
    if choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in choices)
    args = get_args(annotation)
    if args:  # list[int], int | None
        annotation = next((arg for arg in args if arg is not type(None)), annotation)
    return _WORDS.get(annotation, "VALUE")


def _no_type(ctx: Any) -> None:
    return None


def _plain_help_option(command: Any) -> None:
    """``--help`` is made afresh for each command's context: show it without a value too."""
    original = getattr(command, "get_help_option", None)
    if original is None or getattr(original, "plain", False):
        return

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    get_help_option.plain = True  # type: ignore[attr-defined]
    command.get_help_option = get_help_option
