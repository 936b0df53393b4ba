"""The profile schema: what a TOML profile may say, strictly, assembled from one module per table.

Every table forbids unknown keys, so a typo is an error that names the key instead of a setting
silently ignored. Field names follow vLLM's and LMCache's own option names where one exists
(``max_num_seqs`` is ``--max-num-seqs``), so a profile reads like the command line it becomes.

The tables live in ``config/engine.py`` (``[model]``, ``[engine]``), ``lmcache.py``, ``proxy.py``,
``openrouter.py``, ``supervisor.py``, ``replicas.py`` and ``sim.py``; here is the whole profile and
the checks that span tables. Every name other modules use is importable from here.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from infer_cli.config.engine import PULLED_PREFIX, EngineSection, ModelSection
from infer_cli.config.lmcache import FsTier, L2Tier, LMCacheSection, RawTier, RedisTier, S3Tier
from infer_cli.config.openrouter import (
    DEFAULT_SAMPLING_PARAMETERS,
    Feature,
    InputModality,
    OpenRouterSection,
    OutputModality,
    Pricing,
    Quantization,
    SamplingParameter,
)
from infer_cli.config.proxy import ProxySection
from infer_cli.config.replicas import ReplicasSection, RouterPolicy, worker_url
from infer_cli.config.sim import SimSettings
from infer_cli.config.strict import Strict, key_error, parse_size
from infer_cli.config.supervisor import SupervisorSection

__all__ = [
    "DEFAULT_SAMPLING_PARAMETERS",
    "PULLED_PREFIX",
    "EngineSection",
    "Feature",
    "FsTier",
    "InputModality",
    "L2Tier",
    "LMCacheSection",
    "ModelSection",
    "OpenRouterSection",
    "OutputModality",
    "Pricing",
    "Profile",
    "ProxySection",
    "Quantization",
    "RawTier",
    "RedisTier",
    "ReplicasSection",
    "RouterPolicy",
    "S3Tier",
    "SamplingParameter",
    "SimSettings",
    "SupervisorSection",
    "parse_size",
    "worker_url",
]


class Profile(Strict):
    """A whole profile after ``extends`` and every override were applied."""

    description: str = ""
    extends: str | None = Field(
        default=None, description="Name or path of the profile this one builds on"
    )
    model: ModelSection
    engine: EngineSection = Field(default_factory=EngineSection)
    lmcache: LMCacheSection = Field(default_factory=LMCacheSection)
    proxy: ProxySection = Field(default_factory=ProxySection)
    openrouter: OpenRouterSection = Field(default_factory=OpenRouterSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    replicas: ReplicasSection = Field(default_factory=ReplicasSection)
    sim: SimSettings = Field(
        default_factory=SimSettings,
        description="The simulated engine (engine.backend = 'sim'); its model name and context "
        "length come from [model]",
    )

    @model_validator(mode="after")
    def _sim_alone(self) -> Profile:
        if self.engine.backend == "sim" and self.lmcache.mode != "off":
            raise ValueError("the simulated engine runs without LMCache: set lmcache.mode = 'off'")
        return self

    @model_validator(mode="after")
    def _replica_devices(self) -> Profile:
        replicas, engine = self.replicas, self.engine
        if engine.backend == "sim" and replicas.routed:
            key_error(
                ("replicas", "count" if replicas.count > 1 else "workers"),
                "the simulated engine runs alone: no replicas, no workers",
                replicas.count if replicas.count > 1 else replicas.workers,
            )
        if engine.device == "cpu" and (replicas.gpus or replicas.device_groups):
            key = "gpus" if replicas.gpus else "device_groups"
            key_error(("replicas", key), "engine.device is 'cpu': replicas have no GPUs", None)
        if replicas.count > 1 and "CUDA_VISIBLE_DEVICES" in engine.env:
            key_error(
                ("engine", "env"),
                "CUDA_VISIBLE_DEVICES would give every replica the same GPUs; set "
                "replicas.device_groups instead",
                None,
            )
        size = self.gpus_per_replica
        split = (
            f"engine.tensor_parallel_size {engine.tensor_parallel_size} x "
            f"pipeline_parallel_size {engine.pipeline_parallel_size} x "
            f"data_parallel_size {engine.data_parallel_size}"
        )
        if replicas.gpus is not None:
            if replicas.gpus % size:
                key_error(
                    ("replicas", "gpus"),
                    f"{replicas.gpus} GPUs do not divide into replicas of {size} ({split})",
                    replicas.gpus,
                )
            if replicas.count * size > replicas.gpus:
                key_error(
                    ("replicas", "count"),
                    f"{replicas.count} replicas of {size} GPU(s) ({split}) need "
                    f"{replicas.count * size} GPUs; replicas.gpus is {replicas.gpus}: at most "
                    f"{replicas.gpus // size} replicas",
                    replicas.count,
                )
        groups = replicas.device_groups
        if groups is not None:
            if len(groups) != replicas.count:
                key_error(
                    ("replicas", "device_groups"),
                    f"{len(groups)} group(s) for {replicas.count} replica(s) of replicas.count",
                    groups,
                )
            if any(len(group) != size for group in groups):
                key_error(
                    ("replicas", "device_groups"),
                    f"each replica needs {size} device(s) ({split})",
                    groups,
                )
            flat = [device for group in groups for device in group]
            if len(set(flat)) != len(flat) or min(flat, default=0) < 0:
                key_error(
                    ("replicas", "device_groups"),
                    "a device is in two groups, or negative",
                    groups,
                )
        return self

    @property
    def gpus_per_replica(self) -> int:
        engine = self.engine
        return (
            engine.tensor_parallel_size * engine.pipeline_parallel_size * engine.data_parallel_size
        )
