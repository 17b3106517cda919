"""PostgreSQL access through asyncpg: queries, migrations, connection pool."""
