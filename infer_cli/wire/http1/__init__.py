"""One HTTP/1.1 client for both hot paths: the proxy's upstream and the load generator.

:class:`Connection` writes a request and parses its response as the bytes arrive;
:class:`Pool` lends connections out per origin and keeps idle ones; :mod:`.head` parses and writes
heads. Failures are httpx's exceptions, with :class:`Disconnected` and :class:`BadResponse` telling
a server that went away from one that answered garbage.
"""

from infer_cli.wire.http1.connection import Connection, Origin
from infer_cli.wire.http1.errors import BadResponse, Disconnected
from infer_cli.wire.http1.head import Framing, ResponseHead, request_head
from infer_cli.wire.http1.pool import Pool

__all__ = [
    "BadResponse",
    "Connection",
    "Disconnected",
    "Framing",
    "Origin",
    "Pool",
    "ResponseHead",
    "request_head",
]
