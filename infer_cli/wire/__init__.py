"""The bottom protocol layer: HTTP/1.1, server-sent events, Prometheus text and the socket server.

Nothing here imports FastAPI or anything above ``infer_cli.errors``; the proxy, the simulator, the
benchmark and the clients all speak their protocols through it."""
