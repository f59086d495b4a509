"""zkop.discovery."""
