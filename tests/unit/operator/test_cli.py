"""Command line of userservice-operator."""

from __future__ import annotations

from userservice_operator.cli import parse_args


def test_namespaces() -> None:
    args = parse_args(["-n", "a", "--namespace", "b"])
    assert args.namespace == ["a", "b"]
    assert not args.all_namespaces
    assert args.lease_namespace == "a"
    args = parse_args([])
    assert args.all_namespaces
    assert args.lease_namespace == "default"
    args = parse_args(
        ["--all-namespaces", "--lease-namespace", "ops", "--health-port", "1", "--metrics-port", "2"]
    )
    assert args.all_namespaces
    assert args.lease_namespace == "ops"
    assert (args.health_port, args.metrics_port) == (1, 2)
