"""Terminal output. The only package that imports rich."""
