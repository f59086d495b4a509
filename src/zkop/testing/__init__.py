"""zkop.testing."""
