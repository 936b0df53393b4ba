"""OpenRouter's side: requests translated for the engine, answers rewritten, priced and recorded."""
