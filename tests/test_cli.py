"""The ``infer`` command line through CliRunner: help, profiles, serve's dry run and its errors.

Errors must be one line on stderr with the documented exit code, never a traceback.
"""

from __future__ import annotations

import json
import socket
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infer_cli import __version__
from infer_cli.cli import app

runner = CliRunner()
BUNDLED = [
    "cpu",
    "cpu-2x",
    "h100",
    "h200",
    "a100-80gb",
    "l40s",
    "h100x8",
    "h100x8-dp",
    "multinode",
    "sim",
]
STUB = Path(__file__).parent / "stubs" / "engine.py"
# A GPU-style profile whose engine is whatever --set engine.vllm names (no CPU engine build).
EXTERNAL = ["--set", "engine.device=cuda", "--set", "lmcache.mode=off"]


def one_line_error(result: object, code: int) -> str:
    assert getattr(result, "exit_code", None) == code, getattr(result, "output", "")
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], stderr  # progress may come before; the error is one last line
    return lines[-1]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"infer {__version__}"


def test_help_lists_the_commands_and_each_one_has_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "pull", "profiles", "engine", "keys"):
        assert command in result.stdout
    for info in app.registered_commands:
        name = info.name or ""
        assert name in result.stdout
        assert runner.invoke(app, [name, "--help"]).exit_code == 0, name
    for group in app.registered_groups:
        name = group.name or ""
        assert name in result.stdout
        assert runner.invoke(app, [name, "--help"]).exit_code == 0, name


def test_python_dash_m_runs_the_same_cli() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "infer_cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"infer {__version__}"


def test_profiles_list_shows_every_bundled_profile() -> None:
    result = runner.invoke(app, ["profiles", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows if row["source"] == "bundled"] == sorted(
        BUNDLED, key=[row["name"] for row in rows].index
    )
    assert set(BUNDLED) <= {row["name"] for row in rows}
    human = runner.invoke(app, ["profiles", "list"])
    assert human.exit_code == 0
    assert "h100x8" in human.stdout


def test_profiles_show_applies_set_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFER_ENGINE__MAX_NUM_SEQS", "96")
    result = runner.invoke(app, ["profiles", "show", "h100", "--set", "proxy.port=9000", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["engine"]["max_num_seqs"] == 96
    assert shown["proxy"]["port"] == 9000
    toml = runner.invoke(app, ["profiles", "show", "h100x8"])
    assert toml.exit_code == 0
    assert "tensor_parallel_size = 8" in toml.stdout


def test_profiles_validate_accepts_every_bundled_profile() -> None:
    for name in BUNDLED:
        result = runner.invoke(app, ["profiles", "validate", name])
        assert result.exit_code == 0, (name, result.output)
        assert "valid" in result.stdout


def test_profiles_validate_names_the_bad_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "h100"\n[engine]\nmax_num_seq = 64\n')
    line = one_line_error(runner.invoke(app, ["profiles", "validate", str(bad)]), 2)
    assert "engine.max_num_seq" in line and str(bad) in line


def test_profiles_validate_of_malformed_toml(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[engine\nmax_num_seqs = 64\n")
    line = one_line_error(runner.invoke(app, ["profiles", "validate", str(bad)]), 2)
    assert str(bad) in line


def test_profiles_init_writes_a_loadable_commented_file(infer_home: Path) -> None:
    result = runner.invoke(app, ["profiles", "init", "mine", "--from", "h100"])
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == infer_home / "profiles" / "mine.toml"
    text = path.read_text()
    assert 'extends = "h100"' in text
    assert "# max_num_seqs" in text or "#max_num_seqs" in text
    listed = json.loads(runner.invoke(app, ["profiles", "list", "--json"]).stdout)
    assert listed[0]["name"] == "mine"
    again = runner.invoke(app, ["profiles", "init", "mine"])
    assert "already exists" in one_line_error(again, 2)
    assert runner.invoke(app, ["profiles", "init", "mine", "--force"]).exit_code == 0


def test_unknown_profile_is_one_line() -> None:
    line = one_line_error(runner.invoke(app, ["serve", "--profile", "h900", "--dry-run"]), 2)
    assert "'h900'" in line and "did you mean 'h200'" in line and "h100x8" in line


def test_bad_set_is_one_line() -> None:
    for bad in ("engine.max_num_seqs", "engine.max_num_seqs=lots", "engine.nope=1"):
        result = runner.invoke(app, ["serve", "--profile", "h100", "--dry-run", "--set", bad])
        line = one_line_error(result, 2)
        assert "--set" in line or "engine." in line, line


def test_dry_run_prints_both_commands_as_shell() -> None:
    result = runner.invoke(
        app, ["serve", "--profile", "h100", "--dry-run", "--set", "engine.vllm=/opt/vllm"]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("lmcache server") < out.index("/opt/vllm serve")
    assert "--kv-transfer-config" in out
    assert "VLLM_API_KEY=" in out
    # the printed shell is valid shell
    import subprocess

    check = subprocess.run(["bash", "-n"], input=out, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_missing_vllm_executable_is_one_line() -> None:
    result = runner.invoke(
        app,
        ["serve", "--profile", "h100", *EXTERNAL, "--set", "engine.vllm=/nonexistent/bin/vllm"],
    )
    line = one_line_error(result, 1)
    assert "/nonexistent/bin/vllm" in line and "engine.vllm" in line


def test_missing_model_folder_is_one_line() -> None:
    result = runner.invoke(
        app,
        [
            "serve",
            "--profile",
            "h100",
            *EXTERNAL,
            "--set",
            f"engine.vllm={sys.executable}",
            "--set",
            "model.source=/nonexistent/model",
        ],
    )
    line = one_line_error(result, 1)
    assert "/nonexistent/model" in line and "model.source" in line


def test_cpu_profile_without_the_engine_and_no_install_says_what_to_run() -> None:
    line = one_line_error(runner.invoke(app, ["serve", "--profile", "cpu", "--no-install"]), 1)
    assert "infer engine install" in line


def stub_vllm(tmp_path: Path, *stub_args: str) -> Path:
    """An executable that behaves like ``vllm serve`` as the stub engine is told to."""
    script = tmp_path / "vllm"
    script.write_text(
        "#!/bin/sh\n"
        '# drop "serve MODEL", keep --port\n'
        'shift 2\nport=""\nwhile [ $# -gt 0 ]; do\n'
        '  if [ "$1" = "--port" ]; then port="$2"; fi\n  shift\ndone\n'
        f'exec {sys.executable} {STUB} --port "$port" {" ".join(stub_args)}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def external_serve(vllm: Path, model: Path, *extra: str) -> list[str]:
    """``infer serve`` on a GPU-style profile with this vllm executable and model folder."""
    return [
        *["serve", "--profile", "h100", *EXTERNAL, "--set", f"engine.vllm={vllm}"],
        *["--set", f"model.source={model}", *extra],
    ]


def test_port_in_use_is_one_line_before_any_engine_starts(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    pidfile = tmp_path / "stub.pid"
    vllm = stub_vllm(tmp_path, "--pidfile", str(pidfile))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app,
            external_serve(vllm, tmp_path / "model", "--port", str(port)),
        )
    line = one_line_error(result, 1)
    assert f"port {port} on 127.0.0.1" in line and "--port" in line
    assert not pidfile.exists(), "the engine must not start when the public port is taken"


def test_engine_crash_at_start_is_one_line_with_the_cause(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    vllm = stub_vllm(tmp_path, "--crash-at-start", "'CUDA out of memory'")
    result = runner.invoke(
        app,
        external_serve(vllm, tmp_path / "model", "--port", "0"),
    )
    line = one_line_error(result, 1)
    assert "vllm" in line and "CUDA out of memory" in line and "log:" in line


def test_engine_hanging_at_start_times_out_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    pidfile = tmp_path / "stub.pid"
    vllm = stub_vllm(tmp_path, "--hang", "--pidfile", str(pidfile))
    result = runner.invoke(
        app,
        external_serve(
            vllm, tmp_path / "model", "--port", "0", "--set", "engine.startup_timeout=3"
        ),
    )
    line = one_line_error(result, 1)
    assert "3" in line and "vllm" in line
    pid = int(pidfile.read_text())
    from tests.helpers import pid_alive

    assert not pid_alive(pid), "the hung engine must be killed"
