"""zkop.platform."""
