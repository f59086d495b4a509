"""zkop.cli."""
