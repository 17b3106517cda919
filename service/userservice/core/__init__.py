"""Use cases, one module each, called alike by the REST, gRPC (and later) adapters: every rule lives in domain/ or here."""
