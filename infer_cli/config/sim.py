"""``SimSettings``: how the simulated engine behaves; a profile's ``[sim]`` table.

It lives with the profile schema (pydantic only), which embeds it as it is; ``infer_cli.sim``
imports it from here, so the configuration never depends on the simulator.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SimSettings(BaseModel):
    """The simulated engine's model, timing, prefix cache, capacity and injected faults."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="sim-model",
        min_length=1,
        description="The served model name: the id clients send and /v1/models shows.",
    )
    context_length: int = Field(
        default=8192,
        ge=1,
        description="Maximum tokens of prompt plus completion (vLLM's --max-model-len).",
    )
    prefill_ms_per_token: float = Field(
        default=0.05,
        ge=0,
        description="Milliseconds of prefill per prompt token not found in the prefix cache.",
    )
    ms_per_output_token: float = Field(
        default=10.0,
        ge=0,
        description="Milliseconds between two generated tokens (0: as fast as possible).",
    )
    first_token_ms: float = Field(
        default=0.0,
        ge=0,
        description="Fixed milliseconds added before the first token of every request.",
    )
    max_tokens_default: int = Field(
        default=128,
        ge=1,
        description="Tokens generated when a request sets no max_tokens (capped by the context).",
    )
    block_size: int = Field(
        default=16,
        ge=1,
        description="Tokens per prefix-cache block; only full blocks are cached and matched.",
    )
    cache_blocks: int = Field(
        default=65536,
        ge=0,
        description="Blocks the prefix cache holds before it evicts the least recently used.",
    )
    max_num_seqs: int = Field(
        default=256,
        ge=1,
        description="Requests generating at once; more wait (reported as waiting).",
    )
    fail_after_tokens: int | None = Field(
        default=None,
        ge=0,
        description="Make every request fail after this many generated tokens (None: never).",
    )
    fail_mode: Literal["error", "disconnect"] = Field(
        default="error",
        description=(
            "How a stream fails after fail_after_tokens: 'error' sends vLLM's error event and "
            "[DONE]; 'disconnect' drops the connection mid-stream (an engine crash)."
        ),
    )
    error_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of generation requests answered with HTTP 500 (drawn from seed).",
    )
    stall_ms: float = Field(
        default=0.0,
        ge=0,
        description="Extra milliseconds of silence before the first token (a stalled engine).",
    )
    seed: int = Field(
        default=0,
        description="Seed for injected errors and generated text; equal seeds, equal behaviour.",
    )
