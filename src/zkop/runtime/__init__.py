"""zkop.runtime."""
