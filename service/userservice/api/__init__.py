"""Thin adapters over the use cases in userservice.users: REST (aiohttp) and gRPC (grpcio aio)."""
