"""The aiohttp variant of infer's two HTTP/1.1 hot paths, for the issue 14 comparison (a scratch
swap for the benchmarks only; infer itself never imports aiohttp).

Put this folder on ``PYTHONPATH`` and name a folder holding aiohttp in ``INFER_AIOHTTP_PATH``
(``pip install --target /tmp/aiohttp-lib aiohttp``); every Python process a benchmark starts then
loads this file, and when (only when) infer's modules are imported it swaps them:

- ``infer_cli.proxy.upstream.client.UpstreamTransport``: the proxy's ``http://`` engine transport
  is an aiohttp ``ClientSession`` (:class:`aiohttp_http1.AiohttpTransport`, same constructor)
  instead of wire's pool; ``create_client`` builds it by that name;
- ``infer_cli.bench.runner.Pool``: ``infer bench``'s requests go through aiohttp
  (:class:`aiohttp_http1.AiohttpPool`) instead of wire's connections.

    PYTHONPATH=benchmarks/aiohttp_variant INFER_AIOHTTP_PATH=/tmp/aiohttp-lib \
        .venv/bin/python benchmarks/proxy_vs_direct.py
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

_SWAPS = {"infer_cli.proxy.upstream.client", "infer_cli.bench.runner"}


def _swap(module: ModuleType) -> None:
    folder = os.environ["INFER_AIOHTTP_PATH"]
    if folder not in sys.path:
        sys.path.append(folder)  # after site-packages: infer's own packages stay its own
    sys.path.insert(0, os.path.dirname(__file__))
    import aiohttp_http1

    if module.__name__ == "infer_cli.proxy.upstream.client":
        module.UpstreamTransport = aiohttp_http1.AiohttpTransport  # type: ignore[attr-defined]
    else:
        module.Pool = aiohttp_http1.AiohttpPool  # type: ignore[attr-defined]
    print(f"aiohttp variant: {module.__name__} swapped", file=sys.stderr, flush=True)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _swap(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _SWAPS:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target)  # type: ignore[attr-defined]
            if spec is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


if os.environ.get("INFER_AIOHTTP_PATH"):
    sys.meta_path.insert(0, _Finder())
