"""Ask vllm-router's own parser whether a ``vllm-router`` command line is valid; starts nothing.

Run by the Python that runs ``vllm-router`` (never imported by infer)::

    python -I _check_router_args.py -- --host ... --worker-urls ... --policy ...

It parses the argv with the launcher's ``parse_router_args`` (an unknown flag or a bad value is
argparse's ``SystemExit(2)``), then runs the router's own cross-flag rules
(``RouterArgs._validate_router_args``). The verdict is one JSON object on the last line of stdout,
``{"ok": bool, "message": str, "stage": "parse|validate|import"}``; exit code 0 valid, 1 invalid,
2 the check could not run.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def _say(ok: bool, message: str, stage: str) -> int:
    print(json.dumps({"ok": ok, "message": message, "stage": stage}))
    return 0 if ok else (2 if stage == "import" else 1)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        from vllm_router.launch_router import parse_router_args  # type: ignore[import-not-found]
    except Exception as error:  # any import failure means the check cannot run
        return _say(False, f"cannot import vllm_router: {error}", "import")
    errors = io.StringIO()
    sys.argv[0] = "vllm-router"  # argparse names the program in its errors
    try:
        with contextlib.redirect_stderr(errors):
            parsed = parse_router_args(argv)
    except SystemExit:
        lines = [line for line in errors.getvalue().splitlines() if line.strip()]
        return _say(False, lines[-1] if lines else "vllm-router's parser refused", "parse")
    validate = getattr(parsed, "_validate_router_args", None)
    if validate is not None:
        try:
            validate()
        except ValueError as error:
            return _say(False, str(error), "validate")
    return _say(True, f"{len(argv)} arguments", "validate")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
