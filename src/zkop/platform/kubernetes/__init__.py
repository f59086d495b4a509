"""Kubernetes: the platform contract over the API (Pods, PVCs, Services)."""
