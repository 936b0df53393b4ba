"""``infer bench``: workloads, an async load generator, statistics and reports.

Layers, each importing only those above it: :mod:`~infer_cli.bench.workloads` and
:mod:`~infer_cli.bench.text` (request shapes, pure and seeded), :mod:`~infer_cli.bench.schedule`
(arrival processes), :mod:`~infer_cli.bench.records` (what one request measured),
:mod:`~infer_cli.bench.stats` (pure statistics), :mod:`~infer_cli.bench.http`,
:mod:`~infer_cli.bench.stream` (reading one answer) and :mod:`~infer_cli.bench.runner`
(sending), :mod:`~infer_cli.bench.tokens` (prompt lengths in real
tokens), :mod:`~infer_cli.bench.engine_metrics` (Prometheus deltas), :mod:`~infer_cli.bench.report`
(JSON, CSV), :mod:`~infer_cli.bench.compare` (two results, judged by their own spread) and
:mod:`~infer_cli.bench.service` (one call for the command line). Nothing here imports rich or
typer.
"""
