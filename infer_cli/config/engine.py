"""``[model]`` and ``[engine]``: what vLLM serves, and how ``vllm serve`` runs it.

Field names follow vLLM's own option names (``max_num_seqs`` is ``--max-num-seqs``), so the tables
read like the command line they become.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from infer_cli.config.strict import Strict, parse_size

PULLED_PREFIX = "infer:"
"""``model.source = "infer:NAME"``: a model that infer prepares itself (``infer pull NAME``)."""


class ModelSection(Strict):
    source: str = Field(
        description="Hugging Face id, local folder, or 'infer:NAME' (a model infer prepares)",
    )
    served_name: str | None = Field(
        default=None, description="The model id clients send and /v1/models shows (default: source)"
    )
    context_length: int | None = Field(default=None, gt=0, description="vLLM --max-model-len")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    quantization: str | None = Field(
        default=None, description="vLLM --quantization (awq, fp8, ...)"
    )
    revision: str | None = None
    tokenizer: str | None = None
    trust_remote_code: bool = False

    @property
    def name(self) -> str:
        return self.served_name or self.source.removeprefix(PULLED_PREFIX)


class EngineSection(Strict):
    backend: Literal["vllm", "sim"] = Field(
        default="vllm",
        description="'vllm', or 'sim': infer's simulated engine (no model, no GPU; see [sim])",
    )
    vllm: str = Field(
        default="auto",
        description="vLLM executable: 'auto' (infer's engine environment, then PATH), a name "
        "on PATH, or a path",
    )
    device: Literal["auto", "cuda", "cpu"] = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    kv_cache_memory: int | str | None = Field(
        default=None, description="Explicit KV cache size (bytes or '1G'); required on the CPU"
    )
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool | None = None
    block_size: int | None = Field(default=None, ge=1)
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"] | None = (
        None
    )
    enforce_eager: bool = False
    enable_prompt_tokens_details: bool = True
    enable_force_include_usage: bool = False
    enable_log_requests: bool = False
    enable_auto_tool_choice: bool = False
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = None
    generation_config: str | None = None
    seed: int | None = None
    startup_timeout: float = Field(
        default=900.0, gt=0, description="Seconds vLLM may take to be ready"
    )
    stop_timeout: float = Field(
        default=15.0, gt=0, description="Seconds between SIGTERM and SIGKILL when stopping"
    )
    extra_args: list[str] = Field(default_factory=list, description="Raw vllm serve arguments")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for vLLM")

    @field_validator("kv_cache_memory")
    @classmethod
    def _size(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_size(value)
        return value

    @model_validator(mode="after")
    def _tools(self) -> EngineSection:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError(
                "enable_auto_tool_choice needs tool_call_parser (e.g. 'hermes', 'llama3_json')"
            )
        return self

    @property
    def kv_cache_memory_bytes(self) -> int | None:
        return None if self.kv_cache_memory is None else parse_size(self.kv_cache_memory)
