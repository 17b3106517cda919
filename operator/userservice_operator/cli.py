"""`userservice-operator`: leader election, then kopf watches feeding the reconcile workers.

    userservice-operator [--namespace NS ...| --all-namespaces] [--kubeconfig PATH]
                         [--health-port 8081] [--metrics-port 9090] [--lease-namespace NS]

Every replica serves /healthz (liveness) and /metrics; only the holder of the Lease runs kopf and
reconciles. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import NoReturn

from userservice_operator.children.promql import RUNBOOKS
from userservice_operator.logs import setup_logging
from userservice_operator.process import run


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="userservice-operator", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace to watch (repeatable)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default without -n)"
    )
    p.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default: in-cluster)"
    )
    p.add_argument("--bind-address", default=os.environ.get("OPERATOR_BIND_ADDRESS", "0.0.0.0"))  # noqa: S104
    p.add_argument("--health-port", type=int, default=int(os.environ.get("OPERATOR_HEALTH_PORT", "8081")))
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("OPERATOR_METRICS_PORT", "9090")))
    p.add_argument("--lease-name", default=os.environ.get("OPERATOR_LEASE_NAME", "userservice-operator"))
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="default: POD_NAMESPACE, first -n, or 'default'",
    )
    p.add_argument(
        "--identity", default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    )
    p.add_argument("--lease-duration", type=float, default=_env_float("OPERATOR_LEASE_DURATION", 15))
    p.add_argument("--renew-deadline", type=float, default=_env_float("OPERATOR_RENEW_DEADLINE", 10))
    p.add_argument("--retry-period", type=float, default=_env_float("OPERATOR_RETRY_PERIOD", 2))
    p.add_argument("--resync-seconds", type=float, default=_env_float("OPERATOR_RESYNC_SECONDS", 300))
    p.add_argument("--crd-poll-seconds", type=float, default=_env_float("OPERATOR_CRD_POLL_SECONDS", 10))
    p.add_argument("--backoff-max", type=float, default=_env_float("OPERATOR_BACKOFF_MAX", 60))
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=_env_float("OPERATOR_STALL_SECONDS", 300),
        help="liveness fails when work waits this long without a reconcile pass completing",
    )
    p.add_argument("--api-threads", type=int, default=int(os.environ.get("OPERATOR_API_THREADS", "16")))
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"))
    p.add_argument(
        "--runbook-base-url",
        default=os.environ.get("OPERATOR_RUNBOOK_BASE_URL", RUNBOOKS),
        help="where docs/runbooks.md is published; each alert's runbook_url is this plus #<alert>",
    )
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("OPERATOR_PROMETHEUS_URL", ""),
        help="the Prometheus whose recording rules include spec.slo's; the status shows each objective's "
        "error budget left from it (empty: the budgets are left out)",
    )
    args = p.parse_args(argv)
    if not args.namespace:
        args.all_namespaces = True
    if not args.lease_namespace:
        args.lease_namespace = args.namespace[0] if args.namespace else "default"
    return args


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parse_args(argv)
    setup_logging(args.log_level)
    code = asyncio.new_event_loop().run_until_complete(run(args))
    # Ends the process here, not through the loop's and the interpreter's shutdown: both wait for what is
    # left (a failed kopf's tasks can refuse cancellation; API threads can wait out a 30 s read timeout).
    # The Lease is released and the logs are flushed by then.
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
