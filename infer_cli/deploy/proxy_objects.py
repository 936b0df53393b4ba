"""infer's proxy beside the chart: a ConfigMap (the profile), a Deployment and a Service.

They go into the chart's ``extraObjects``, which the chart renders through Helm's ``tpl``: the
objects may name the release (``{{ .Release.Name }}``) and the chart's values, and any ``{{`` of
our own (in the profile's text) is escaped so Helm writes it as it is.
"""

from __future__ import annotations

from typing import Any

from infer_cli.config.schema import Profile
from infer_cli.deploy.common import DATA_DIR, PROFILE_DIR, PROFILE_PATH, Notes

RELEASE = "{{ .Release.Name }}"
ROUTER_URL = f"http://{RELEASE}-router-service:{{{{ .Values.routerSpec.servicePort }}}}"
KEYS_ENV = "INFER_API_KEYS"
KEYS_SECRET_KEY = "keys"
PORT_NAME = "http"


def proxy_command(port: int) -> tuple[list[str], list[str]]:
    """The container's ``command`` and ``args``: ``infer serve --upstream`` the chart's router."""
    args = ["serve", "--profile", PROFILE_PATH, "--upstream", ROUTER_URL,
            "--host", "0.0.0.0", "--port", str(port)]  # fmt: skip
    return ["infer"], args


def proxy_objects(profile: Profile, profile_toml: str, notes: Notes, *, image: str,
                  keys_secret: str, service_type: str) -> list[dict[str, Any]]:  # fmt: skip
    port = profile.proxy.port or 8080
    name = f"{RELEASE}-infer-proxy"
    labels = {"app.kubernetes.io/name": "infer-proxy", "app.kubernetes.io/instance": RELEASE}
    command, args = proxy_command(port)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{RELEASE}-infer-profile", "labels": labels},
        "data": {"profile.toml": escape_template(profile_toml)},
    }
    container: dict[str, Any] = {
        "name": "infer-proxy",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "env": [
            {
                "name": KEYS_ENV,
                "valueFrom": {"secretKeyRef": {"name": keys_secret, "key": KEYS_SECRET_KEY}},
            },
            {"name": "INFER_HOME", "value": DATA_DIR},
            {"name": "NO_COLOR", "value": "1"},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": port}],
        "readinessProbe": _readiness(profile, notes),
        "livenessProbe": {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "volumeMounts": [
            {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": "profile", "configMap": {"name": f"{RELEASE}-infer-profile"}},
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "type": service_type,
            "selector": labels,
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": PORT_NAME}],
        },
    }
    return [config_map, deployment, service]


def _readiness(profile: Profile, notes: Notes) -> dict[str, Any]:
    """Ready when ``/health`` is 200: the router answers and serves the profile's model."""
    if profile.proxy.protect_health:
        notes.chose(
            "proxy.protect_health: /health needs a key, so the proxy's readiness probe only "
            "checks that its port is open"
        )
        return {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 5}
    return {"httpGet": {"path": "/health", "port": PORT_NAME}, "periodSeconds": 5,
            "failureThreshold": 3}  # fmt: skip


def escape_template(text: str) -> str:
    """Text that Helm's ``tpl`` renders back to itself."""
    return text.replace("{{", '{{ "{{" }}')
