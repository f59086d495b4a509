"""zkop: an operator platform coordinated by Apache ZooKeeper."""

__version__ = "0.1.0"
