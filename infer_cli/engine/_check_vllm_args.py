"""Ask vLLM's own parser whether a ``vllm serve`` command line is valid, without starting anything.

Run by the ENGINE environment's python (the one ``vllm`` runs with), never imported by infer::

    python -I _check_vllm_args.py [--check-model] -- [serve] MODEL --flag value ...

1. parse the argv with the parser ``vllm serve`` builds (``make_arg_parser`` on a
   ``FlexibleArgumentParser``): an unknown flag or a bad value is argparse's ``SystemExit(2)``;
2. copy ``model_tag`` into ``model`` and run ``validate_parsed_serve_args`` (rules across flags);
3. with ``--check-model``: ``AsyncEngineArgs.from_cli_args(args).create_engine_config()``, which
   reads the model's config.json (a too long ``--max-model-len``, ...).

The verdict is one JSON object on the last line of stdout:
``{"ok": bool, "message": str, "stage": "parse|validate|config|import", ...}``.
Exit code: 0 valid, 1 invalid, 2 the check itself could not run (e.g. vLLM does not import).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import sys
import time
from types import ModuleType
from typing import Any

# Where vLLM keeps its serve parser: 0.32 first, then older layouts (GPU machines may differ).
_PARSER_MODULES = ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args")
_ARGPARSE_MODULES = ("vllm.utils.argparse_utils", "vllm.utils")


def _first(modules: tuple[str, ...], attribute: str) -> Any:
    errors = []
    for name in modules:
        try:
            module: ModuleType = importlib.import_module(name)
        except ImportError as error:
            errors.append(f"{name}: {error}")
            continue
        if hasattr(module, attribute):
            return getattr(module, attribute)
        errors.append(f"{name} has no {attribute}")
    raise ImportError(f"cannot find vLLM's {attribute} ({'; '.join(errors)})")


def _one_line(text: str, limit: int = 300) -> str:
    """One readable line from an exception text (pydantic's are several lines with decorations)."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    line = re.sub(r"\s*\[type=[^\]]*\]|\s*For further information visit \S+", "", line)
    line = re.sub(r"^\d+ validation errors? for \w+\s*", "", line)
    line = re.sub(r"^(Value|Assertion) error, ", "", line)
    if len(line) <= limit:
        return line
    cut = line.rfind(". ", 0, limit)  # end at a sentence when one ends early enough
    return line[: cut + 1] if cut > limit // 3 else line[: limit - 3] + "..."


def _argparse_message(stderr: str) -> str:
    """argparse prints its usage, then ``PROG: error: MESSAGE``; keep the message."""
    found = re.findall(r"^[^\n]*?: error: (.*)$", stderr, flags=re.MULTILINE)
    return found[-1].strip() if found else _one_line(stderr) or "invalid arguments"


def check(serve_args: list[str], check_model: bool) -> dict[str, Any]:
    verdict: dict[str, Any] = {"ok": False, "stage": "import"}
    try:
        vllm = importlib.import_module("vllm")
        verdict["vllm_version"] = getattr(vllm, "__version__", None)
        parser_class = _first(_ARGPARSE_MODULES, "FlexibleArgumentParser")
        make_arg_parser = _first(_PARSER_MODULES, "make_arg_parser")
        validate_parsed_serve_args = _first(_PARSER_MODULES, "validate_parsed_serve_args")
    except Exception as error:
        verdict["message"] = f"cannot import vLLM's parser: {_one_line(str(error))}"
        return verdict

    # the same shape as the `vllm` command: a top parser with a `serve` sub-command
    verdict["stage"] = "parse"
    top = parser_class(prog="vllm", description="vLLM CLI")
    subparsers = top.add_subparsers(required=False, dest="subparser")
    make_arg_parser(
        subparsers.add_parser("serve", prog="vllm serve", usage="vllm serve [model_tag] [options]")
    )
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            args = top.parse_args(["serve", *serve_args])
    except SystemExit as exit_:
        if exit_.code in (0, None):
            verdict["message"] = "the command line asks for help or the version, not to serve"
        else:
            verdict["message"] = _argparse_message(captured.getvalue())
        return verdict
    except Exception as error:  # FlexibleArgumentParser raises ValueError for some layouts
        verdict["message"] = _one_line(str(error)) or type(error).__name__
        return verdict
    if getattr(args, "model_tag", None) is not None:
        args.model = args.model_tag
    verdict["model"] = getattr(args, "model", None)

    verdict["stage"] = "validate"
    try:
        validate_parsed_serve_args(args)
    except Exception as error:
        verdict["message"] = _one_line(str(error)) or type(error).__name__
        return verdict

    checked = "parsed and validated"
    if check_model:
        verdict["stage"] = "config"
        try:
            engine_args_class = _first(("vllm.engine.arg_utils",), "AsyncEngineArgs")
            config = engine_args_class.from_cli_args(args).create_engine_config()
        except Exception as error:
            verdict["message"] = _one_line(str(error)) or type(error).__name__
            return verdict
        model_config = getattr(config, "model_config", None)
        verdict["max_model_len"] = getattr(model_config, "max_model_len", None)
        checked += f"; engine config built (max_model_len {verdict['max_model_len']})"
    verdict["ok"] = True
    verdict["message"] = f"vLLM {verdict.get('vllm_version') or '?'}: {checked}"
    return verdict


def main(argv: list[str]) -> int:
    started = time.monotonic()
    check_model = False
    while argv and argv[0] != "--":
        option = argv.pop(0)
        if option == "--check-model":
            check_model = True
        else:
            print(f"unknown option {option}", file=sys.stderr)
            return 2
    serve_args = argv[1:] if argv else []
    if serve_args[:1] == ["serve"]:
        serve_args = serve_args[1:]
    verdict = check(serve_args, check_model)
    verdict["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(verdict), flush=True)
    if verdict["ok"]:
        return 0
    return 2 if verdict["stage"] == "import" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
