"""zkop.platform.local."""
