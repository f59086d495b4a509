"""The Application controller: replicas, recovery, autoscaling, service registry."""
