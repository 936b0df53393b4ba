"""``infer status``'s figures from a server's /health and /metrics: counts are whole numbers in
JSON, ``--watch`` has request and token rates, and LMCache reads "off" when no connector is asked.
"""

from __future__ import annotations

import json

from infer_cli.client.api import Health
from infer_cli.client.status import Status, status_from
from infer_cli.ui.status_view import rows

HEALTH = Health(200, {"status": "ok", "model": "m", "engine": "ready", "uptime": 3.0})


def metrics(requests: int, prompt: int, completion: int, external_queries: int = 0) -> str:
    route = '{route="/v1/chat/completions",status="200",model="m"}'
    return "\n".join(
        [
            'vllm:num_requests_running{model_name="m"} 2.0',
            'vllm:num_requests_waiting{model_name="m"} 0.0',
            'vllm:kv_cache_usage_perc{model_name="m"} 0.25',
            'vllm:prefix_cache_queries_total{model_name="m"} 400.0',
            'vllm:prefix_cache_hits_total{model_name="m"} 100.0',
            f'vllm:external_prefix_cache_queries_total{{model_name="m"}} {external_queries}.0',
            'vllm:external_prefix_cache_hits_total{model_name="m"} 0.0',
            f"infer_proxy_requests_total{route} {requests}.0",
            f"infer_proxy_prompt_tokens_total {prompt}.0",
            f"infer_proxy_completion_tokens_total {completion}.0",
            "infer_proxy_cached_tokens_total 100.0",
        ]
    )


def test_counts_are_whole_numbers_in_json() -> None:
    status = status_from("http://x", HEALTH, metrics(15, 300, 60))
    data = json.loads(json.dumps(status.to_json()))
    assert data["requests"] == 15 and isinstance(data["requests"], int)
    assert data["running"] == 2 and isinstance(data["running"], int)
    assert data["prompt_tokens"] == 300 and isinstance(data["prompt_tokens"], int)
    assert data["prefix_cache"] == {"hits": 100, "queries": 400, "rate": 0.25}
    assert data["kv_cache_usage"] == 0.25  # a fraction stays a fraction


def test_lmcache_is_off_when_the_engines_misses_were_never_looked_up() -> None:
    off = status_from("http://x", HEALTH, metrics(1, 1, 1, external_queries=0))
    assert off.external_cache_off
    assert dict(rows(off))["LMCache"].startswith("off")
    on = status_from("http://x", HEALTH, metrics(1, 1, 1, external_queries=300))
    assert not on.external_cache_off
    assert dict(rows(on))["LMCache"].startswith("0.0% hit rate")


def test_watch_shows_request_and_token_rates() -> None:
    first = status_from("http://x", HEALTH, metrics(10, 1000, 200))
    later = Status(url="http://x", up=True, checked_at=first.checked_at + 2.0)
    second = status_from("http://x", HEALTH, metrics(14, 1800, 300), previous=first)
    second.checked_at = later.checked_at  # readings 2 s apart
    from infer_cli.client.status import _rates

    _rates(first, second)
    assert second.request_rate == 2.0
    assert second.prompt_token_rate == 400.0 and second.completion_token_rate == 50.0
    assert dict(rows(second))["rates"] == "2.0 req/s · 400 prompt tok/s · 50 completion tok/s"
    assert "rates" not in dict(rows(first))  # a single reading has none


def test_each_replica_behind_the_router_gets_a_row() -> None:
    from infer_cli.wire.prometheus import merge

    def engine(running: int, usage: float, hits: int) -> str:
        return "\n".join(
            [
                "# TYPE vllm:num_requests_running gauge",
                f'vllm:num_requests_running{{model_name="m"}} {running}.0',
                "# TYPE vllm:num_requests_waiting gauge",
                'vllm:num_requests_waiting{model_name="m"} 0.0',
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f'vllm:kv_cache_usage_perc{{model_name="m"}} {usage}',
                "# TYPE vllm:external_prefix_cache_queries_total counter",
                'vllm:external_prefix_cache_queries_total{model_name="m"} 1000.0',
                "# TYPE vllm:external_prefix_cache_hits_total counter",
                f'vllm:external_prefix_cache_hits_total{{model_name="m"}} {hits}.0',
            ]
        )

    router = "# TYPE vllm_router_requests_total counter\nvllm_router_requests_total 7\n"
    text = merge([("vllm-0", engine(1, 0.2, 500)), ("vllm-1", engine(0, 0.4, 0)), ("", router)])
    health = Health(
        200,
        {
            "status": "ok",
            "engine": "ready",
            "replicas": {
                "ready": 1,
                "total": 2,
                "each": {"vllm-0": "ready", "vllm-1": "restarting"},
            },
            "workers": {"ready": 1, "total": 2, "unreachable": ["worker-1"]},
        },
    )
    status = status_from("http://x", health, text)
    shown = dict(rows(status))
    assert shown["vllm-0"] == "ready · 1 running · 0 waiting · KV 20.0% · LMCache 50%"
    assert shown["vllm-1"].startswith("restarting · 0 running")
    assert shown["router"] == "7 requests routed"
    assert shown["workers"] == "1 of 2 reachable · unreachable: worker-1"
    assert status.running == 1 and abs((status.kv_cache_usage or 0) - 0.3) < 1e-9  # the mean
