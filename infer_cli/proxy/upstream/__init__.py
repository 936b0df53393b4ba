"""The proxy's side of the engine: the pooled HTTP/1.1 client, and relaying a request to it."""
