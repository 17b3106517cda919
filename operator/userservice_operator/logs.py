"""The operator's logs: JSON lines on stderr, kopf's and the clients' chatter kept down."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level"},
            # kopf attaches its settings and object references to records: not for the log line.
            reserved_attrs=[*RESERVED_ATTRS, "settings", "k8s_skip", "k8s_ref"],
            json_default=str,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # kopf reports every handled watch event at INFO; our own lines say what was done.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, root.level))
