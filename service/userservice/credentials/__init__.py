"""Credentials: checking and changing passwords, with failures throttled in PostgreSQL across replicas."""
