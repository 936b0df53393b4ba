"""infer: turn a GPU server into an OpenRouter-ready LLM endpoint."""

__version__ = "0.1.0"
