"""``infer deploy``: golden files for every bundled profile and target, the Helm values checked
against the vllm-stack chart's value types, the compose file, the Dockerfile's CMD, the systemd
unit (``systemd-analyze verify`` where it exists) and bad input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from typer.testing import CliRunner

from infer_cli.cli import app
from infer_cli.config import loader
from infer_cli.config.loader import LoadedProfile
from infer_cli.config.schema import EngineSection, LMCacheSection, ModelSection, Profile
from infer_cli.deploy import docker, helm, systemd
from infer_cli.deploy.common import PROFILE_PATH, Notes
from infer_cli.deploy.engine_spec import HANDLED
from infer_cli.deploy.scale import ROUTING_LOGICS, scale_out
from infer_cli.deploy.yamltext import plain

GOLDEN = Path(__file__).parent / "golden" / "deploy"
PROFILES = sorted(path.stem for path in loader.bundled_dir().glob("*.toml"))
HELM_PROFILES = [name for name in PROFILES if name != "sim"]
SOURCE = "/opt/infer"
EXECUTABLE = "/usr/local/bin/infer"


def load(name: str) -> LoadedProfile:
    return loader.load(name, environ={})


def helm_text(name: str) -> str:
    return helm.render(load(name), helm.HelmOptions()).files[0].text


def docker_files(name: str) -> dict[str, str]:
    rendered = docker.render(load(name), docker.DockerOptions(source=SOURCE))
    return {item.name: item.text for item in rendered.files}


def unit_text(name: str, executable: str = EXECUTABLE) -> str:
    return systemd.render(load(name), systemd.SystemdOptions(executable=executable)).files[0].text


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("INFER_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}: run with INFER_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


# --- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HELM_PROFILES)
def test_golden_helm_values(name: str) -> None:
    check_golden(f"{name}.values.yaml", helm_text(name))


@pytest.mark.parametrize("name", PROFILES)
def test_golden_docker(name: str) -> None:
    files = docker_files(name)
    check_golden(f"{name}.Dockerfile", files["Dockerfile"])
    check_golden(f"{name}.compose.yaml", files["compose.yaml"])
    check_golden(f"{name}.profile.toml", files["profile.toml"])


@pytest.mark.parametrize("name", PROFILES)
def test_golden_systemd(name: str) -> None:
    check_golden(f"{name}.service", unit_text(name))


# --- the Helm values against the chart's value types ------------------------------------------
# Types and enums from vllm-stack 0.1.x (values.schema.json; for keys the chart's templates read
# but its schema leaves open, the type the template expects). Every key we write must be here.

INT, NUM, STR, BOOL, OBJ, ARR = "integer", "number", "string", "boolean", "object", "array"
MODEL = "servingEngineSpec.modelSpec[]"
CHART_TYPES: dict[str, tuple[str, ...]] = {
    f"{MODEL}.name": (STR,),
    f"{MODEL}.repository": (STR,),
    f"{MODEL}.tag": (STR,),
    f"{MODEL}.modelURL": (STR,),
    f"{MODEL}.modelRevision": (STR,),
    f"{MODEL}.replicaCount": (INT,),
    f"{MODEL}.requestCPU": (INT,),
    f"{MODEL}.requestMemory": (STR,),
    f"{MODEL}.requestGPU": (INT, NUM, STR),
    f"{MODEL}.pvcStorage": (STR,),
    f"{MODEL}.runtimeClassName": (STR,),
    f"{MODEL}.hf_token": (STR, OBJ),
    f"{MODEL}.hf_token.secretName": (STR,),
    f"{MODEL}.hf_token.secretKey": (STR,),
    f"{MODEL}.enableTool": (BOOL,),
    f"{MODEL}.toolCallParser": (STR,),
    f"{MODEL}.env": (ARR,),
    f"{MODEL}.env[]": (OBJ,),
    f"{MODEL}.env[].name": (STR,),
    f"{MODEL}.env[].value": (STR,),
    f"{MODEL}.vllmConfig": (OBJ,),
    f"{MODEL}.vllmConfig.enablePrefixCaching": (BOOL,),
    f"{MODEL}.vllmConfig.enableChunkedPrefill": (BOOL,),
    f"{MODEL}.vllmConfig.maxModelLen": (INT,),
    f"{MODEL}.vllmConfig.dtype": (STR,),
    f"{MODEL}.vllmConfig.tensorParallelSize": (INT,),
    f"{MODEL}.vllmConfig.pipelineParallelSize": (INT,),
    f"{MODEL}.vllmConfig.v1": (STR,),
    f"{MODEL}.vllmConfig.maxNumSeqs": (INT,),
    f"{MODEL}.vllmConfig.gpuMemoryUtilization": (INT, NUM, STR),
    f"{MODEL}.vllmConfig.extraArgs": (ARR,),
    f"{MODEL}.vllmConfig.extraArgs[]": (STR,),
    f"{MODEL}.lmcacheConfig": (OBJ,),
    f"{MODEL}.lmcacheConfig.enabled": (BOOL,),
    f"{MODEL}.lmcacheConfig.cpuOffloadingBufferSize": (INT, NUM, STR),
    f"{MODEL}.lmcacheConfig.diskOffloadingBufferSize": (INT, NUM, STR),
    f"{MODEL}.lmcacheConfig.logLevel": (STR,),
    f"{MODEL}.raySpec": (OBJ,),
    f"{MODEL}.raySpec.enabled": (BOOL,),
    f"{MODEL}.raySpec.headNode": (OBJ,),
    f"{MODEL}.raySpec.headNode.requestCPU": (INT,),
    f"{MODEL}.raySpec.headNode.requestGPU": (INT,),
    f"{MODEL}.raySpec.headNode.requestMemory": (STR,),
    "servingEngineSpec": (OBJ,),
    "servingEngineSpec.modelSpec": (ARR,),
    MODEL: (OBJ,),
    "servingEngineSpec.startupProbe": (OBJ,),
    "servingEngineSpec.startupProbe.initialDelaySeconds": (INT,),
    "servingEngineSpec.startupProbe.periodSeconds": (INT,),
    "servingEngineSpec.startupProbe.failureThreshold": (INT,),
    "servingEngineSpec.startupProbe.httpGet": (OBJ,),
    "servingEngineSpec.startupProbe.httpGet.path": (STR,),
    "servingEngineSpec.startupProbe.httpGet.port": (INT, STR),
    "routerSpec": (OBJ,),
    "routerSpec.routingLogic": (STR,),
    "routerSpec.sessionKey": (STR,),
    "routerSpec.servicePort": (INT,),
    "cacheserverSpec": (OBJ,),
    "cacheserverSpec.enabled": (BOOL,),
    "cacheserverSpec.image": (OBJ,),
    "cacheserverSpec.image.repository": (STR,),
    "cacheserverSpec.image.tag": (STR,),
    "cacheserverSpec.servicePort": (INT,),
    "cacheserverSpec.serde": (STR,),
    "extraObjects": (ARR,),
}
CHART_ENUMS = {
    "routerSpec.routingLogic": set(ROUTING_LOGICS),
    f"{MODEL}.lmcacheConfig.logLevel": {"DEBUG", "INFO", "WARNING", "ERROR"},
}


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return NUM
    if isinstance(value, str):
        return STR
    if isinstance(value, list):
        return ARR
    if isinstance(value, dict):
        return OBJ
    return type(value).__name__


def walk(node: Any, path: str) -> list[tuple[str, Any]]:
    found = [(path, node)] if path else []
    if path == "extraObjects":
        return found  # raw Kubernetes objects: the chart renders them as they are
    if isinstance(node, dict):
        for key, value in node.items():
            found += walk(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for item in node:
            found += walk(item, f"{path}[]")
    return found


@pytest.mark.parametrize("name", HELM_PROFILES)
def test_helm_values_have_the_chart_types(name: str) -> None:
    data = yaml.safe_load(helm_text(name))
    for path, value in walk(data, ""):
        assert path in CHART_TYPES, f"{name}: {path} is not a key this test knows in the chart"
        assert json_type(value) in CHART_TYPES[path], f"{name}: {path} = {value!r}"
        if path in CHART_ENUMS:
            assert value in CHART_ENUMS[path], f"{name}: {path} = {value!r}"
    assert data["servingEngineSpec"]["modelSpec"][0]["replicaCount"] >= 1


@pytest.mark.parametrize("name", HELM_PROFILES)
def test_helm_values_parse_back_to_what_was_built(name: str) -> None:
    built = helm.values(load(name), helm.HelmOptions(), Notes())
    assert yaml.safe_load(helm_text(name)) == plain(built)


def test_helm_maps_the_profile_settings() -> None:
    spec = yaml.safe_load(helm_text("h100"))["servingEngineSpec"]["modelSpec"][0]
    config = spec["vllmConfig"]
    assert spec["modelURL"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert (config["maxModelLen"], config["maxNumSeqs"]) == (131072, 256)
    assert config["gpuMemoryUtilization"] == 0.92 and config["enablePrefixCaching"] is True
    # settings without a chart key are vLLM flags; the served name is what the proxy checks for
    args = config["extraArgs"]
    assert args[args.index("--served-model-name") + 1] == "meta-llama/llama-3.1-8b-instruct"
    assert args[args.index("--max-num-batched-tokens") + 1] == "8192"
    assert "--enable-prompt-tokens-details" in args  # cached_tokens in usage
    assert spec["lmcacheConfig"] == {"enabled": True, "cpuOffloadingBufferSize": "64",
                                     "logLevel": "INFO"}  # fmt: skip
    assert (spec["enableTool"], spec["toolCallParser"]) == (True, "llama3_json")
    assert spec["requestGPU"] == 1 and spec["hf_token"]["secretName"] == "hf-token"
    # TP 8 asks for 8 GPUs; a Ray profile becomes a Ray cluster of head + PP-1 workers
    assert (
        yaml.safe_load(helm_text("h100x8"))["servingEngineSpec"]["modelSpec"][0]["requestGPU"] == 8
    )
    ray = yaml.safe_load(helm_text("multinode"))["servingEngineSpec"]["modelSpec"][0]
    assert ray["raySpec"]["enabled"] is True and ray["replicaCount"] == 1
    assert ray["vllmConfig"]["pipelineParallelSize"] == 2


def test_helm_values_say_where_blocks_came_from() -> None:
    text = helm_text("h100")
    assert "# [model] and [engine]: vLLM's settings" in text
    assert "# engine.startup_timeout (1200 s)" in text
    assert "# infer's proxy, the public door" in text


def test_settings_the_chart_cannot_carry_are_said(tmp_path: Path) -> None:
    profile = tmp_path / "odd.toml"
    profile.write_text(
        'extends = "h100"\n[engine]\nchat_template = "/srv/t.jinja"\nstop_timeout = 40\n'
        '[lmcache]\neviction_policy = "ARC"\nextra_args = ["--x"]\n'
        '[proxy]\napi_keys = ["secret-key-1"]\n'
    )
    notes = Notes()
    values = plain(helm.values(load(str(profile)), helm.HelmOptions(), notes))
    said = " ".join(notes.dropped)
    for key in ("engine.chat_template", "engine.stop_timeout", "lmcache.eviction_policy",
                "lmcache.extra_args", "proxy.api_keys"):  # fmt: skip
        assert key in said
    assert "secret-key-1" not in json.dumps(values)


def test_every_engine_setting_has_a_place() -> None:
    """A new [model], [engine] or [lmcache] key fails here until deploy maps or reports it."""
    assert set(ModelSection.model_fields) == HANDLED["model"]
    assert set(EngineSection.model_fields) == HANDLED["engine"]
    assert set(LMCacheSection.model_fields) == HANDLED["lmcache"]


def test_replica_policies_map_to_the_chart_routing_logic() -> None:
    def fake(**table: Any) -> Profile:
        return cast(Profile, SimpleNamespace(replicas=SimpleNamespace(**table)))

    expected = {"cache_aware": "prefixaware", "kv_aware": "kvaware", "consistent_hash": "session",
                "session": "session", "round_robin": "roundrobin"}  # fmt: skip
    for policy, logic in expected.items():
        scale = scale_out(fake(count=4, router_policy=policy), Notes())
        assert (scale.replicas, scale.routing) == (4, logic)
    notes = Notes()
    assert scale_out(fake(count=2, router_policy="power_of_two"), notes).routing == "roundrobin"
    assert "power_of_two" in notes.chosen[0]
    one = scale_out(load("h100").profile, Notes())
    assert (one.replicas, one.routing) == (1, "roundrobin")


# --- docker --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_dockerfile_cmd_serves_the_profile(name: str) -> None:
    text = docker_files(name)["Dockerfile"]
    cmd = json.loads(next(line for line in text.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["infer", "serve"]
    assert cmd[cmd.index("--profile") + 1] == PROFILE_PATH
    assert f"COPY profile.toml {PROFILE_PATH}" in text.splitlines()
    assert "ENTRYPOINT []" in text  # vLLM's image starts 'vllm serve' otherwise


@pytest.mark.parametrize("name", PROFILES)
def test_compose_file_parses(name: str) -> None:
    files = docker_files(name)
    service = yaml.safe_load(files["compose.yaml"])["services"]["infer"]
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service["build"]["additional_contexts"]["infer-src"] == SOURCE
    assert "INFER_API_KEYS" in service["environment"]
    shipped = loader.validate(
        __import__("tomllib").loads(files["profile.toml"]), {}, default_origin="shipped"
    )
    assert shipped.model.name == load(name).profile.model.name
    gpu = load(name).profile.engine.device == "cuda"
    assert ("deploy" in service) == gpu
    if gpu:
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["capabilities"] == ["gpu"] and device["count"] >= 1


# --- systemd -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["h100", "cpu", "sim"])
def test_systemd_unit(name: str, tmp_path: Path) -> None:
    infer = Path(sys.executable).parent / "infer"
    text = unit_text(name, executable=str(infer))
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    assert f"ExecStart={infer} serve --profile {name}" in text.splitlines()
    assert "Restart=on-failure" in text and "WantedBy=multi-user.target" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # present on this project's machines; the structure is checked anyway
        unit = tmp_path / "infer.service"
        unit.write_text(text)
        result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "infer.service" not in result.stderr, result.stderr


def test_systemd_escapes_percent_and_dollar(tmp_path: Path) -> None:
    profile = tmp_path / "my 100% $profile.toml"
    profile.write_text('extends = "sim"\ndescription = "100% simulated"\n')
    text = systemd.render(load(str(profile)), systemd.SystemdOptions(EXECUTABLE)).files[0].text
    assert "Description=infer: 100%% simulated" in text
    assert f'ExecStart={EXECUTABLE} serve --profile "{tmp_path}/my 100%% $$profile.toml"' in text


# --- the command line and bad input -----------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["deploy", *args], env={"NO_COLOR": "1"})


def test_cli_writes_stdout_and_says_what_next() -> None:
    result = run("helm", "-p", "h100")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["routerSpec"]["routingLogic"] == "roundrobin"
    assert "helm install infer vllm/vllm-stack -f values.yaml" in result.stderr
    assert "systemctl enable --now infer.service" in run("systemd", "-p", "h100").stderr
    docker_run = run("docker", "-p", "sim")
    assert "# ==> compose.yaml <==" in docker_run.stdout
    assert "docker compose up -d" in docker_run.stderr


def test_cli_output_files_and_force(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    assert run("helm", "-p", "h100", "-o", str(values)).exit_code == 0
    other = tmp_path / "b.yaml"
    assert f"-f {other}" in run("helm", "-p", "l40s", "-o", str(other)).stderr
    again = run("helm", "-p", "l40s", "-o", str(values))
    assert again.exit_code == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {values} already exists; pass --force to overwrite it, or choose -o"
    ]
    assert "llama-3.1-8b-instruct" in values.read_text()
    assert run("helm", "-p", "a100-80gb", "-o", str(values), "--force").exit_code == 0
    assert "qwen" in values.read_text()
    folder = tmp_path / "box"
    assert run("docker", "-p", "h100", "-o", str(folder)).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "Dockerfile",
        "compose.yaml",
        "profile.toml",
    ]
    assert run("docker", "-p", "h100", "-o", str(folder)).exit_code == 2


def test_cli_unknown_profile_is_one_line() -> None:
    result = run("systemd", "-p", "h1000")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown profile 'h1000'; did you mean")


def test_cli_inexpressible_profile_says_why(tmp_path: Path) -> None:
    result = run("helm", "-p", "sim", "-o", str(tmp_path / "v.yaml"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot deploy this profile: the 'sim' backend is infer's own simulated engine, "
        "which the vllm-stack chart cannot run (it runs vLLM); deploy it with 'infer deploy "
        "docker' or 'systemd'"
    ]
    assert not (tmp_path / "v.yaml").exists()
