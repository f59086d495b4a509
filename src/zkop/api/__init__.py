"""zkop.api."""
