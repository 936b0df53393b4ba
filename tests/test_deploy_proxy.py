"""The proxy Deployment that ``infer deploy helm`` puts beside the chart, run here: its command,
environment and profile are taken from the generated values file, with the chart's router replaced
by infer's simulated engine, and it serves the OpenRouter contract with the Secret's keys.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infer_cli.config import loader
from infer_cli.deploy import helm
from infer_cli.deploy.proxy_objects import ROUTER_URL
from tests.helpers import free_port, stop_process
from tests.test_serve_front import start_sim, wait_for

KEY = "deploy-test-key-1"
PROFILE = "h100"


def generated_objects() -> dict[str, Any]:
    text = helm.render(loader.load(PROFILE, environ={}), helm.HelmOptions()).files[0].text
    return {item["kind"]: item for item in yaml.safe_load(text)["extraObjects"]}


def replace_after(argv: list[str], flag: str, value: str) -> str:
    index = argv.index(flag) + 1
    old, argv[index] = argv[index], value
    return old


@pytest.fixture
def deployed_proxy(tmp_path: Path) -> Iterator[str]:
    objects = generated_objects()
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    profile = tmp_path / "profile.toml"
    profile.write_text(objects["ConfigMap"]["data"]["profile.toml"])
    served = loader.load(str(profile), environ={}).profile.model.name

    argv = [*container["command"], *container["args"]]
    assert argv[:2] == ["infer", "serve"]
    argv[:1] = [sys.executable, "-m", "infer_cli"]
    engine_port, port = free_port(), free_port()
    assert replace_after(argv, "--profile", str(profile)) == "/etc/infer/profile.toml"
    assert replace_after(argv, "--upstream", f"http://127.0.0.1:{engine_port}") == ROUTER_URL
    assert replace_after(argv, "--host", "127.0.0.1") == "0.0.0.0"
    replace_after(argv, "--port", str(port))

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert (item["name"], ref["name"], ref["key"]) == ("INFER_API_KEYS", "infer-api-keys",
                                                              "keys")  # fmt: skip
            env[item["name"]] = KEY
        else:
            env[item["name"]] = item["value"]
    env["INFER_HOME"] = str(tmp_path / "home")  # the pod's emptyDir

    sim = start_sim(engine_port, model=served)
    proxy = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    probe = container["readinessProbe"]["httpGet"]["path"]
    try:
        wait_for(lambda: _ready(f"{url}{probe}"), timeout=30)
        yield url
    finally:
        stderr = stop_process(proxy)
        stop_process(sim)
    assert "Traceback" not in stderr


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_the_deployed_proxy_serves_the_openrouter_contract(deployed_proxy: str) -> None:
    url = deployed_proxy
    auth = {"Authorization": f"Bearer {KEY}"}
    price = loader.load(PROFILE, environ={}).profile.openrouter.pricing

    assert httpx.get(f"{url}/api/v1/models", timeout=10).status_code == 401  # the Secret's keys
    listing = httpx.get(f"{url}/api/v1/models", headers=auth, timeout=10)
    assert listing.status_code == 200, listing.text
    model = listing.json()["data"][0]
    assert model["id"] == "meta-llama/llama-3.1-8b-instruct"
    assert model["pricing"]["prompt"] == price.prompt  # a string, from the ConfigMap's profile

    body = {"model": model["id"], "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 8}  # fmt: skip
    answer = httpx.post(f"{url}/api/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    expected = (
        (usage["prompt_tokens"] - cached) * Decimal(price.prompt)
        + cached * Decimal(price.input_cache_read)
        + usage["completion_tokens"] * Decimal(price.completion)
    )
    assert usage["completion_tokens"] > 0
    assert Decimal(str(usage["cost"])) == pytest.approx(expected, rel=Decimal("1e-6"))
