"""HTTP client side of infer: SSE decoding, an async OpenAI/OpenRouter client, Prometheus parsing.

Shared by ``infer chat``, ``infer models``, ``infer status`` and ``infer bench``. Nothing here
imports rich or typer; errors are :mod:`infer_cli.errors` exceptions with one-line messages.
"""

DEFAULT_URL = "http://127.0.0.1:8080"
"""The local proxy that ``infer serve`` starts (here, free of imports, for the CLI's defaults)."""
