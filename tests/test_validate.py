"""vLLM's verdict on a command line: finding vLLM's Python, the checker script, the real thing.

The checker script runs here against a small fake ``vllm`` package (the same module and function
names as vLLM 0.32), and ``validate_vllm_args`` against a fake engine Python; the e2e tests at the
end ask the real vLLM in the shared engine environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from infer_cli.engine import environment, models, validate
from infer_cli.engine.validate import Verdict
from infer_cli.errors import EngineError
from tests.conftest import SHARED_ENGINE_HOME, SHARED_MODELS_HOME


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(mode)
    return path


# --- which Python runs vllm ---------------------------------------------------------------------


def test_engine_python_in_a_venv_is_the_one_next_to_vllm(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    write(venv / "pyvenv.cfg", "version = 3.11.7\n")
    python = write(venv / "bin" / "python", "", 0o755)
    vllm = write(venv / "bin" / "vllm", "#!/somewhere/else/python3\n", 0o755)
    assert validate.engine_python(vllm) == python


def test_engine_python_from_the_shebang(tmp_path: Path) -> None:
    python = write(tmp_path / "opt" / "py" / "bin" / "python3.11", "", 0o755)
    vllm = write(tmp_path / "usr" / "bin" / "vllm", f"#!{python}\nimport sys\n", 0o755)
    assert validate.engine_python(vllm) == python


def test_engine_python_from_pips_long_path_trampoline(tmp_path: Path) -> None:
    python = write(tmp_path / ("long" * 40) / "bin" / "python", "", 0o755)
    vllm = write(
        tmp_path / "bin" / "vllm",
        f"""
        #!/bin/sh
        '''exec' "{python}" "$0" "$@"
        ' '''
        import sys
        """,
        0o755,
    )
    assert validate.engine_python(vllm) == python


def test_engine_python_through_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = write(tmp_path / "path" / "python3", "", 0o755)
    monkeypatch.setenv("PATH", str(python.parent))
    vllm = write(tmp_path / "bin" / "vllm", "#!/usr/bin/env python3\n", 0o755)
    assert validate.engine_python(vllm) == python


def test_engine_python_of_a_symlinked_vllm(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    write(venv / "pyvenv.cfg", "version = 3.11.7\n")
    python = write(venv / "bin" / "python", "", 0o755)
    real = write(venv / "bin" / "vllm", "#!/bin/false\n", 0o755)
    link = tmp_path / "local" / "bin" / "vllm"
    link.parent.mkdir(parents=True)
    os.symlink(real, link)
    assert validate.engine_python(link) == python


def test_engine_python_unknown(tmp_path: Path) -> None:
    vllm = write(tmp_path / "bin" / "vllm", "\x7fELF binary", 0o755)
    with pytest.raises(EngineError, match="cannot tell which Python runs"):
        validate.engine_python(vllm)


# --- validate_vllm_args against a fake engine Python --------------------------------------------

FAKE_CHECK_PYTHON = """
import json, os, sys
args = sys.argv[1:]
mode = os.environ.get("FAKE_VERDICT", "ok")
seen = {"script": args[1], "rest": args[2:], "logging": os.environ.get("VLLM_CONFIGURE_LOGGING")}
print("INFO some vLLM log line on stdout")
if mode == "ok":
    print(json.dumps({"ok": True, "stage": "parse", "message": json.dumps(seen), "seconds": 1.5}))
elif mode == "bad":
    print(json.dumps({"ok": False, "stage": "parse", "message": "unrecognized arguments: --x"}))
    sys.exit(1)
elif mode == "import":
    print(json.dumps({"ok": False, "stage": "import", "message": "cannot import vLLM's parser"}))
    sys.exit(2)
else:
    print("Traceback ...\\nSegmentation fault", file=sys.stderr)
    sys.exit(139)
"""


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    write(venv / "pyvenv.cfg", "version = 3.11.7\n")
    write(venv / "bin" / "python", f"#!{sys.executable}\n" + FAKE_CHECK_PYTHON, 0o755)
    return write(venv / "bin" / "vllm", f"#!{venv / 'bin' / 'python'}\n", 0o755)


def test_a_valid_verdict_and_what_the_checker_receives(fake_vllm: Path) -> None:
    verdict = validate.validate_vllm_args(
        fake_vllm, ["serve", "/m", "--port", "1"], check_model=True
    )
    assert verdict.ok
    assert verdict.stage == "parse"
    assert verdict.seconds == 1.5
    seen = json.loads(verdict.message)
    assert seen["script"] == str(validate.CHECKER)
    assert seen["rest"] == ["--check-model", "--", "serve", "/m", "--port", "1"]
    assert seen["logging"] == "0"  # vLLM's logs must not bury the verdict


def test_an_invalid_verdict(fake_vllm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VERDICT", "bad")
    verdict = validate.validate_vllm_args(fake_vllm, ["/m", "--x"], check_model=False)
    assert verdict == Verdict(ok=False, message="unrecognized arguments: --x", stage="parse")


@pytest.mark.parametrize("mode", ["import", "crash"])
def test_a_check_that_cannot_run_is_an_error_not_a_verdict(
    fake_vllm: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("FAKE_VERDICT", mode)
    with pytest.raises(EngineError) as caught:
        validate.validate_vllm_args(fake_vllm, ["/m"], check_model=False)
    assert "vLLM's argument check failed to run" in caught.value.message
    expected = "cannot import vLLM's parser" if mode == "import" else "Segmentation fault"
    assert expected in caught.value.message


# --- the checker script against a fake vllm package ---------------------------------------------

FAKE_VLLM_PACKAGE = {
    "vllm/__init__.py": '__version__ = "0.32.0-fake"\n',
    "vllm/utils/__init__.py": "",
    "vllm/utils/argparse_utils.py": (
        "from argparse import ArgumentParser as FlexibleArgumentParser\n"
    ),
    "vllm/entrypoints/__init__.py": "",
    "vllm/entrypoints/launchers/__init__.py": "",
    "vllm/entrypoints/launchers/cli_args.py": """
        def make_arg_parser(parser):
            parser.add_argument("model_tag", nargs="?")
            parser.add_argument("--model", default="Qwen/Qwen3-0.6B")
            parser.add_argument("--max-model-len", type=int)
            parser.add_argument("--enable-auto-tool-choice", action="store_true")
            parser.add_argument("--tool-call-parser")
            return parser

        def validate_parsed_serve_args(args):
            if args.enable_auto_tool_choice and not args.tool_call_parser:
                raise TypeError("Error: --enable-auto-tool-choice requires --tool-call-parser")
        """,
    "vllm/engine/__init__.py": "",
    "vllm/engine/arg_utils.py": """
        class _ModelConfig:
            def __init__(self, max_model_len):
                self.max_model_len = max_model_len

        class _Config:
            def __init__(self, max_model_len):
                self.model_config = _ModelConfig(max_model_len)

        class AsyncEngineArgs:
            def __init__(self, args):
                self.args = args

            @classmethod
            def from_cli_args(cls, args):
                assert args.model == args.model_tag, "model_tag must be copied into model"
                return cls(args)

            def create_engine_config(self):
                wanted = self.args.max_model_len or 8192
                if wanted > 8192:
                    raise ValueError(
                        "1 validation error for ModelConfig\\n"
                        f"  Value error, User-specified max_model_len ({wanted}) is greater than "
                        "the derived max_model_len (8192). [type=value_error, input_value=x]\\n"
                        "    For further information visit https://errors.pydantic.dev/2/v/value_error"
                    )
                return _Config(wanted)
        """,
}


def run_checker(tmp_path: Path, *args: str, package: bool = True) -> tuple[int, dict[str, object]]:
    root = tmp_path / "fake-vllm"
    if package:
        for relative, text in FAKE_VLLM_PACKAGE.items():
            write(root / relative, text)
    root.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, str(validate.CHECKER), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_checker_accepts_a_valid_command_line(tmp_path: Path) -> None:
    code, verdict = run_checker(
        tmp_path, "--check-model", "--", "serve", "/models/x", "--max-model-len", "4096"
    )
    assert code == 0
    assert verdict["ok"] is True
    assert verdict["stage"] == "config"
    assert verdict["model"] == "/models/x"
    assert verdict["max_model_len"] == 4096
    assert verdict["message"] == (
        "vLLM 0.32.0-fake: parsed and validated; engine config built (max_model_len 4096)"
    )


def test_checker_reports_argparse_errors_in_one_line(tmp_path: Path) -> None:
    code, verdict = run_checker(tmp_path, "--", "serve", "/m", "--no-such-flag", "1")
    assert code == 1
    assert verdict["stage"] == "parse"
    assert verdict["message"] == "unrecognized arguments: --no-such-flag 1"

    code, verdict = run_checker(tmp_path, "--", "/m", "--max-model-len", "lots")
    assert code == 1
    assert verdict["message"] == "argument --max-model-len: invalid int value: 'lots'"


def test_checker_runs_the_cross_flag_rules(tmp_path: Path) -> None:
    code, verdict = run_checker(tmp_path, "--", "serve", "/m", "--enable-auto-tool-choice")
    assert code == 1
    assert verdict["stage"] == "validate"
    assert verdict["message"] == "Error: --enable-auto-tool-choice requires --tool-call-parser"


def test_checker_builds_the_engine_config_only_when_asked(tmp_path: Path) -> None:
    code, verdict = run_checker(tmp_path, "--", "/m", "--max-model-len", "999999")
    assert code == 0
    assert verdict["message"] == "vLLM 0.32.0-fake: parsed and validated"

    code, verdict = run_checker(tmp_path, "--check-model", "--", "/m", "--max-model-len", "999999")
    assert code == 1
    assert verdict["stage"] == "config"
    assert verdict["message"] == (
        "User-specified max_model_len (999999) is greater than the derived max_model_len (8192)."
    )


def test_checker_without_vllm_exits_2(tmp_path: Path) -> None:
    code, verdict = run_checker(tmp_path, "--", "/m", package=False)
    assert code == 2
    assert verdict["stage"] == "import"
    assert str(verdict["message"]).startswith("cannot import vLLM's parser")


# --- vllm-router's checker, against a fake vllm_router package ----------------------------------

FAKE_ROUTER_PACKAGE = {
    "vllm_router/__init__.py": "",
    "vllm_router/launch_router.py": """
        import argparse

        class _Args:
            def __init__(self, namespace):
                self.__dict__.update(vars(namespace))

            def _validate_router_args(self):
                if self.vllm_pd_disaggregation and not self.prefill:
                    raise ValueError("PD disaggregation mode requires --prefill")

        def parse_router_args(args):
            parser = argparse.ArgumentParser()
            parser.add_argument("--host")
            parser.add_argument("--port", type=int)
            parser.add_argument("--worker-urls", nargs="*", default=[])
            parser.add_argument("--policy", choices=["cache_aware", "round_robin"])
            parser.add_argument("--vllm-pd-disaggregation", action="store_true")
            parser.add_argument("--prefill", nargs="+")
            return _Args(parser.parse_args(args))
        """,
}


def run_router_checker(
    tmp_path: Path, *args: str, package: bool = True
) -> tuple[int, dict[str, object]]:
    root = tmp_path / "fake-router"
    if package:
        for relative, text in FAKE_ROUTER_PACKAGE.items():
            write(root / relative, text)
    root.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, str(validate.ROUTER_CHECKER), "--", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_router_checker_accepts_valid_flags(tmp_path: Path) -> None:
    code, verdict = run_router_checker(
        tmp_path,
        "--port",
        "1",
        "--worker-urls",
        "http://a:1",
        "http://b:2",
        "--policy",
        "round_robin",
    )
    assert (code, verdict["ok"], verdict["stage"]) == (0, True, "validate")


def test_router_checker_reports_parse_and_rule_errors_in_one_line(tmp_path: Path) -> None:
    code, verdict = run_router_checker(tmp_path, "--policy", "fastest")
    assert (code, verdict["stage"]) == (1, "parse")
    message = str(verdict["message"])
    assert message.startswith("vllm-router: error: argument --policy: invalid choice: 'fastest'")
    code, verdict = run_router_checker(tmp_path, "--vllm-pd-disaggregation")
    assert (code, verdict["stage"]) == (1, "validate")
    assert verdict["message"] == "PD disaggregation mode requires --prefill"


def test_router_checker_without_the_router_exits_2(tmp_path: Path) -> None:
    code, verdict = run_router_checker(tmp_path, "--port", "1", package=False)
    assert (code, verdict["stage"]) == (2, "import")
    with pytest.raises(EngineError) as caught:
        fake_python = write(tmp_path / "venv" / "bin" / "python", f"#!{sys.executable}\n", 0o755)
        write(tmp_path / "venv" / "pyvenv.cfg", "version = 3.11.7\n")
        router = write(tmp_path / "venv" / "bin" / "vllm-router", f"#!{fake_python}\n", 0o755)
        validate.validate_router_args(router, ["--port", "1"])
    assert "vllm-router's argument check failed to run" in caught.value.message


# --- the real vLLM (e2e) ------------------------------------------------------------------------


@pytest.fixture
def real_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """The shared engine environment and model; built by CI before the e2e tests run."""
    monkeypatch.setenv("INFER_ENGINE_HOME", str(SHARED_ENGINE_HOME))
    monkeypatch.setenv("INFER_MODELS_HOME", str(SHARED_MODELS_HOME))
    if not environment.is_ready():  # built (or completed) the way tests/e2e builds it
        from infer_cli.engine import build

        build.install(with_lmcache=True)
    model = models.prepare("smollm2-135m-instruct")
    yield environment.find_vllm("auto"), model


CPU_FLAGS = ["--max-model-len", "4096", "--kv-cache-memory-bytes", "1073741824", "--enforce-eager"]


@pytest.mark.e2e
def test_real_vllm_accepts_the_cpu_command_line(real_vllm: tuple[Path, Path]) -> None:
    vllm, model = real_vllm
    verdict = validate.validate_vllm_args(vllm, ["serve", str(model), *CPU_FLAGS], check_model=True)
    assert verdict.ok, verdict.message
    assert verdict.stage == "config"
    assert "max_model_len 4096" in verdict.message


@pytest.mark.e2e
def test_real_vllm_rejects_an_unknown_flag(real_vllm: tuple[Path, Path]) -> None:
    vllm, model = real_vllm
    verdict = validate.validate_vllm_args(
        vllm, ["serve", str(model), *CPU_FLAGS, "--no-such-flag"], check_model=False
    )
    assert not verdict.ok
    assert verdict.stage == "parse"
    assert verdict.message == "unrecognized arguments: --no-such-flag"


@pytest.mark.e2e
def test_real_vllm_rejects_a_context_longer_than_the_model(real_vllm: tuple[Path, Path]) -> None:
    vllm, model = real_vllm
    argv = ["serve", str(model), "--max-model-len", "999999", "--kv-cache-memory-bytes", "1G"]
    verdict = validate.validate_vllm_args(vllm, argv, check_model=True)
    assert not verdict.ok
    assert verdict.stage == "config"
    assert "max_model_len (999999)" in verdict.message
    assert "\n" not in verdict.message


@pytest.mark.e2e
def test_real_router_accepts_its_flags_and_refuses_a_bad_one(real_vllm: tuple[Path, Path]) -> None:
    router = environment.find_router("auto")
    good = ["--host", "127.0.0.1", "--port", "1", "--worker-urls", "http://127.0.0.1:2",
            "--policy", "cache_aware", "--health-check-interval-secs", "5"]  # fmt: skip
    assert validate.validate_router_args(router, good).ok
    verdict = validate.validate_router_args(router, [*good, "--policy", "fastest"])
    assert not verdict.ok and verdict.stage == "parse" and "fastest" in verdict.message


@pytest.mark.e2e
def test_validate_engine_on_cpu_2x_checks_the_replicas_and_the_router(
    real_vllm: tuple[Path, Path],
) -> None:
    from infer_cli.config import loader
    from infer_cli.serve import validate_with_engine

    verdict = validate_with_engine(loader.load("cpu-2x", environ={}))
    assert verdict.ok, verdict.message
    assert "the same for all 2 replicas" in verdict.message
    assert verdict.message.endswith("vllm-router accepts its flags")

    bad = loader.load("cpu-2x", environ={}, overrides=["replicas.router_extra_args=['--nope']"])
    verdict = validate_with_engine(bad)
    assert not verdict.ok
    assert verdict.message.startswith("vllm-router refuses its flags:")
