"""Small programs used by the examples and the demo."""
