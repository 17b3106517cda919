"""userservice: user management over REST and gRPC on PostgreSQL."""
