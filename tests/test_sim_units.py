"""The simulated engine's pure parts: tokenizer, filler, prefix cache, settings, metrics."""

from __future__ import annotations

import itertools
import random
import zlib

import pytest
from pydantic import ValidationError

from infer_cli.config.sim import SimSettings
from infer_cli.sim.filler import filler_tokens
from infer_cli.sim.metrics import SimMetrics, render
from infer_cli.sim.prefix_cache import PrefixCache, block_hashes
from infer_cli.sim.protocol import SimError, parse_generation
from infer_cli.sim.tokenizer import SPECIAL_TOKENS, encode, render_chat, split, token_id

# --- tokenizer ------------------------------------------------------------------------------------


def test_split_is_lossless_and_gpt2_like() -> None:
    assert split("Hello, world!  ok") == ["Hello", ",", " world", "!", " ", " ok"]
    assert split("x_1 = 12345\n\n") == ["x", "_", "1", " =", " 123", "45", "\n\n"]
    assert split("<|im_start|>user\nhi<|im_end|>") == [
        "<|im_start|>",
        "user",
        "\n",
        "hi",
        "<|im_end|>",
    ]
    assert split("supercalifragilistic") == ["supercalifra", "gilistic"]
    rng = random.Random(7)
    alphabet = "ab Zé9_ \n\t.,!?€日本<|>"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert "".join(split(text)) == text


def test_token_ids_are_stable_and_in_vocabulary() -> None:
    ids = encode("The same text gives the same ids.")
    assert ids == encode("The same text gives the same ids.")
    assert [token_id(token) for token in SPECIAL_TOKENS] == [0, 1, 2]
    # A CRC-32, not Python's per-process string hash: the same in every process.
    assert token_id(" the") == 3 + zlib.crc32(b" the") % (49152 - 3) == 20135
    assert all(3 <= i < 49152 for i in ids)


def test_chat_template_renders_chatml() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert render_chat(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\na\nb<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render_chat(messages, add_generation_prompt=False).endswith("b<|im_end|>\n")
    assert render_chat(messages, continue_final_message=True).endswith("user\na\nb")


def test_filler_is_deterministic_and_one_token_per_piece() -> None:
    first = list(itertools.islice(filler_tokens(42), 300))
    assert first == list(itertools.islice(filler_tokens(42), 300))
    assert first != list(itertools.islice(filler_tokens(43), 300))
    text = "".join(first)
    assert split(text) == first
    assert text[0].isupper() and text.count(".") >= 10


# --- prefix cache ---------------------------------------------------------------------------------


def test_prefix_cache_matches_full_blocks_of_a_shared_prefix() -> None:
    cache = PrefixCache(block_size=4, capacity=100)
    prompt = list(range(18))
    assert cache.lookup(prompt) == 0
    cache.insert(prompt)
    assert len(cache) == 4  # 18 tokens: four full blocks
    assert cache.lookup(prompt) == 16
    assert cache.lookup([*prompt[:10], 99, 98, 97, 96, 95]) == 8  # diverges inside block 3
    assert cache.lookup([1, *prompt[1:]]) == 0  # a different first token changes every name
    # At most len - 1 tokens can hit: the last prompt token is always computed.
    assert cache.lookup(prompt[:16]) == 12


def test_prefix_cache_evicts_least_recently_used_from_the_tail() -> None:
    cache = PrefixCache(block_size=2, capacity=4)
    a = [1, 2, 3, 4, 5, 6, 7]  # three blocks
    b = [9, 8, 7, 6, 5]  # two blocks
    cache.insert(a)
    cache.insert(b)  # one of a's blocks goes: its last one, so a's prefix still matches
    assert len(cache) == 4
    assert cache.lookup(a) == 4
    assert cache.lookup(b) == 4
    assert PrefixCache(block_size=2, capacity=0).lookup(a) == 0
    assert block_hashes(a, 2) == block_hashes([*a, 0], 2)[:3]


# --- settings and requests ------------------------------------------------------------------------


def test_settings_defaults_and_strictness() -> None:
    settings = SimSettings()
    assert settings.model == "sim-model"
    assert settings.context_length == 8192
    assert settings.prefill_ms_per_token == 0.05
    assert settings.ms_per_output_token == 10.0
    assert settings.first_token_ms == 0.0
    assert settings.max_tokens_default == 128
    assert settings.block_size == 16
    assert settings.cache_blocks == 65536
    assert settings.max_num_seqs == 256
    assert settings.fail_after_tokens is None
    assert settings.error_rate == 0.0
    assert settings.stall_ms == 0.0
    assert settings.seed == 0
    assert all(field.description for field in SimSettings.model_fields.values())
    with pytest.raises(ValidationError, match="extra"):
        SimSettings.model_validate({"modle": "x"})
    with pytest.raises(ValidationError):
        SimSettings(error_rate=1.5)


def test_requests_are_checked_like_vllm() -> None:
    settings = SimSettings(context_length=64, max_tokens_default=100)
    chat = b'{"messages": [{"role": "user", "content": "hi"}]}'
    parsed = parse_generation("chat", chat, settings)
    assert parsed.model == "sim-model"
    assert parsed.job.max_tokens == 64 - len(parsed.job.prompt)  # the default, fitted
    assert not parsed.stream

    def refused(body: bytes, kind: str = "chat") -> SimError:
        with pytest.raises(SimError) as caught:
            parse_generation(kind, body, settings)  # type: ignore[arg-type]
        return caught.value

    assert refused(b"{").status == 400
    assert refused(b'{"messages": []}').status == 400
    assert refused(b'{"model": "other", "messages": [{"role": "user"}]}').status == 404
    too_long = refused(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 60}')
    assert "maximum context length is 64 tokens" in too_long.message
    assert refused(b'{"messages": [{"role": "user", "content": "x"}], "n": 2}').param == "n"
    options = b'{"prompt": "x", "stream_options": {"include_usage": true}}'
    assert "stream=True" in refused(options, "completion").message
    assert refused(b'{"prompt": ""}', "completion").status == 400
    assert refused(b'{"prompt": ["a", "b"]}', "completion").status == 400
    assert refused(b'{"prompt": "a", "stop": 3}', "completion").param == "stop"
    image = b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}'
    assert "text only" in refused(image).message

    ids = parse_generation("completion", b'{"prompt": [5, 6, 7], "stop": ["x", ""]}', settings)
    assert list(ids.job.prompt) == [5, 6, 7]
    assert ids.job.stop == ("x",)


# --- metrics --------------------------------------------------------------------------------------


def test_metrics_text_uses_vllm_names_and_labels() -> None:
    metrics = SimMetrics(prompt_tokens=10, generation_tokens=5, prefix_cache_queries=10)
    metrics.prefix_cache_hits = 8
    metrics.request_success["length"] = 2
    metrics.ttft.observe(0.003)
    metrics.ttft.observe(1.5)
    text = render(metrics, model="m", running=1, waiting=2, kv_usage=0.25)
    labels = '{engine="0",model_name="m"}'
    for line in (
        f"vllm:num_requests_running{labels} 1.0",
        f"vllm:num_requests_waiting{labels} 2.0",
        f"vllm:kv_cache_usage_perc{labels} 0.25",
        f"vllm:prompt_tokens_total{labels} 10.0",
        f"vllm:generation_tokens_total{labels} 5.0",
        f"vllm:prefix_cache_queries_total{labels} 10.0",
        f"vllm:prefix_cache_hits_total{labels} 8.0",
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0',
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0',
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.005",model_name="m"} 1.0',
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="2.5",model_name="m"} 2.0',
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 2.0',
        f"vllm:time_to_first_token_seconds_count{labels} 2.0",
        f"vllm:time_to_first_token_seconds_sum{labels} 1.503",
        f"infer_sim_cancelled_total{labels} 0.0",
        "# TYPE vllm:prompt_tokens_total counter",
        "# TYPE vllm:time_to_first_token_seconds histogram",
    ):
        assert line in text.splitlines(), line
