"""zkop.controllers."""
