"""The engine's own counters over a run: ``/metrics`` read before and after, and the deltas.

vLLM counts prefix-cache lookups in tokens: ``vllm:prefix_cache_queries`` / ``_hits`` (its own
GPU/CPU cache) and ``vllm:external_prefix_cache_queries`` / ``_hits`` (a KV connector such as
LMCache). The infer proxy's ``/metrics`` appends the engine's, so the proxy's URL works as well as
vLLM's. Counters are summed over label sets (several engines, models).

vLLM also times every request itself, in histograms; their ``_sum`` / ``_count`` deltas give the
engine's own mean TTFT, TPOT, queueing and prefill time over the run: next to the client-side
figures they show what the network and the proxy add, and how much of a TTFT was waiting.
"""

from __future__ import annotations

from typing import Any

from infer_cli.client.metrics import Samples, ratio

COUNTERS = {
    "prefix_cache_queries": "vllm:prefix_cache_queries",
    "prefix_cache_hits": "vllm:prefix_cache_hits",
    "external_prefix_cache_queries": "vllm:external_prefix_cache_queries",
    "external_prefix_cache_hits": "vllm:external_prefix_cache_hits",
    "prompt_tokens": "vllm:prompt_tokens",
    "prompt_tokens_cached": "vllm:prompt_tokens_cached",
    "generation_tokens": "vllm:generation_tokens",
    "preemptions": "vllm:num_preemptions",
}
BY_SOURCE = "vllm:prompt_tokens_by_source"
HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "tpot": "vllm:request_time_per_output_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
    "queue": "vllm:request_queue_time_seconds",
    "prefill": "vllm:request_prefill_time_seconds",
}
"""The engine's request timings (seconds): what their means over a run are reported as."""


def snapshot(text: str) -> dict[str, Any] | None:
    """The counters of one ``/metrics`` text; ``None`` when it has no vLLM metrics at all."""
    samples = Samples.from_text(text)
    values: dict[str, Any] = {}
    for key, name in COUNTERS.items():
        total = samples.total(name)
        if total is not None:
            values[key] = total
    sources = samples.by_label(BY_SOURCE, "source")
    if sources:
        values["prompt_tokens_by_source"] = sources
    timings = {}
    for key, name in HISTOGRAMS.items():
        total, count = samples.total(name + "_sum"), samples.total(name + "_count")
        if total is not None and count is not None:
            timings[key] = (total, count)
    if timings:
        values["timings"] = timings
    return values or None


def delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the counters moved by, with vLLM's and the connector's hit rates over the run."""
    if before is None or after is None:
        return None
    out: dict[str, Any] = {}
    for key in COUNTERS:
        if key in before and key in after:
            out[key] = _number(after[key] - before[key])
    old = before.get("prompt_tokens_by_source") or {}
    new = after.get("prompt_tokens_by_source") or {}
    if new:
        out["prompt_tokens_by_source"] = {
            source: _number(value - old.get(source, 0.0)) for source, value in new.items()
        }
    local = ratio(out.get("prefix_cache_hits"), out.get("prefix_cache_queries"))
    external = ratio(
        out.get("external_prefix_cache_hits"), out.get("external_prefix_cache_queries")
    )
    out["prefix_cache_hit_rate"] = None if local is None else round(local, 4)
    out["external_hit_rate"] = None if external is None else round(external, 4)
    latency = _mean_latencies(before.get("timings") or {}, after.get("timings") or {})
    if latency:
        out["latency_ms"] = latency
    return out


def _mean_latencies(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float | int]]:
    """The engine's mean of each timing over the requests that ended between the two reads."""
    means: dict[str, dict[str, float | int]] = {}
    for key, (total, count) in after.items():
        old_total, old_count = before.get(key, (0.0, 0.0))
        requests = count - old_count
        if requests > 0:
            mean = (total - old_total) / requests * 1000
            means[key] = {"mean": round(mean, 3), "requests": _number(requests)}
    return means


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)
