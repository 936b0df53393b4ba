"""What stands between a client and the engine: keys, body bounds, rate limits, tokens, CORS."""
