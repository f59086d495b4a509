"""zkop.zk."""
