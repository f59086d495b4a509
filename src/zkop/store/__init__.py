"""zkop.store."""
