"""zkop.client."""
