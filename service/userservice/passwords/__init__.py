"""Password hashing and the verification of every accepted hash format: a leaf that imports nothing of the service."""
