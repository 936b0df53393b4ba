"""CPU per request of infer bench's HTTP client alone: wire's (``infer_cli.bench.http.Pool``)
against aiohttp's (``aiohttp_http1.AiohttpPool``), with no simulator and no runner around it.

A canned server (its own process, raw asyncio) answers every POST with a chunked event stream of
``--chunks`` events, one chunk each, plus usage and ``[DONE]``. The client sends ``--requests``
requests over ``--concurrency`` keep-alive connections, reads every body to its end, and reports
its own CPU time per request (``time.process_time``) and requests per second. Run the variants
alternately, more than once: the machine is shared.

    INFER_AIOHTTP_PATH=/tmp/aiohttp-lib .venv/bin/python benchmarks/aiohttp_variant/client_cost.py \
        --variants wire,aiohttp,aiohttp,wire
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

SERVER = r"""
import asyncio, sys
port, chunks = int(sys.argv[1]), int(sys.argv[2])
events = [b'data: {"choices":[{"index":0,"text":"tok%d"}]}\n\n' % i for i in range(chunks)]
events.append(b'data: {"choices":[],"usage":{"completion_tokens":%d}}\n\n' % chunks)
events.append(b"data: [DONE]\n\n")
head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
body = b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
async def handle(reader, writer):
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            for line in request.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length" and int(value):
                    await reader.readexactly(int(value))
            writer.write(head)
            await writer.drain()
            writer.write(body)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""

BODY = b'{"model":"m","prompt":"hello","max_tokens":16,"stream":true}'


def pool_class(variant: str) -> Any:
    if variant == "aiohttp":
        sys.path.append(os.environ["INFER_AIOHTTP_PATH"])
        sys.path.insert(0, str(HERE))
        from aiohttp_http1 import AiohttpPool

        return AiohttpPool
    from infer_cli.bench.http import Pool

    return Pool


async def measure(variant: str, port: int, requests: int, concurrency: int) -> tuple[float, float]:
    pool = pool_class(variant)(
        f"http://127.0.0.1:{port}/v1", size=concurrency, headers={"Accept": "text/event-stream"}
    )
    left = 0

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            head = pool.head("POST", "/v1/completions", "application/json", len(BODY))
            response = await pool.request(head, BODY)
            async for _ in response.iter_body():
                pass
            response.release()

    left = 200  # warm-up: connections, code paths
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    left = requests
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pool.close()
    await asyncio.sleep(0.05)
    return cpu / requests * 1e6, requests / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="wire,aiohttp,aiohttp,wire")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=16)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.chunks)])
    try:
        time.sleep(1.0)
        for variant in args.variants.split(","):
            us, rps = asyncio.run(measure(variant, port, args.requests, args.concurrency))
            print(f"{variant:8} {us:7.1f} us CPU per request {rps:8.0f} requests/s", flush=True)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
