"""zkop.coord."""
