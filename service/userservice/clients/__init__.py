"""Outbound calls: the Kubernetes API (token and access reviews) and the breach-check range service."""
