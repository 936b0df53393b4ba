"""``infer deploy helm``: values for vLLM's production-stack chart (``vllm-stack`` 0.1.x).

The chart runs the engines (``servingEngineSpec``), its router (``routerSpec``) and, for several
replicas with LMCache, its LMCache cache server (``cacheserverSpec``); infer's proxy rides along in
``extraObjects`` as the public door. Keys and types follow the chart's ``values.yaml`` and
``values.schema.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infer_cli.config.loader import LoadedProfile
from infer_cli.deploy.common import (
    Artifact,
    Images,
    Notes,
    Rendered,
    inexpressible,
    shipped_profile,
)
from infer_cli.deploy.engine_spec import model_spec, startup_probe
from infer_cli.deploy.proxy_objects import KEYS_SECRET_KEY, proxy_objects
from infer_cli.deploy.scale import ScaleOut, scale_out
from infer_cli.deploy.yamltext import Commented, dump

CHART = "vllm/vllm-stack"
CHART_REPO = "https://vllm-project.github.io/production-stack"
RELEASE = "infer"
CACHE_SERVER_PORT = 81


@dataclass(frozen=True)
class HelmOptions:
    images: Images = field(default_factory=Images)
    hf_secret: str | None = "hf-token"
    keys_secret: str = "infer-api-keys"
    storage: str | None = None
    service_type: str = "ClusterIP"
    output: str = "values.yaml"  # the name the next-step line uses


def values(loaded: LoadedProfile, options: HelmOptions, notes: Notes) -> dict[str, Any]:
    """The values, with :class:`Commented` blocks saying where each came from."""
    profile = loaded.profile
    if profile.engine.backend == "sim":
        raise inexpressible(
            "the 'sim' backend is infer's own simulated engine, which the vllm-stack chart "
            "cannot run (it runs vLLM); deploy it with 'infer deploy docker' or 'systemd'"
        )
    scale = scale_out(profile, notes)
    spec = model_spec(profile, scale, options.images, notes,
                      hf_secret=options.hf_secret, storage=options.storage)  # fmt: skip
    engine = {
        "modelSpec": [
            Commented(
                "[model] and [engine]: vLLM's settings (chart keys, the rest in "
                "vllmConfig.extraArgs); [lmcache]: lmcacheConfig and LMCACHE_* env",
                spec,
            )
        ],
        "startupProbe": Commented(
            f"engine.startup_timeout ({profile.engine.startup_timeout:g} s) in periods of 10 s",
            startup_probe(profile),
        ),
    }
    data: dict[str, Any] = {
        "servingEngineSpec": Commented(f"vLLM engines from profile '{loaded.name}'", engine),
        "routerSpec": Commented(_router_comment(scale), _router(scale)),
    }
    cache_server = _cache_server(loaded, scale, options.images, notes)
    if cache_server is not None:
        data["cacheserverSpec"] = Commented(
            f"{scale.replicas} replicas share KV through the chart's LMCache cache server "
            "(as infer serve shares one lmcache server between replicas)",
            cache_server,
        )
    toml = shipped_profile(loaded, notes, target="ConfigMap")
    data["extraObjects"] = Commented(
        "infer's proxy, the public door: 'infer serve --upstream' the chart's router, with the "
        "profile's [proxy] and [openrouter] tables (ConfigMap) and its keys from the Secret "
        f"'{options.keys_secret}' (key '{KEYS_SECRET_KEY}')",
        proxy_objects(profile, toml, notes, image=options.images.infer,
                      keys_secret=options.keys_secret, service_type=options.service_type),
    )  # fmt: skip
    return data


def render(loaded: LoadedProfile, options: HelmOptions) -> Rendered:
    notes = Notes()
    data = values(loaded, options, notes)
    header = (
        f"infer deploy helm -p {loaded.name}: values for vLLM's production-stack chart "
        f"({CHART}, chart 0.1.x)\n"
        f"helm install {RELEASE} {CHART} -f {options.output}"
    )
    text = dump(data, header=header)
    steps = [f"helm repo add vllm {CHART_REPO}"]
    steps.append(
        f"kubectl create secret generic {options.keys_secret} "
        f"--from-literal={KEYS_SECRET_KEY}=KEY1,KEY2"
    )
    if options.hf_secret:
        steps.append(
            f"kubectl create secret generic {options.hf_secret} --from-literal=token=hf_..."
        )
    steps.append(f"helm install {RELEASE} {CHART} -f {options.output}")
    return Rendered(files=[Artifact(options.output, text)], notes=notes, next_steps=steps)


def _router(scale: ScaleOut) -> dict[str, Any]:
    router: dict[str, Any] = {"routingLogic": scale.routing, "servicePort": 80}
    if scale.session_key:
        router["sessionKey"] = scale.session_key
    return router


def _router_comment(scale: ScaleOut) -> str:
    if scale.replicas == 1:
        return "one replica: the chart's router forwards to it (routingLogic matters from two on)"
    return f"{scale.replicas} replicas: routing logic from the profile's router policy"


def _cache_server(loaded: LoadedProfile, scale: ScaleOut, images: Images, notes: Notes
                  ) -> dict[str, Any] | None:  # fmt: skip
    cache = loaded.profile.lmcache
    if scale.replicas < 2 or cache.mode == "off" or loaded.profile.engine.device == "cpu":
        return None
    if cache.remote_url:
        notes.chose(f"lmcache.remote_url {cache.remote_url} is the replicas' shared tier; the "
                    "chart's cache server stays off")  # fmt: skip
        return None
    repository, _, tag = images.lmcache.rpartition(":")
    return {
        "enabled": True,
        "image": {"repository": repository, "tag": tag},
        "servicePort": CACHE_SERVER_PORT,
        "serde": cache.remote_serde,
    }
