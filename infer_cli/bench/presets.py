"""Workloads as the command line names them, with their default sizes.

``builder(name, **options)`` returns ``build(seed) -> Workload``: a sweep builds one per level
(``seed + level``), so every level gets prompts of its own and none hits an earlier one's cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infer_cli.bench import workloads as w
from infer_cli.errors import UsageError


def builder(workload: str, **options: Any) -> Callable[[int], w.Workload]:
    """The workload named on the command line, for a seed, with each option's default."""

    def build(seed: int) -> w.Workload:
        o = options
        if workload in ("random", "latency"):
            latency = workload == "latency"
            return w.random_workload(
                num_requests=o["num_requests"] or (10 if latency else 100),
                input_len=o["input_len"] or (128 if latency else 1024),
                output_len=o["output_len"] or 128,
                range_ratio=o["range_ratio"],
                seed=seed,
                name=workload,
            )
        if workload == "shared-prefix":
            return w.shared_prefix_workload(
                prefixes=o["prefixes"],
                suffixes=o["suffixes"],
                prefix_len=o["prefix_len"],
                suffix_len=o["suffix_len"],
                output_len=o["output_len"] or 32,
                seed=seed,
            )
        if workload == "multi-turn":
            return w.multi_turn_workload(
                users=o["users"],
                rounds=o["rounds"],
                system_len=o["system_len"],
                user_context_len=o["user_context_len"],
                question_len=o["question_len"] or 50,
                answer_len=o["output_len"] or 100,
                seed=seed,
            )
        if workload == "long-doc":
            return w.long_doc_workload(
                documents=o["documents"],
                document_len=o["document_len"],
                question_len=o["question_len"] or 32,
                output_len=o["output_len"] or 32,
                repeat_count=o["repeat_count"],
                repeat_mode=o["repeat_mode"],
                seed=seed,
            )
        if o["dataset"] is None:
            raise UsageError("the file workload needs --dataset PATH (JSONL or ShareGPT JSON)")
        return w.file_workload(
            o["dataset"],
            num_requests=o["num_requests"],
            output_len=o["output_len"],
            seed=seed,
            shuffle=o["shuffle"],
        )

    return build
